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
``"int8"`` runs only through oneDNN's int8 kernels on CPU (:mod:`.int8`); elsewhere (no int8
kernels, ``plain`` mode, CUDA) it runs as the best other precision (bf16 where that runs,
else fp32), with a one-time warning; in ``onednn`` mode a CPU without them is an error.
"""

from __future__ import annotations

import os
import platform
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from . import int8, onednn
from .precision import Precision, check_precision

ENV_VAR = "SPACY_ELMO_KERNELS"
MODES = ("auto", "plain", "onednn")

_forced: str | None = None
_warned: set[str] = set()  # the precisions whose fallback was reported


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


def runs_as(precision: Precision, device: torch.device) -> Precision:
    """The precision that runs for a requested one on ``device``.

    In ``auto`` mode on a CPU without oneDNN bf16 kernels, ``"bf16"`` runs as ``"fp32"``; ``"int8"``
    runs as itself only on CPU through oneDNN's int8 kernels, else as ``runs_as("bf16")`` where bf16
    has fast kernels (oneDNN's on CPU, or CUDA), else ``"fp32"``.

    :raises ValueError: ``"int8"`` in ``onednn`` mode on a CPU without oneDNN int8 kernels.
    """
    if precision == "int8":
        if device.type == "cpu" and mode() != "plain" and onednn.supports(torch.int8):
            return "int8"
        if device.type == "cpu" and mode() == "onednn":
            raise ValueError(f"{ENV_VAR}=onednn, but oneDNN cannot run int8 products here: {int8.why_not()}")
        fast_bf16 = device.type != "cpu" or (mode() != "plain" and onednn.supports(torch.bfloat16))
        return "bf16" if fast_bf16 else "fp32"
    if precision == "bf16" and device.type == "cpu" and mode() == "auto" and not onednn.supports(torch.bfloat16):
        return "fp32"
    return precision


def _why_fallback(precision: str, device: torch.device) -> str:
    if precision == "bf16":
        return (
            f"{onednn.why_not(torch.bfloat16)}; PyTorch's generic bf16 products would be several times slower "
            f"than fp32 here (set {ENV_VAR}=plain to force them)"
        )
    if device.type != "cpu":
        return f"int8 products run on CPU only (device {device})"
    if mode() == "plain":
        return f"int8 products run through oneDNN only ({ENV_VAR}=plain)"
    return int8.why_not()


def resolve_precision(precision: object, device: torch.device) -> Precision:
    """:func:`runs_as` for a checked ``precision``, with a warning the first time a precision falls back."""
    requested = check_precision(precision)
    resolved = runs_as(requested, device)
    if resolved != requested and requested not in _warned:
        _warned.add(requested)
        warnings.warn(
            f"precision {requested!r} runs as {resolved!r} here: {_why_fallback(requested, device)}",
            RuntimeWarning,
            stacklevel=3,
        )
    return resolved


def _int8_runs_as() -> str:
    try:
        return runs_as("int8", torch.device("cpu"))
    except ValueError as error:  # onednn mode without int8 kernels
        return f"an error ({error})"


def cpu_features() -> dict[str, bool]:
    """The CPU features that decide the kernels: AMX, AVX512_BF16, AVX512-VNNI, AVX-512, AVX2."""
    checks = {
        "AMX": "_is_amx_tile_supported",
        "AVX512_BF16": "_is_avx512_bf16_supported",
        "AVX512-VNNI": "_is_vnni_supported",
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
        "int8_kernel": int8.kernel(),
        "int8_runs_as": _int8_runs_as(),
        "torch_threads": torch.get_num_threads(),
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
    }
