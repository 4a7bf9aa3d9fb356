"""Several training processes (``torchrun``): the process group, sums and minima over ranks, each one's device."""

from __future__ import annotations

import os
from typing import Literal

import torch
import torch.distributed as dist

from ..bilm.model import resolve_device


def join_process_group() -> tuple[int, int]:
    """``(rank, world_size)``; joins the process group when started by ``torchrun``."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() and os.environ.get("LOCAL_RANK") else "gloo")
    return (dist.get_rank(), world_size) if world_size > 1 else (0, 1)


def reduce_over_ranks(value: int, world_size: int, op: Literal["min", "sum"], device: torch.device) -> int:
    """``min`` or ``sum`` of an integer over all processes."""
    if world_size == 1:
        return value
    tensor = torch.tensor([value], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN if op == "min" else dist.ReduceOp.SUM)
    return int(tensor.item())


def training_device(device_name: str) -> torch.device:
    """``device_name``; with CUDA this process's GPU (``LOCAL_RANK`` under torchrun), TF32 matmuls allowed."""
    device = resolve_device(f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if device_name == "cuda" else device_name)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
    return device
