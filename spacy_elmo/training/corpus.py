"""Tokenized text (one sentence per line, tokens separated by spaces) as biLM training batches."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..bilm.chars import BOS_TOKEN, EOS_TOKEN, token_char_ids
from ..util.text import read_lines
from .vocab import UNK_TOKEN


def read_sentences(path: str | Path, max_length: int, rank: int = 0, world_size: int = 1) -> list[list[str]]:
    """This rank's share of the lines of ``path`` (UTF-8, a leading byte-order mark dropped; line ``i`` goes to
    rank ``i % world_size``), each cut to ``max_length`` tokens; blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"corpus file not found: {path}")
    sentences = []
    for i, _, line in read_lines(path):
        if i % world_size == rank:
            tokens = line.split()
            if tokens:
                sentences.append(tokens[:max_length])
    if not sentences:
        raise ValueError(f"{path}: no sentences (the file is empty or blank)")
    return sentences


@dataclass
class Batch:
    """``char_ids`` ``(batch, time, chars)`` and ``targets`` ``(batch, time)`` both with the sentence
    markers, ``lengths`` ``(batch,)`` counting them, ``n_tokens`` the predictions per direction."""

    char_ids: torch.Tensor
    targets: torch.Tensor
    lengths: torch.Tensor

    @property
    def n_tokens(self) -> int:
        return int((self.lengths - 1).sum())

    def to(self, device: torch.device) -> "Batch":
        return Batch(self.char_ids.to(device), self.targets.to(device), self.lengths)


class EncodedCorpus:
    """Sentences as token-type ids, with one character-id row and one softmax id per type."""

    def __init__(self, sentences: list[list[str]], vocab: list[str], max_chars: int) -> None:
        word_ids = {w: i for i, w in enumerate(vocab)}
        unk = word_ids[UNK_TOKEN]
        types: dict[str, int] = {BOS_TOKEN: 0, EOS_TOKEN: 1}
        self.sentences = [
            np.array([types.setdefault(t, len(types)) for t in [BOS_TOKEN, *s, EOS_TOKEN]], dtype=np.int64)
            for s in sentences
        ]
        self.char_table = torch.tensor([token_char_ids(t, max_chars) for t in types], dtype=torch.int64)
        self.softmax_ids = torch.tensor([word_ids.get(t, unk) for t in types], dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.sentences)

    @property
    def n_tokens(self) -> int:
        return sum(len(s) - 1 for s in self.sentences)

    def batch_plan(
        self, batch_tokens: int, generator: torch.Generator | None = None, sentences: list[int] | None = None
    ) -> list[list[int]]:
        """Sentence indices of length-bucketed batches of at most ``batch_tokens`` padded tokens
        (or one sentence) over ``sentences`` (default: all); shuffled when a generator is given.
        Build each with :meth:`batch`."""
        chosen = list(range(len(self.sentences))) if sentences is None else sentences
        order = (
            [chosen[i] for i in torch.randperm(len(chosen), generator=generator).tolist()]
            if generator is not None
            else chosen
        )
        pool = 100 * max(1, batch_tokens // 20)
        groups: list[list[int]] = []
        for start in range(0, len(order), pool):
            chunk = sorted(order[start : start + pool], key=lambda i: len(self.sentences[i]))
            group: list[int] = []
            for i in chunk:
                if group and (len(group) + 1) * len(self.sentences[i]) > batch_tokens:
                    groups.append(group)
                    group = []
                group.append(i)
            if group:
                groups.append(group)
        if generator is not None:
            groups = [groups[i] for i in torch.randperm(len(groups), generator=generator).tolist()]
        return groups

    def batch(self, index: list[int]) -> Batch:
        """The sentences ``index`` as one padded batch."""
        lengths = torch.tensor([len(self.sentences[i]) for i in index])
        types = torch.zeros(len(index), int(lengths.max()), dtype=torch.int64)
        for row, i in enumerate(index):
            types[row, : lengths[row]] = torch.from_numpy(self.sentences[i])
        padded = torch.arange(types.shape[1]).unsqueeze(0) >= lengths.unsqueeze(1)
        char_ids = self.char_table[types].masked_fill(padded.unsqueeze(-1), 0)
        return Batch(char_ids, self.softmax_ids[types], lengths)
