"""The context-free token layer: character embedding -> CNN -> highway -> projection."""

from __future__ import annotations

from typing import TypedDict

import torch
from torch import nn
from torch.nn import functional as F

from . import int8, kernels, onednn
from .chars import N_BYTE_CHAR_IDS as N_CHAR_IDS
from .modules import ModuleList
from .options import BiLMOptions


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


def _bias(conv: nn.Conv1d) -> torch.Tensor:
    assert conv.bias is not None  # every convolution here is built with a bias
    return conv.bias


class _PackedEncoder(TypedDict):
    """The encoder's weights for the oneDNN path (see ``CharCNNEncoder._packed``)."""

    embedding: torch.Tensor
    word_embedding: torch.Tensor | None
    conv: torch.Tensor | int8.QuantizedWeight
    conv_bias: torch.Tensor
    invalid: torch.Tensor
    highways: list[tuple[torch.Tensor | int8.QuantizedWeight, torch.Tensor]]
    projection: torch.Tensor | int8.QuantizedWeight
    projection_bias: torch.Tensor


class CharCNNEncoder(nn.Module):
    """Maps token ids ``(..., width)`` to token vectors ``(..., projection_dim)``.

    A row is ``max_chars`` character ids (AllenNLP), or a word id then ``max_chars`` character
    ids (ELMoForManyLangs: its word embedding ``(n_word_ids, word_dim)`` is concatenated with the
    highway output before the projection); see :mod:`.token_ids`.
    """

    def __init__(
        self, options: BiLMOptions, n_char_ids: int = N_CHAR_IDS, n_word_ids: int = 0, word_dim: int = 0
    ) -> None:
        super().__init__()
        self.options = options
        self.char_embedding = nn.Embedding(n_char_ids, options.char_dim, padding_idx=0)
        self.word_embedding = nn.Embedding(n_word_ids, word_dim, padding_idx=0) if n_word_ids else None
        self.word_dim = word_dim if n_word_ids else 0
        self.convs = ModuleList(nn.Conv1d(options.char_dim, num, kernel_size=width) for width, num in options.filters)
        self.highways = ModuleList(Highway(options.n_filters) for _ in range(options.n_highway))
        self.projection = nn.Linear(self.word_dim + options.n_filters, options.projection_dim)
        self.activation = torch.tanh if options.activation == "tanh" else F.relu

    def __getstate__(self) -> dict:
        return onednn.drop_cache(self.__dict__)

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        dtype = onednn.compute_dtype(self.projection.weight)
        if kernels.use_onednn(char_ids, dtype):
            return self._forward_onednn(char_ids, dtype)
        ids = char_ids.reshape(-1, char_ids.shape[-1])
        # (n_tokens, char_dim, max_chars)
        chars = self.char_embedding(ids[:, self.word_column :]).transpose(1, 2)
        # max: cheaper backward than amax
        pooled = [self.activation(conv(chars).max(dim=-1).values) for conv in self.convs]
        hidden = torch.cat(pooled, dim=-1)
        for highway in self.highways:
            hidden = highway(hidden)
        if self.word_embedding is not None:
            hidden = torch.cat([self.word_embedding(ids[:, 0]), hidden], dim=-1)
        return self.projection(hidden).reshape(*char_ids.shape[:-1], -1)

    @property
    def word_column(self) -> int:
        """1 when a row starts with a word id, else 0."""
        return 0 if self.word_embedding is None else 1

    @property
    def n_ids(self) -> int:
        """One more than the largest id a row may hold."""
        n_words = self.word_embedding.num_embeddings if self.word_embedding is not None else 0
        return max(self.char_embedding.num_embeddings, n_words)

    def _packed(self, dtype: torch.dtype) -> _PackedEncoder:
        """All convolutions as one product over windows of the widest filter's width (the narrower
        filters' kernels zero-padded), each highway's two products as one; packed for oneDNN (``torch.int8``:
        see :func:`.onednn.pack`, the other values in float32)."""
        values = onednn.value_dtype(dtype)

        def build() -> _PackedEncoder:
            widths = [w for w, _ in self.options.filters]
            width, char_dim, n_chars = max(widths), self.options.char_dim, self.options.max_chars
            conv_kernels = torch.zeros(self.options.n_filters, width, char_dim)
            invalid = torch.zeros(n_chars, self.options.n_filters)  # -inf where a filter runs past the token
            col = 0
            for (w, num), conv in zip(self.options.filters, self.convs):
                conv_kernels[col : col + num, :w] = conv.weight.transpose(1, 2)
                invalid[n_chars - w + 1 :, col : col + num] = float("-inf")
                col += num
            return _PackedEncoder(
                embedding=self.char_embedding.weight.to(values),
                word_embedding=None if self.word_embedding is None else self.word_embedding.weight.to(values),
                conv=onednn.pack(conv_kernels.reshape(self.options.n_filters, -1), dtype, "char_cnn"),
                conv_bias=torch.cat([_bias(conv) for conv in self.convs]).to(values),
                invalid=invalid.to(values),
                highways=[
                    (
                        onednn.pack(torch.cat([h.transform.weight, h.carry.weight]), dtype, "highway"),
                        torch.cat([h.transform.bias, h.carry.bias]).to(values),
                    )
                    for h in self.highways
                ],
                projection=onednn.pack(self.projection.weight, dtype, "token_projection"),
                projection_bias=self.projection.bias.to(values),
            )

        return onednn.cached(self, dtype, build)

    def _forward_onednn(self, char_ids: torch.Tensor, dtype: torch.dtype, chunk: int = 8) -> torch.Tensor:
        """Inference on CPU, the same function as the plain path, in blocks of ``onednn.BLOCK`` tokens:
        per ``chunk`` tokens one product of the character windows with all filters, then the max over
        each filter's valid positions, then the activation (monotonic, so it commutes with the max)."""
        p = self._packed(dtype)
        ids = char_ids.reshape(-1, char_ids.shape[-1])
        n_tokens, n_chars = ids.shape[0], self.options.max_chars
        width = max(w for w, _ in self.options.filters)
        out = torch.empty(n_tokens, self.options.projection_dim, dtype=onednn.value_dtype(dtype))
        for start in range(0, n_tokens, onednn.BLOCK):
            block = ids[start : start + onednn.BLOCK]
            size = block.shape[0]
            if size < onednn.BLOCK:  # pad with empty tokens to a bounded set of sizes
                block = torch.cat([block, block.new_zeros(onednn.padded_rows(size) - size, block.shape[1])])
            # (tokens, chars + width - 1, dim)
            chars = F.pad(F.embedding(block[:, self.word_column :], p["embedding"]), (0, 0, 0, width - 1))
            pooled = chars.new_empty(block.shape[0], self.options.n_filters)
            for k in range(0, block.shape[0], chunk):
                part = chars[k : k + chunk]
                windows = part.unfold(1, width, 1)[:, :n_chars].transpose(2, 3).reshape(-1, width * part.shape[-1])
                conv = onednn.linear(windows, p["conv"], p["conv_bias"]).view(part.shape[0], n_chars, -1)
                torch.amax(conv.add_(p["invalid"]), dim=1, out=pooled[k : k + chunk])
            hidden = self.activation(pooled)
            dim = hidden.shape[-1]
            for packed, bias in p["highways"]:
                both = onednn.linear(hidden, packed, bias)
                transform, gate = F.relu(both[:, :dim]), torch.sigmoid(both[:, dim:])
                hidden = torch.addcmul(hidden, gate, transform - hidden)  # g * t + (1 - g) * x
            if p["word_embedding"] is not None:
                hidden = torch.cat([F.embedding(block[:, 0], p["word_embedding"]), hidden], dim=-1)
            out[start : start + size] = onednn.linear(hidden, p["projection"], p["projection_bias"])[:size]
        return out.reshape(*char_ids.shape[:-1], -1)
