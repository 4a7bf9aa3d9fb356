"""Token -> the ids the biLM's token layer reads: one row of ``width`` ints per token, 0 = padded token.

Two mappings exist. :class:`ByteTokenIds` is AllenNLP's (UTF-8 bytes, see :mod:`.chars`); the
row is the token's character ids. :class:`VocabTokenIds` is ELMoForManyLangs' (a character and a
word vocabulary read from the model directory); its row is the word id, then the character ids.
Every id is shifted by +1 so that an all-zero row marks a padded token position in a batch.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from .chars import N_BYTE_CHAR_IDS, bos_char_ids, check_sentences, eos_char_ids, token_char_ids


class TokenIds:
    """The mapping of a model: ``width`` ids per token, ``n_char_ids`` character ids (padding 0
    included), ``n_word_ids`` word ids (0: the model has no word embedding, and no word column)."""

    width: int
    max_chars: int
    n_char_ids: int
    n_word_ids: int = 0

    def token(self, token: str) -> tuple[int, ...]:
        """The ``width`` ids of one token."""
        raise NotImplementedError

    def bos(self) -> tuple[int, ...]:
        """The ids of the sentence-start marker."""
        raise NotImplementedError

    def eos(self) -> tuple[int, ...]:
        """The ids of the sentence-end marker."""
        raise NotImplementedError

    @property
    def word_column(self) -> int:
        """How many leading ids of a row are the word id (0 or 1); the characters follow."""
        return 1 if self.n_word_ids else 0

    def batch(self, sentences: Sequence[Sequence[str]]) -> torch.Tensor:
        """Ids of a batch without sentence markers, ``(batch, max_tokens, width)`` int64, 0 for padded tokens."""
        check_sentences(sentences)
        out = np.zeros((len(sentences), max((len(s) for s in sentences), default=0), self.width), dtype=np.int64)
        for i, sentence in enumerate(sentences):
            if sentence:
                out[i, : len(sentence)] = [self.token(t) for t in sentence]
        return torch.from_numpy(out)


class ByteTokenIds(TokenIds):
    """AllenNLP's ``ELMoCharacterMapper``: the token's UTF-8 bytes, cut at ``max_chars - 2``, between word markers."""

    n_char_ids = N_BYTE_CHAR_IDS

    def __init__(self, max_chars: int) -> None:
        self.width = self.max_chars = max_chars

    def token(self, token: str) -> tuple[int, ...]:
        return token_char_ids(token, self.max_chars)

    def bos(self) -> tuple[int, ...]:
        return bos_char_ids(self.max_chars)

    def eos(self) -> tuple[int, ...]:
        return eos_char_ids(self.max_chars)


# ELMoForManyLangs' reserved entries of char.dic / word.dic
BOW, EOW, BOS, EOS, OOV, PAD = "<bow>", "<eow>", "<bos>", "<eos>", "<oov>", "<pad>"


class VocabTokenIds(TokenIds):
    """ELMoForManyLangs' mapping (``frontend.create_one_batch``), quirks included.

    A token is cut to ``max_chars - 2`` characters (Unicode code points) first; its word id is that
    of the cut token (``<oov>`` when absent); its characters are the begin marker, each character's
    id (``<oov>`` when absent), the end marker, then ``<pad>``. As in the reference, whose released
    models were trained so, the begin marker is the id of ``<eow>`` and the end marker that of
    ``<bow>``. The sentence markers are the tokens ``<bos>`` / ``<eos>``: their word id, and the
    characters begin marker, the marker's own character id, end marker.
    """

    def __init__(self, chars: Mapping[str, int], words: Mapping[str, int] | None, max_chars: int) -> None:
        self.max_chars = max_chars
        self.chars = dict(chars)
        self.words = dict(words) if words is not None else None
        self.n_char_ids = len(self.chars) + 1
        self.n_word_ids = len(self.words) + 1 if self.words is not None else 0
        self.width = max_chars + self.word_column
        self._begin, self._end = self.chars[EOW], self.chars[BOW]  # sic: the reference's order
        self._char_oov, self._char_pad = self.chars[OOV], self.chars[PAD]
        self._cache: dict[str, tuple[int, ...]] = {}

    def _row(self, word: str, char_ids: list[int]) -> tuple[int, ...]:
        row = [self._begin, *char_ids, self._end]
        row += [self._char_pad] * (self.max_chars - len(row))
        if self.words is not None:
            row.insert(0, self.words.get(word, self.words[OOV]))
        return tuple(i + 1 for i in row)

    def token(self, token: str) -> tuple[int, ...]:
        row = self._cache.get(token)
        if row is None:
            cut = token[: self.max_chars - 2]
            if cut in (BOS, EOS):
                row = self._row(cut, [self.chars[cut]])
            else:
                row = self._row(cut, [self.chars.get(c, self._char_oov) for c in cut])
            if len(self._cache) < 200_000:
                self._cache[token] = row
        return row

    def bos(self) -> tuple[int, ...]:
        return self.token(BOS)

    def eos(self) -> tuple[int, ...]:
        return self.token(EOS)
