"""The softmax vocabulary in bilm-tf's ``vocab.txt`` format (``<S>``, ``</S>``, ``<UNK>`` first)."""

from __future__ import annotations

from collections import Counter
from typing import Iterable

from ..bilm.chars import BOS_TOKEN, EOS_TOKEN

UNK_TOKEN = "<UNK>"
SPECIALS = (BOS_TOKEN, EOS_TOKEN, UNK_TOKEN)


def build_vocab(sentences: Iterable[list[str]], max_size: int, min_count: int) -> list[str]:
    """The ``max_size`` most frequent tokens seen at least ``min_count`` times, after the specials."""
    counts = Counter(token for sentence in sentences for token in sentence)
    for special in SPECIALS:
        counts.pop(special, None)
    ranked = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return [*SPECIALS, *ranked[: max(0, max_size - len(SPECIALS))]]


def check_vocab(words: list[str], source: str) -> None:
    if list(words[:3]) != list(SPECIALS):
        raise ValueError(f"{source}: a vocabulary must start with {', '.join(SPECIALS)}; found {words[:3]}")
    if len(set(words)) != len(words):
        raise ValueError(f"{source}: the vocabulary has duplicate entries")
