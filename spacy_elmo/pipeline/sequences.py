"""Which token ranges of a Doc go through the biLM as one sequence."""

from __future__ import annotations

from typing import List, Tuple

from spacy.tokens import Doc

Range = Tuple[int, int]


def split_windows(start: int, end: int, max_length: int) -> List[Range]:
    """Split ``[start, end)`` into the fewest windows of at most ``max_length`` tokens.

    The windows are as even as possible (lengths differ by at most one), so no
    window is left with only a few tokens of context.
    """
    n_tokens = end - start
    if n_tokens <= 0:
        return []
    n_windows = -(-n_tokens // max_length)
    base, extra = divmod(n_tokens, n_windows)
    windows = []
    for i in range(n_windows):
        size = base + (1 if i < extra else 0)
        windows.append((start, start + size))
        start += size
    return windows


def sequence_ranges(doc: Doc, max_length: int) -> List[Range]:
    """The ``[start, end)`` token ranges fed to the biLM, in order, covering the Doc exactly once.

    Each sentence is one sequence when the Doc has sentence boundaries, else the
    whole Doc; any sequence longer than ``max_length`` is split into windows.
    """
    if len(doc) == 0:
        return []
    if doc.has_annotation("SENT_START"):
        sentences = [(sent.start, sent.end) for sent in doc.sents]
    else:
        sentences = [(0, len(doc))]
    return [window for start, end in sentences for window in split_windows(start, end, max_length)]
