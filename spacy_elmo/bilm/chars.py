"""Token -> character ids, exactly as AllenNLP's ``ELMoCharacterMapper`` maps them.

Each token becomes ``max_chars`` ids: begin-of-word, the token's UTF-8 bytes
(truncated to ``max_chars - 2``), end-of-word, then padding; every id is shifted
by +1 so that 0 can mark padded token positions in a batch. The sentence
markers ``<S>`` / ``</S>`` have their own reserved byte values.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np
import torch

MAX_CHARS = 50
N_BYTE_CHAR_IDS = 262  # 256 bytes + 4 markers + padding, shifted by one (0 = padded token)
BOS_CHAR = 256
EOS_CHAR = 257
BOW_CHAR = 258
EOW_CHAR = 259
PAD_CHAR = 260
BOS_TOKEN = "<S>"
EOS_TOKEN = "</S>"


def _marker_ids(char: int, max_chars: int) -> tuple[int, ...]:
    ids = [PAD_CHAR] * max_chars
    ids[0], ids[1], ids[2] = BOW_CHAR, char, EOW_CHAR
    return tuple(i + 1 for i in ids)


@lru_cache(maxsize=200_000)
def token_char_ids(token: str, max_chars: int = MAX_CHARS) -> tuple[int, ...]:
    """The ``max_chars`` character ids of one token (already shifted by +1)."""
    if token == BOS_TOKEN:
        return _marker_ids(BOS_CHAR, max_chars)
    if token == EOS_TOKEN:
        return _marker_ids(EOS_CHAR, max_chars)
    encoded = token.encode("utf-8", "ignore")[: max_chars - 2]
    ids = [PAD_CHAR] * max_chars
    ids[0] = BOW_CHAR
    ids[1 : len(encoded) + 1] = encoded
    ids[len(encoded) + 1] = EOW_CHAR
    return tuple(i + 1 for i in ids)


def bos_char_ids(max_chars: int = MAX_CHARS) -> tuple[int, ...]:
    return _marker_ids(BOS_CHAR, max_chars)


def eos_char_ids(max_chars: int = MAX_CHARS) -> tuple[int, ...]:
    return _marker_ids(EOS_CHAR, max_chars)


def check_sentences(sentences: object, name: str = "sentences") -> None:
    """Raise ``TypeError`` unless ``sentences`` is a list of lists of strings."""
    if isinstance(sentences, (str, bytes)) or not isinstance(sentences, Sequence):
        raise TypeError(f"{name} must be a list of token lists (list[list[str]]), found {type(sentences).__name__}")
    for i, sentence in enumerate(sentences):
        if isinstance(sentence, (str, bytes)) or not isinstance(sentence, Sequence):
            raise TypeError(
                f"{name}[{i}] must be a list of token strings, found {type(sentence).__name__}"
                + (f" {sentence!r:.40}: split it into tokens first" if isinstance(sentence, str) else "")
            )
        for j, token in enumerate(sentence):
            if not isinstance(token, str):
                raise TypeError(f"{name}[{i}][{j}] must be a str token, found {type(token).__name__}")


def batch_char_ids(sentences: Sequence[Sequence[str]], max_chars: int = MAX_CHARS) -> torch.Tensor:
    """Character ids of a batch, ``(batch, max_tokens, max_chars)`` int64, 0 for padded tokens (no sentence
    markers: the biLM adds them)."""
    check_sentences(sentences)
    width = max((len(s) for s in sentences), default=0)
    out = np.zeros((len(sentences), width, max_chars), dtype=np.int64)
    for i, sentence in enumerate(sentences):
        tokens = [token_char_ids(t, max_chars) for t in sentence]
        if tokens:
            out[i, : len(tokens)] = tokens
    return torch.from_numpy(out)
