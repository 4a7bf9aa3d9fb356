"""The biLM with its language-model head: an adaptive softmax shared by both directions."""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn

from ..bilm.model import BiLM
from ..bilm.options import BiLMOptions
from ..bilm.token_cache import DEFAULT_TOKEN_CACHE_SIZE


def softmax_cutoffs(vocab_size: int) -> list[int]:
    """Adaptive-softmax cluster boundaries: a 2k-word head, then 10k and 50k tails where the vocabulary
    reaches (a tiny vocabulary gets one tail with its rarer half)."""
    return [c for c in (2000, 10000, 50000) if c < vocab_size - 1] or [max(1, vocab_size // 2)]


class BiLMWithSoftmax(nn.Module):
    """Forward LM predicts token ``t+1`` from the top layer's forward half at ``t``;
    backward LM predicts ``t-1`` from the backward half. Loss: exact log-likelihood
    through :class:`torch.nn.AdaptiveLogSoftmaxWithLoss` (so perplexities are exact).

    The biLM keeps a token cache: it serves only runs without autograd (evaluation, a frozen biLM) and
    empties itself whenever a parameter changes."""

    def __init__(self, options: BiLMOptions, vocab: list[str], dropout: float = 0.1) -> None:
        super().__init__()
        self.bilm = BiLM(options, vocab=vocab, dropout=dropout, token_cache_size=DEFAULT_TOKEN_CACHE_SIZE)
        self.dropout = nn.Dropout(dropout)
        self.softmax = nn.AdaptiveLogSoftmaxWithLoss(
            options.projection_dim, len(vocab), softmax_cutoffs(len(vocab)), div_value=4.0
        )

    def forward(
        self, char_ids: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor, frozen: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed negative log-likelihood of the forward and the backward LM.

        ``char_ids`` ``(batch, time, chars)``, ``targets`` ``(batch, time)`` softmax ids,
        ``lengths`` ``(batch,)``, all including the sentence markers. ``frozen``: the biLM runs without
        autograd (only the softmax gets gradients; on CPU the biLM then takes its fast inference path).
        """
        with torch.no_grad() if frozen else nullcontext():
            top = self.bilm.layers_with_markers(char_ids, lengths)[-1]
        half = self.bilm.options.projection_dim
        steps = top.shape[1] - 1
        valid = torch.arange(steps).unsqueeze(0) < (lengths - 1).unsqueeze(1)
        valid = valid.to(top.device)
        forward_states = self.dropout(top[:, :-1, :half][valid])
        backward_states = self.dropout(top[:, 1:, half:][valid])
        with torch.autocast(top.device.type, enabled=False):  # the softmax stays fp32 under bf16 autocast
            forward_nll = -self.softmax(forward_states.float(), targets[:, 1:][valid]).output.sum()
            backward_nll = -self.softmax(backward_states.float(), targets[:, :-1][valid]).output.sum()
        return forward_nll, backward_nll
