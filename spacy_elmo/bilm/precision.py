"""The arithmetic the biLM's products run in: the one list of precisions and its check.

- ``"fp32"``: float32 throughout;
- ``"bf16"``: products in bfloat16 (autocast), the LSTM's cell state in float32;
- ``"int8"``: inference only; products with int8 weights (symmetric, per output channel) and
  int8 activations (per row), accumulated in int32, everything else in float32 (see :mod:`.int8`).

What a requested precision runs as on this machine is :func:`.kernels.resolve_precision`'s to say.
"""

from __future__ import annotations

from typing import Literal, get_args

Precision = Literal["fp32", "bf16", "int8"]
PRECISIONS: tuple[Precision, ...] = get_args(Precision)
TRAINING_PRECISIONS: tuple[Precision, ...] = ("fp32", "bf16")  # int8 has no gradients


def check_precision(precision: object, source: str = "precision", allowed: tuple[str, ...] = PRECISIONS) -> Precision:
    """``precision`` when it is one of ``allowed``, else ``ValueError`` naming ``source``.

    ``allowed``: :data:`PRECISIONS`, or :data:`TRAINING_PRECISIONS` where gradients are needed.
    """
    if precision not in allowed:
        why = " (int8 is for inference only)" if precision == "int8" else ""
        raise ValueError(f"{source} must be one of {allowed}, found {precision!r}{why}")
    return precision  # type: ignore[return-value]  # checked just above
