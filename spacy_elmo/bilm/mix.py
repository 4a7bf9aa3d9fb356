"""The task-specific scalar mix of biLM layers (Peters et al. 2018, eq. 1)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class ScalarMix(nn.Module):
    """``gamma * sum_k softmax(s)_k * h_k`` over ``n_layers`` tensors ``(batch, tokens, dim)``.

    With ``do_layer_norm`` each layer is normalised over its unmasked elements first.
    """

    def __init__(
        self,
        n_layers: int,
        do_layer_norm: bool = False,
        initial_scalar_parameters: Sequence[float] | None = None,
        trainable: bool = True,
    ) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"ScalarMix needs at least one layer, found n_layers={n_layers}")
        initial = list(initial_scalar_parameters) if initial_scalar_parameters is not None else [0.0] * n_layers
        if len(initial) != n_layers:
            raise ValueError(
                f"initial_scalar_parameters has {len(initial)} values, expected one per layer ({n_layers})"
            )
        self.n_layers = n_layers
        self.do_layer_norm = do_layer_norm
        self.scalar_parameters = nn.Parameter(torch.tensor(initial, dtype=torch.float32), requires_grad=trainable)
        self.gamma = nn.Parameter(torch.tensor([1.0]), requires_grad=trainable)

    @property
    def weights(self) -> torch.Tensor:
        """The normalised layer weights ``s`` ``(n_layers,)``."""
        return torch.softmax(self.scalar_parameters, dim=0)

    def forward(self, layers: Sequence[torch.Tensor] | torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if len(layers) != self.n_layers:
            raise ValueError(f"ScalarMix expected {self.n_layers} layers, found {len(layers)}")
        weights = self.weights
        if self.do_layer_norm:
            if mask is None:
                raise ValueError("ScalarMix with do_layer_norm needs the mask (batch, tokens)")
            layers = [_masked_layer_norm(layer, mask) for layer in layers]
        mixed = sum(w * layer for w, layer in zip(weights, layers))
        return self.gamma * mixed


def _masked_layer_norm(layer: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Normalise ``(batch, tokens, dim)`` to zero mean, unit variance over the unmasked elements."""
    mask = mask.unsqueeze(-1).to(layer.dtype)
    count = mask.sum() * layer.shape[-1]
    mean = (layer * mask).sum() / count
    variance = (((layer - mean) * mask) ** 2).sum() / count
    return (layer - mean) / torch.sqrt(variance + 1e-12)
