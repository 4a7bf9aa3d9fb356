"""Int8 matrix products on CPU through oneDNN, for ``precision="int8"`` inference.

A product ``x @ W.T`` runs as ``s_x * s_W * (q_x @ q_W.T)``:

- the weight ``W`` ``(out, in)`` quantized once per module, symmetrically per output channel
  (``q_W = round(W / s_W)`` in ``[-r, r]``, ``s_W = max|W_row| / r``), pre-packed for oneDNN and
  cached like the float packs (:func:`.onednn.cached`: rebuilt when a parameter changes, never
  saved). ``r`` is 127 where the CPU has VNNI (AVX512-VNNI, AMX), 63 on AVX2: there oneDNN's
  kernel (``vpmaddubsw``) adds pairs of ``uint8 x int8`` products in int16, which saturates
  beyond 7-bit weights (measured here: 2-9% relative error with 8-bit weights, exact with 7);
- the activations ``x`` ``(rows, in)`` quantized at run time per row, symmetrically, stored as
  ``uint8`` with zero point 128 (the form oneDNN's int8 kernels take; ``q_x - 128`` in
  ``[-127, 127]``);
- the products accumulated in int32 by ``torch.ops.onednn.qlinear_pointwise`` (the kernel
  torch.compile's x86 int8 path uses) with the weight scale applied in the kernel; the row
  scale, bias, gates, clips and the LSTM's cell state in float32.

Per-row activation scales keep the kernel's own scales constant (1 for the activations), so
oneDNN reuses one compiled primitive per shape.

``torch._int_mm`` is not used: on CPUs without AVX512-VNNI it ran at about 1 GOP/s here
(AMD EPYC, AVX2), against 20-70 GOP/s for oneDNN's int8 kernels on the same shapes.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator, NamedTuple

import torch

OPS = ("qlinear_pointwise", "qlinear_prepack")  # the private oneDNN ops this module wraps
ZERO_POINT = 128  # activations are stored as uint8 q + 128
_RANGE = 127.0  # activations: q in [-127, 127]
_AVX2_WEIGHT_RANGE = 63.0  # weights where int16 pair sums would saturate (see above)
_TINY = 1e-30  # the smallest row maximum: keeps 1 / scale finite in float32

#: the kinds of product that may run in int8 under ``precision="int8"``: the LSTM's input, recurrent and projection
#: products, the character CNN, the highway layers and the token projection ...
PRODUCTS = frozenset({"lstm_input", "recurrent", "lstm_projection", "char_cnn", "highway", "token_projection"})
#: ... each only where its weight ``(out, in)`` has at least MIN_IN inputs and MIN_WEIGHT values, or
#: MIN_STEP_WEIGHT for the products of one time step (:func:`pays`). Below those sizes quantizing the rows and the
#: int8 kernel's set-up cost more than the cheaper arithmetic saves; a time step's products have only a batch of
#: rows (a product over all tokens has hundreds), so they need larger weights to pay (measured with
#: ``benchmarks/int8_products.py``; table in docs/performance.md)
MIN_IN = 128
MIN_WEIGHT = 1 << 19
MIN_STEP_WEIGHT = 1 << 20
STEP_PRODUCTS = frozenset({"recurrent", "lstm_projection"})

_enabled: ContextVar[bool] = ContextVar("spacy_elmo_int8", default=False)


class QuantizedWeight(NamedTuple):
    """A ``(out, in)`` weight as oneDNN int8: the packed ``q_W``, ``s_W`` ``(out,)`` float32, zero points ``(out,)``."""

    packed: torch.Tensor
    scale: torch.Tensor
    zero_points: torch.Tensor

    @property
    def out_features(self) -> int:
        return self.scale.shape[0]


@contextmanager
def products() -> Iterator[None]:
    """Run the block's biLM products in int8 (where :func:`.kernels.use_onednn` takes the oneDNN path;
    callers check first that this CPU runs int8: :func:`.kernels.resolve_precision`)."""
    token = _enabled.set(True)
    try:
        yield
    finally:
        _enabled.reset(token)


def enabled() -> bool:
    """Whether :func:`products` is in effect."""
    return _enabled.get()


def available() -> bool:
    """Whether this PyTorch has oneDNN with the int8 linear ops this module wraps."""
    onednn_ops = getattr(torch.ops, "onednn", None)
    return torch.backends.mkldnn.is_available() and all(hasattr(onednn_ops, op) for op in OPS)


def kernel() -> str | None:
    """The int8 dot-product instructions oneDNN uses on this CPU (``"AMX-INT8"``, ``"AVX512-VNNI"``,
    ``"AVX2"`` through ``vpmaddubsw``), or ``None`` when it has none (int8 then runs as another precision)."""
    if not available():
        return None
    checks = (
        ("AMX-INT8", "_is_amx_tile_supported"),
        ("AVX512-VNNI", "_is_vnni_supported"),
        ("AVX2", "_is_avx2_supported"),
    )
    for name, check in checks:
        if getattr(torch.cpu, check, lambda: False)():
            return name
    return None


def why_not() -> str:
    """Why :func:`kernel` is ``None``, for messages."""
    if not available():
        return "this PyTorch build has no oneDNN int8 linear ops"
    return (
        f"oneDNN's int8 kernels need AVX2, AVX512-VNNI or AMX; this CPU "
        f"({torch.backends.cpu.get_cpu_capability()}) has none of them"
    )


def weight_range() -> float:
    """The largest weight magnitude ``r`` of the quantized weights: 127, or 63 where the kernel is AVX2's."""
    return _AVX2_WEIGHT_RANGE if kernel() == "AVX2" else _RANGE


