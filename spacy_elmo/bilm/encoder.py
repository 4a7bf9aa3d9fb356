"""The context-free token layer: character embedding -> CNN -> highway -> projection."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .options import BiLMOptions

N_CHAR_IDS = 262  # 256 bytes + 4 markers + padding, shifted by one (0 = padded token)


class Highway(nn.Module):
    """One highway layer in bilm-tf's form: ``t * relu(W_t x + b_t) + (1 - t) * x``
    with the carry gate ``t = sigmoid(W_c x + b_c)``. Shapes: ``(..., dim) -> (..., dim)``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.transform = nn.Linear(dim, dim)
        self.carry = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.carry(x))
        return gate * F.relu(self.transform(x)) + (1.0 - gate) * x


class CharCNNEncoder(nn.Module):
    """Maps character ids ``(..., max_chars)`` to token vectors ``(..., projection_dim)``."""

    def __init__(self, options: BiLMOptions) -> None:
        super().__init__()
        self.options = options
        self.char_embedding = nn.Embedding(N_CHAR_IDS, options.char_dim, padding_idx=0)
        self.convs = nn.ModuleList(
            nn.Conv1d(options.char_dim, num, kernel_size=width) for width, num in options.filters
        )
        self.highways = nn.ModuleList(Highway(options.n_filters) for _ in range(options.n_highway))
        self.projection = nn.Linear(options.n_filters, options.projection_dim)
        self.activation = torch.tanh if options.activation == "tanh" else F.relu

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        # (n_tokens, char_dim, max_chars)
        chars = self.char_embedding(char_ids.reshape(-1, char_ids.shape[-1])).transpose(1, 2)
        pooled = [self.activation(conv(chars).amax(dim=-1)) for conv in self.convs]
        hidden = torch.cat(pooled, dim=-1)
        for highway in self.highways:
            hidden = highway(hidden)
        return self.projection(hidden).reshape(*char_ids.shape[:-1], -1)
