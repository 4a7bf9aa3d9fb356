"""Give freed heap memory back to the operating system between batches.

glibc's ``malloc`` keeps the pages of freed memory for reuse, and raises its threshold for serving large blocks
from ``mmap`` after such a block is freed, so after an unusually large batch its activations' pages stay in the
process (a step in RSS that no later batch needs). ``malloc_trim(0)`` returns every free page to the system; it
costs well under a millisecond when there is little to return. Elsewhere than glibc (macOS, musl) this does
nothing.
"""

from __future__ import annotations

import ctypes
import sys
import threading
import time
from typing import Callable, Optional

#: seconds between two trims at most once (under steady load the batches reuse most of what a trim returns)
TRIM_EVERY_S = 5.0


def _malloc_trim() -> Optional[Callable[[int], int]]:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


class HeapTrimmer:
    """Call :meth:`after_batch` after each batch (from any thread): at most every ``every_s`` seconds it returns
    the heap's free pages to the system."""

    def __init__(self, every_s: float = TRIM_EVERY_S) -> None:
        self.every_s = every_s
        self.trims = 0
        self._trim = _malloc_trim()
        self._last = time.monotonic()
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        return self._trim is not None

    def after_batch(self) -> bool:
        """Trim if ``every_s`` has passed since the last trim; whether it did."""
        if self._trim is None:
            return False
        with self._lock:
            now = time.monotonic()
            if now - self._last < self.every_s:
                return False
            self._last = now
        self._trim(0)
        self.trims += 1
        return True