def pays(product: str, weight: torch.Tensor) -> bool:
    """Whether ``product`` (one of :data:`PRODUCTS`) with this ``(out, in)`` weight runs in int8."""
    least = MIN_STEP_WEIGHT if product in STEP_PRODUCTS else MIN_WEIGHT
    return product in PRODUCTS and weight.shape[1] >= MIN_IN and weight.numel() >= least


def quantize_weight(weight: torch.Tensor) -> QuantizedWeight:
    """``weight`` ``(out, in)`` quantized per output channel and packed for oneDNN."""
    weight = weight.detach().float()
    limit = weight_range()
    scale = weight.abs().amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny) / limit
    q = torch.round(weight / scale.unsqueeze(1)).clamp_(-limit, limit).to(torch.int8)
    packed = torch.ops.onednn.qlinear_prepack(q.contiguous(), None)
    return QuantizedWeight(packed, scale.contiguous(), torch.zeros(scale.shape[0], dtype=torch.int64))


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` ``(rows, in)`` float32 -> ``(q + 128 as uint8 (rows, in), scale (rows, 1) float32)``; an all-zero
    row gets q = 0 and a tiny scale (its products are then exactly 0)."""
    scale = torch.linalg.vector_norm(x, ord=float("inf"), dim=1, keepdim=True).clamp_min_(_TINY).div_(_RANGE)
    q = torch.div(x, scale).add_(ZERO_POINT).round_().to(torch.uint8)
    return q, scale


def product(q: torch.Tensor, weight: QuantizedWeight) -> torch.Tensor:
    """``(q_x - 128) @ q_W.T * s_W`` in float32 ``(rows, out)`` for quantized rows ``q`` (without their row scale)."""
    return torch.ops.onednn.qlinear_pointwise(
        q, 1.0, ZERO_POINT, weight.packed, weight.scale, weight.zero_points, None, 1.0, 0, torch.float32, "none", [], ""
    )


def linear(
    x: torch.Tensor, weight: QuantizedWeight, bias: torch.Tensor | None = None, clip: float | None = None
) -> torch.Tensor:
    """``x @ W.T + bias`` ``(rows, out)`` float32 for float32 ``x`` ``(rows, in)``; ``clip``: clamped to
    ``[-clip, clip]``."""
    q, scale = quantize_rows(x)
    out = product(q, weight)
    out = out.mul_(scale) if bias is None else out.mul_(scale).add_(bias)
    return out.clamp_(-clip, clip) if clip else out


def linear_add(x: torch.Tensor, weight: QuantizedWeight, other: torch.Tensor) -> torch.Tensor:
    """``other + x @ W.T`` (a new float32 ``(rows, out)`` tensor)."""
    q, scale = quantize_rows(x)
    return product(q, weight).mul_(scale).add_(other)
