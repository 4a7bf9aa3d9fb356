"""Inference on CPU through oneDNN with weights pre-packed once.

``torch.ops.mkldnn._linear_pointwise`` on a weight reordered by
``torch.ops.mkldnn._reorder_linear_weight`` (the kernels torch.compile's CPU backend
uses) ran the biLM's products 1.2-2.8x faster than ``torch.matmul`` (MKL) on an AMD EPYC,
most at the small batch sizes of the LSTM's recurrence. These are internal PyTorch ops:
callers go through :func:`.kernels.use_onednn`, which checks that this CPU runs them in the
dtype asked for, and keep a plain-PyTorch path.

oneDNN keeps a compiled primitive (~0.5 MB) per distinct input shape in a process-wide cache of
1024 entries, so a product over a data-dependent number of rows would grow the process by
hundreds of MB as new sizes come in. Products here therefore take rows in blocks of a fixed
size (:data:`BLOCK`), the last one padded to a multiple of :data:`ROW_ALIGN`, or (the LSTM's
per-step products) a number of rows bounded by the batch size (see :func:`step_rows`).

Packed weights are derived data: they are cached per module and dtype, rebuilt when any
parameter changes (its storage or its version counter), and never saved or pickled.

``torch.int8`` as a "dtype" here means ``precision="int8"``: weights quantized and packed by
:mod:`.int8` (for the products :func:`.int8.pays` selects; the others packed in float32), values
between the products (biases, activations, outputs) in float32 (:func:`value_dtype`).
"""

from __future__ import annotations

import threading
from typing import Callable, Iterable, TypeVar

import torch
from torch import nn

from . import int8

DTYPES = (torch.float32, torch.bfloat16, torch.int8)
BLOCK = 256  # rows per product over a data-dependent number of rows
ROW_ALIGN = 32  # the last block's rows are padded to a multiple of this
T = TypeVar("T")

_CACHE_ATTR = "_onednn_packed"
_BUILD_LOCK = threading.RLock()  # one build at a time (re-entrant: a build may pack a submodule)


OPS = ("_linear_pointwise", "_reorder_linear_weight")  # the private ops this module wraps


def available() -> bool:
    """Whether this PyTorch has oneDNN and the ops this module wraps."""
    return torch.backends.mkldnn.is_available() and all(hasattr(torch.ops.mkldnn, op) for op in OPS)


def _bf16_kernels() -> bool:
    # oneDNN's own check: AVX512BW/VL/DQ or AVX-NE-CONVERT on x86 (what _reorder_linear_weight demands)
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return check is not None and bool(check())


def supports(dtype: torch.dtype) -> bool:
    """Whether this CPU runs products in ``dtype`` through oneDNN (float32, bfloat16 or int8)."""
    if dtype == torch.float32:
        return available()
    if dtype == torch.int8:
        return available() and int8.kernel() is not None
    return dtype == torch.bfloat16 and available() and _bf16_kernels()


def why_not(dtype: torch.dtype) -> str:
    """Why :func:`supports` is false for ``dtype``, for messages."""
    if dtype not in DTYPES:
        return f"only {[str(d) for d in DTYPES]} run through oneDNN"
    if not available():
        return "this PyTorch build has no oneDNN (or lacks its linear ops)"
    if dtype == torch.int8:
        return int8.why_not()
    return (
        f"oneDNN's bf16 kernels need AVX512BW, AVX512VL and AVX512DQ, or AVX-NE-CONVERT; this CPU "
        f"({torch.backends.cpu.get_cpu_capability()}) has neither"
    )


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype products run in: ``torch.int8`` under :func:`.int8.products` without autograd, the CPU
    autocast dtype when autocast is on, else the input's."""
    if int8.enabled() and not torch.is_grad_enabled():
        return torch.int8
    if torch.is_autocast_enabled("cpu"):
        return torch.get_autocast_dtype("cpu")
    return x.dtype


