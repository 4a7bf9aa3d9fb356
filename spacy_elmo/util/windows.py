"""Long token sequences cut into windows the biLM runs one at a time, so memory stays flat on any line length."""

from __future__ import annotations

from typing import List, Tuple

Range = Tuple[int, int]
#: tokens per biLM sequence at most (the component's ``max_length``; ``embed``'s windows over a longer line)
MAX_LENGTH = 256


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
