"""Which kernels run the biLM on this machine, and the switch that forces a path.

Inference on CPU has two implementations of the same function: the plain PyTorch path
and the oneDNN fast path (:mod:`.onednn`). Which one runs is decided per product dtype
from what *this* CPU can execute, never by catching an error from inside torch:

- ``auto`` (default): oneDNN for each dtype this CPU runs through it (fp32 on any x86
  with oneDNN; bf16 needs AVX512BW/VL/DQ or AVX-NE-CONVERT), the plain path otherwise;
- ``plain``: always the plain PyTorch path;
- ``onednn``: oneDNN required: asking it for a dtype this CPU cannot run is an error.

The mode comes from :func:`forced` (a context manager, for tests and benchmarks), else
from the environment variable ``SPACY_ELMO_KERNELS`` (inherited by worker processes).

Precision: ``"bf16"`` on a CPU without oneDNN bf16 kernels would run through PyTorch's
generic bf16 products, about 6x slower than fp32 there (measured on an AVX2-only AMD
EPYC); in ``auto`` mode it therefore computes in fp32 instead, with a one-time warning.
"""

from __future__ import annotations

import os
import platform
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from . import onednn

ENV_VAR = "SPACY_ELMO_KERNELS"
MODES = ("auto", "plain", "onednn")
PRECISIONS = ("fp32", "bf16")

_forced: str | None = None
_warned_bf16 = False


def _check_mode(mode: str, source: str) -> str:
    if mode not in MODES:
        raise ValueError(f"{source} must be one of {MODES}, found {mode!r}")
    return mode


def mode() -> str:
    """The kernel mode in effect: :func:`forced`, else ``$SPACY_ELMO_KERNELS``, else ``"auto"``."""
    if _forced is not None:
        return _forced
    return _check_mode(os.environ.get(ENV_VAR, "auto").strip().lower() or "auto", ENV_VAR)


@contextmanager
def forced(kernel_mode: str) -> Iterator[None]:
    """Run the block with ``kernel_mode`` (``"auto"``, ``"plain"`` or ``"onednn"``) in this process."""
    global _forced
    previous, _forced = _forced, _check_mode(kernel_mode, "kernel mode")
    try:
        yield
    finally:
        _forced = previous


def use_onednn(x: torch.Tensor, dtype: torch.dtype) -> bool:
    """Whether products over ``x`` in ``dtype`` run through oneDNN: CPU, no autograd, mode and CPU permitting.

    :raises ValueError: in ``onednn`` mode, when this CPU cannot run ``dtype`` through oneDNN.
    """
    if torch.is_grad_enabled() or x.device.type != "cpu":
        return False
    kernel_mode = mode()
    if kernel_mode == "plain":
        return False
    if onednn.supports(dtype):
        return True
    if kernel_mode == "onednn":
        raise ValueError(f"{ENV_VAR}=onednn, but oneDNN cannot run {dtype} products here: {onednn.why_not(dtype)}")
    return False


def runs_as(precision: str, device: torch.device) -> str:
    """The precision that runs for a requested ``"fp32"`` or ``"bf16"`` on ``device``.

    In ``auto`` mode on a CPU without oneDNN bf16 kernels, ``"bf16"`` runs as ``"fp32"``.
    """
    if precision == "bf16" and device.type == "cpu" and mode() == "auto" and not onednn.supports(torch.bfloat16):
        return "fp32"
    return precision


def resolve_precision(precision: str, device: torch.device) -> str:
    """:func:`runs_as` for a checked ``precision``, with a warning the first time bf16 falls back to fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, found {precision!r}")
    resolved = runs_as(precision, device)
    global _warned_bf16
    if resolved != precision and not _warned_bf16:
        _warned_bf16 = True
        warnings.warn(
            f"precision 'bf16' runs in fp32 on this CPU: {onednn.why_not(torch.bfloat16)}; PyTorch's generic "
            f"bf16 products would be several times slower than fp32 here (set {ENV_VAR}=plain to force them)",
            RuntimeWarning,
            stacklevel=3,
        )
    return resolved


def cpu_features() -> dict[str, bool]:
    """The CPU features that decide the kernels: AMX, AVX512_BF16, AVX-512, AVX2."""
    checks = {
        "AMX": "_is_amx_tile_supported",
        "AVX512_BF16": "_is_avx512_bf16_supported",
        "AVX-512": "_is_avx512_supported",
        "AVX2": "_is_avx2_supported",
    }
    return {name: bool(getattr(torch.cpu, check, lambda: False)()) for name, check in checks.items()}


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` knows)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def describe() -> dict[str, object]:
    """What runs here: CPU, its features and capability, kernel mode, oneDNN per dtype, threads, CUDA devices."""
    return {
        "cpu": cpu_name(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_features": [name for name, present in cpu_features().items() if present],
        "kernel_mode": mode(),
        "onednn_fp32": onednn.supports(torch.float32),
        "onednn_bf16": onednn.supports(torch.bfloat16),
        "bf16_runs_as": runs_as("bf16", torch.device("cpu")),
        "torch_threads": torch.get_num_threads(),
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
    }
