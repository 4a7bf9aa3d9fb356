"""Held-out perplexity of a biLM with its softmax, forward and backward."""

from __future__ import annotations

import math

import torch

from .corpus import EncodedCorpus
from .lm import BiLMWithSoftmax


@torch.no_grad()
def evaluate(
    model: BiLMWithSoftmax, corpus: EncodedCorpus, batch_tokens: int, device: torch.device
) -> dict[str, float]:
    """Held-out perplexity of the forward and backward LM and their average."""
    model.eval()
    forward = backward = 0.0
    for index in corpus.batch_plan(batch_tokens):
        batch = corpus.batch(index).to(device)
        f, b = model(batch.char_ids, batch.targets, batch.lengths)
        forward, backward = forward + float(f), backward + float(b)
    model.train()
    n = corpus.n_tokens
    fwd, bwd = _perplexity(forward / n), _perplexity(backward / n)
    return {"forward_ppl": fwd, "backward_ppl": bwd, "ppl": (fwd + bwd) / 2}


def _perplexity(nll: float) -> float:
    """``exp(nll)``; inf past float range (a diverged model), nan for nan."""
    return math.exp(nll) if nll < 700 or math.isnan(nll) else math.inf