def value_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of the values between products computed in ``dtype``: float32 for int8, else ``dtype``."""
    return torch.float32 if dtype == torch.int8 else dtype


def pack(weight: torch.Tensor, dtype: torch.dtype, product: str = "") -> torch.Tensor | int8.QuantizedWeight:
    """A ``(out, in)`` linear weight in oneDNN's blocked layout; for ``torch.int8``, quantized when
    ``product`` runs in int8 at this size (:func:`.int8.pays`; else packed in float32)."""
    if dtype == torch.int8:
        if int8.pays(product, weight):
            return int8.quantize_weight(weight)
        dtype = torch.float32
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach().to(dtype).contiguous())


def out_features(packed: torch.Tensor | int8.QuantizedWeight) -> int:
    """The output size of a :func:`pack` ed weight."""
    return packed.out_features if isinstance(packed, int8.QuantizedWeight) else packed.size(0)


def linear(
    x: torch.Tensor,
    packed: torch.Tensor | int8.QuantizedWeight,
    bias: torch.Tensor | None = None,
    clip: float | None = None,
) -> torch.Tensor:
    """``x @ W.T + bias`` for a :func:`pack` ed ``W``; ``clip``: clamped to ``[-clip, clip]`` (in the same
    kernel for float weights)."""
    if isinstance(packed, int8.QuantizedWeight):
        return int8.linear(x, packed, bias, clip)
    if clip:
        return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "hardtanh", [-clip, clip], "")
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


def linear_add(x: torch.Tensor, packed: torch.Tensor | int8.QuantizedWeight, other: torch.Tensor) -> torch.Tensor:
    """``x @ W.T + other`` for a :func:`pack` ed ``W``, the addition fused into the product (a new tensor)."""
    if isinstance(packed, int8.QuantizedWeight):
        return int8.linear_add(x, packed, other)
    return torch.ops.mkldnn._linear_pointwise.binary(x, other, packed, None, "add")


def padded_rows(n: int) -> int:
    """Rows of the last (partial) block of ``n`` rows."""
    return -(-n // ROW_ALIGN) * ROW_ALIGN


def step_rows(n: int) -> int:
    """Rows to compute for ``n`` rows of a per-step product: all sizes up to 64, then multiples of 16."""
    return n if n <= 64 else -(-n // 16) * 16


class RowBlocks:
    """``linear(x, packed, bias)`` over the rows of ``x`` in fixed-size blocks, read back by row range.

    ``spare`` zero rows are appended to ``x`` so that a range may run up to ``spare`` rows past its end.
    """

    def __init__(
        self, x: torch.Tensor, packed: torch.Tensor | int8.QuantizedWeight, bias: torch.Tensor | None, spare: int = 0
    ) -> None:
        self.rows = x.shape[0]
        total = self.rows + spare
        self.blocks = []
        for start in range(0, total, BLOCK):
            part = x[start : start + BLOCK]
            size = min(BLOCK, total - start)
            if part.shape[0] < size or size < BLOCK:
                padded = x.new_zeros(padded_rows(size) if size < BLOCK else BLOCK, x.shape[1])
                padded[: part.shape[0]] = part
                part = padded
            self.blocks.append(linear(part.contiguous(), packed, bias))

    def __call__(self, start: int, count: int) -> torch.Tensor:
        """Rows ``start .. start + count`` (a view when they lie in one block)."""
        first, last = start // BLOCK, (start + count - 1) // BLOCK
        if first == last:
            return self.blocks[first][start - first * BLOCK : start - first * BLOCK + count]
        pieces, at = [], start
        while at < start + count:
            k = at // BLOCK
            take = min(start + count, (k + 1) * BLOCK) - at
            pieces.append(self.blocks[k][at - k * BLOCK : at - k * BLOCK + take])
            at += take
        return torch.cat(pieces)


def versions(tensors: Iterable[torch.Tensor]) -> tuple[tuple[int, int], ...]:
    """A key that changes when any of ``tensors`` is replaced or updated in place: each one's storage
    address and version counter (the private ``Tensor._version``, bumped by in-place operations:
    optimizer steps, ``load_state_dict``, ``copy_``; writes through ``.data`` do not bump it)."""
    return tuple((t.data_ptr(), t._version) for t in tensors)


def cached(module: nn.Module, dtype: torch.dtype, build: Callable[[], T]) -> T:
    """``build()``'s result for ``module``'s current parameters in ``dtype``, built once (also when threads
    ask at the same time)."""
    key = versions(module.parameters())
    with _BUILD_LOCK:
        cache = module.__dict__.setdefault(_CACHE_ATTR, {})
        entry = cache.get(dtype)
        if entry is None or entry[0] != key:
            cache.pop(dtype, None)  # free the stale copy before building the new one
            with torch.no_grad():
                entry = cache[dtype] = (key, build())
    return entry[1]


def drop_cache(state: dict) -> dict:
    """For ``__getstate__``: the module's state without its packed weights (which neither pickle nor copy)."""
    state = dict(state)
    state.pop(_CACHE_ATTR, None)
    return state
