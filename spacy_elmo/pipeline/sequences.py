"""Which token ranges of a Doc go through the biLM as one sequence."""

from __future__ import annotations

from typing import List

from spacy.tokens import Doc

from ..util.windows import Range, split_windows

__all__ = ["Range", "sequence_ranges", "split_windows"]


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
