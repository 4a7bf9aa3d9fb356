"""A bounded LRU cache of biLM outputs per sequence, for a frozen biLM that sees the same sequences again.

``spacy train`` runs a frozen, annotating ``elmo`` component over the same training and dev
sentences every epoch; the biLM's output for a sequence depends only on the model, the
precision and the sequence's token texts (not on its batch), so it can be computed once.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from itertools import chain
from typing import Callable, Dict, Hashable, List, Optional, Sequence, Tuple, cast

import numpy as np
from torch import nn

from ..bilm import onednn

Key = Tuple[str, Tuple[str, ...]]  # (precision, the sequence's token texts)
MB = 2**20


def sequence_key(precision: str, words: Sequence[str]) -> Key:
    """The cache key of one biLM sequence (a sentence or a window of one)."""
    return precision, tuple(words)


def key_nbytes(key: Key) -> int:
    """Bytes held by a key: the tuples and their strings (the precision string is shared)."""
    precision, words = key
    return sys.getsizeof(key) + sys.getsizeof(words) + sum(sys.getsizeof(word) for word in words)


def model_identity(model: nn.Module) -> Tuple[Hashable, ...]:
    """Changes whenever ``model``'s weights may have changed: the module, its device and every
    tensor's storage and version counter, which in-place updates bump (optimizer steps,
    ``load_state_dict``, ``p.copy_(...)`` under ``torch.no_grad()``). Writes through ``p.data``
    bypass the counter; the biLM's own packed CPU weights (``bilm/onednn.py``) ignore them too."""
    tensors = chain(model.parameters(), model.buffers())
    return (id(model), str(next(model.parameters()).device), *onednn.versions(tensors))


class SequenceCache:
    """Float32 layer arrays ``(n_layers, n_tokens, dim)`` per :data:`Key`, least recently used evicted first.

    ``nbytes`` (the arrays' bytes plus their keys', see :func:`key_nbytes`) never exceeds
    ``max_bytes``; an entry larger than the whole budget is not stored. Entries belong to one
    model state: :meth:`bind` drops them all when the model identity changes. Stored arrays are
    made read-only (a Doc holding one cannot alter the cache), and a pickled cache (``nlp.pipe``
    with spawned workers) arrives empty. ``hits`` / ``misses`` count the lookups of :meth:`get`,
    ``evictions`` the entries dropped to make room, ``too_large`` the entries not stored (larger than the budget).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.too_large = 0
        self._entries: "OrderedDict[Key, Tuple[np.ndarray, int]]" = OrderedDict()
        self._identity: Optional[Hashable] = None

    def __len__(self) -> int:
        return len(self._entries)

    def __getstate__(self) -> Dict[str, int]:
        return {"max_bytes": self.max_bytes}

    def __setstate__(self, state: Dict[str, int]) -> None:
        SequenceCache.__init__(self, state["max_bytes"])

    def clear(self) -> None:
        self._entries.clear()
        self.nbytes = 0

    def bind(self, identity: Hashable) -> None:
        """Use the cache for the model state ``identity`` (see :func:`model_identity`); drop entries of another."""
        if identity != self._identity:
            self.clear()
            self._identity = identity

    def get(self, key: Key) -> Optional[np.ndarray]:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: Key, array: np.ndarray) -> None:
        """Store ``array`` (made read-only) under ``key``, evicting the least recently used entries to fit."""
        size = array.nbytes + key_nbytes(key)
        if size > self.max_bytes:
            self.too_large += 1
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self.nbytes -= old[1]
        while self.nbytes + size > self.max_bytes:
            _, (_, evicted) = self._entries.popitem(last=False)
            self.nbytes -= evicted
            self.evictions += 1
        array.setflags(write=False)
        self._entries[key] = (array, size)
        self.nbytes += size

    def get_or_compute(self, keys: Sequence[Key], compute: Callable[[List[int]], List[np.ndarray]]) -> List[np.ndarray]:
        """The arrays for ``keys``: cached ones as stored, the others from ``compute(indices)``.

        ``compute`` gets the indices into ``keys`` of the missing sequences (each distinct key
        once) and returns their arrays in that order; they are stored and returned.
        """
        found: Dict[Key, Optional[np.ndarray]] = {}
        missing: List[int] = []
        for i, key in enumerate(keys):
            if key not in found:
                found[key] = self.get(key)
                if found[key] is None:
                    missing.append(i)
        if missing:
            for i, array in zip(missing, compute(missing)):
                found[keys[i]] = array
                self.put(keys[i], array)
        return [cast(np.ndarray, found[key]) for key in keys]  # every key is found or computed by now
