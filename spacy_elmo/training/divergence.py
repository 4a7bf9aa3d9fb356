"""A run whose loss, gradient norm, weights or held-out perplexity become NaN or infinite stops here: one line
saying where and what to change, and nothing is exported."""

from __future__ import annotations

from typing import Callable

import torch

from .config import TrainConfig


class Diverged(ValueError):
    """The loss, a gradient or a weight became NaN or infinite: the run stops and exports nothing."""


def divergence_message(config: TrainConfig, step: int, what: str) -> str:
    """The one line a diverged run ends with: the step, what became non-finite, the rates and clip to lower."""
    return (
        f"training diverged at step {step}: {what}; nothing was exported: lower the learning "
        f"rate (lr {config.lr:g}, head_lr {config.head_lr:g}) or the clip ({config.clip:g})"
    )


def check_weights(model: torch.nn.Module, message: Callable[[str], str]) -> None:
    """Raise :class:`Diverged` (``message(what)``) if a weight of ``model`` is NaN or infinite."""
    for name, param in model.named_parameters():
        if not torch.isfinite(param).all():
            raise Diverged(message(f"the weight {name} holds NaN or inf"))
