"""How many torch threads each of several workers in one machine gets."""

from __future__ import annotations

import os


def threads_per_worker(workers: int) -> int:
    """This machine's logical CPUs shared evenly among ``workers`` (at least 1 each)."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))
