"""The task-specific scalar mix of biLM layers (Peters et al. 2018, eq. 1), and fixed mixes in numpy."""

from __future__ import annotations

from typing import List, Sequence, Union

import numpy as np
import torch
from torch import nn

#: a fixed mix of the layers: "average", "top", a layer index, or one weight per layer
Mix = Union[str, int, List[float]]


def mix_weights(mix: Mix, n_layers: int, source: str = "the biLM", setting: str = "mix") -> np.ndarray:
    """Per-layer weights ``(n_layers,)`` float32: the vector of a token is ``sum_k w_k * layer_k``.

    ``"average"``: ``1 / n_layers`` each; ``"top"``: the last layer; an int: that layer
    (negative counts from the top); a list: the weights as given. ``setting`` names the
    value in error messages.
    """
    weights = np.zeros(n_layers, dtype=np.float32)
    if mix == "average":
        weights[:] = 1.0 / n_layers
    elif mix == "top":
        weights[-1] = 1.0
    elif isinstance(mix, int):
        if not -n_layers <= mix < n_layers:
            raise ValueError(
                f"{setting}={mix} is not a layer of {source}, which has {n_layers} layers "
                f"(0 = token layer ... {n_layers - 1} = top biLSTM layer)"
            )
        weights[mix] = 1.0
    else:
        if len(mix) != n_layers:
            raise ValueError(
                f"{setting} has {len(mix)} weights, but {source} has {n_layers} layers: give one weight per layer"
            )
        values = np.asarray(mix, dtype=np.float64)
        # float32 holds |w| < 3.4e38; the weighted sum must stay finite too, so the weights' magnitudes must
        # add up to a finite float32 (1e308 would give inf or NaN vectors and a similarity of 0.0)
        if not np.isfinite(values).all() or not sum(abs(float(v)) for v in values) < np.finfo(np.float32).max:
            raise ValueError(
                f"{setting} must be finite weights whose magnitudes add up to less than 3.4e38 (float32), "
                f"found {list(mix)}"
            )
        weights[:] = values
    return weights


def mean_mixed_vector(layers: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The mean over tokens of the mixed token vectors: ``(n_layers, tokens, dim)`` -> float32 ``(dim,)``
    (zeros for no tokens); what ``Span._.elmo`` / ``Doc._.elmo`` and ``doc.similarity`` use."""
    if layers.shape[1] == 0:
        return np.zeros(layers.shape[-1], dtype=np.float32)
    return np.tensordot(weights, layers.mean(axis=1), axes=1).astype(np.float32, copy=False)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors ``(dim,)``; 0.0 if either is zero."""
    norms = float(np.linalg.norm(a)) * float(np.linalg.norm(b))
    return float(np.dot(a, b) / norms) if norms > 0 else 0.0


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
