"""A bounded LRU cache of the context-free token layer (character CNN + highway + projection).

Layer 0 of ELMo depends on a token's characters alone (and, in ELMoForManyLangs models, its
word id), so a word type needs it computed once. Entries are keyed by the row of ids the
token layer sees (see :mod:`.token_ids`: the character ids cut at the encoder's maximum, with
the word markers, and the word id where there is one): two strings the encoder cannot tell
apart share an entry; and by the precision the encoder computes in (fp32, bf16 under autocast, or int8).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import torch

from ..util.checks import is_int
from . import onednn
from .encoder import CharCNNEncoder

DEFAULT_TOKEN_CACHE_SIZE = 20_000
_FIRST_CAPACITY = 1024


class TokenCache:
    """Token-layer vectors of up to ``size`` distinct tokens; the least recently used go first.

    Memory: ``size * projection_dim * 4`` bytes of vectors at most (the store grows by doubling
    as entries come in) plus about 250 bytes of key and index per entry (ids as int16; about 350
    bytes with int32 keys, for vocabularies of 32768 ids or more). The entries belong to
    one state of the encoder's parameters: a changed parameter (an optimizer step, a loaded
    state dict) or another device empties the cache. Used only without autograd. Thread-safe: lookups and
    inserts hold a lock, the encoder runs outside it (two threads missing the same token both compute it).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._slots: OrderedDict[bytes, int] = OrderedDict()
        self._store: torch.Tensor | None = None  # (capacity, dim) float32
        self._state: tuple | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._slots)

    def __getstate__(self) -> dict:
        return {"size": self.size, "_slots": OrderedDict(), "_store": None, "_state": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._clear()

    def _clear(self) -> None:
        self._slots.clear()
        self._store = None

    def __call__(self, encoder: CharCNNEncoder, char_ids: torch.Tensor) -> torch.Tensor:
        """``encoder(char_ids)`` through the cache: ``(n_tokens, width)`` -> ``(n_tokens, projection_dim)``."""
        dtype = onednn.compute_dtype(encoder.projection.weight)
        device = encoder.projection.weight.device
        state = (device, onednn.versions(encoder.parameters()))
        tag = {torch.bfloat16: b"b", torch.int8: b"i"}.get(dtype, b"f")
        dtype = onednn.value_dtype(dtype)  # of the vectors
        rows = char_ids.to(torch.int16 if encoder.n_ids <= 2**15 else torch.int32).cpu().numpy()
        keys = [tag + row.tobytes() for row in rows]
        hit_at, hit_slots, new_rows = [], [], {}
        out = torch.empty(len(keys), encoder.options.projection_dim, dtype=dtype, device=device)
        with self._lock:
            if state != self._state:
                self._clear()
                self._state = state
            for i, key in enumerate(keys):
                slot = self._slots.get(key)
                if slot is not None:
                    self._slots.move_to_end(key)
                    hit_at.append(i)
                    hit_slots.append(slot)
                elif key not in new_rows:
                    new_rows[key] = i
            if hit_at:  # read under the lock: another thread's insert may reuse these slots
                assert self._store is not None  # hits are slots of the store
                out[hit_at] = self._store[hit_slots].to(dtype)
        if new_rows:
            computed = encoder(char_ids[list(new_rows.values())])
            position = {key: k for k, key in enumerate(new_rows)}
            miss_at = [i for i, key in enumerate(keys) if key in position]
            out[miss_at] = computed[[position[keys[i]] for i in miss_at]]
            with self._lock:
                if state == self._state:  # not for parameters that changed meanwhile
                    self._insert(list(new_rows), computed)
        return out

    def _insert(self, keys: list[bytes], vectors: torch.Tensor) -> None:
        """Store the last ``size`` of ``keys`` with their ``vectors``, evicting the least recently used; keys
        stored meanwhile (by another thread) keep their slot."""
        fresh = [k for k, key in enumerate(keys) if key not in self._slots]
        if len(fresh) < len(keys):
            keys, vectors = [keys[k] for k in fresh], vectors[fresh]
        keys, vectors = keys[-self.size :], vectors[-self.size :]
        if not keys:
            return
        if self._store is None:
            self._store = _new_store(min(self.size, max(_FIRST_CAPACITY, len(keys))), vectors)
        free = self._store.shape[0] - len(self._slots)
        if free < len(keys) and self._store.shape[0] < self.size:
            grown = _new_store(min(self.size, max(2 * self._store.shape[0], len(self._slots) + len(keys))), vectors)
            grown[: self._store.shape[0]] = self._store
            self._store = grown
        slots = []
        for key in keys:
            if len(self._slots) < self._store.shape[0]:
                slot = len(self._slots)
            else:
                slot = self._slots.popitem(last=False)[1]
            self._slots[key] = slot
            slots.append(slot)
        self._store[slots] = vectors.float()


def _new_store(rows: int, like: torch.Tensor) -> torch.Tensor:
    """A float32 ``(rows, dim)`` store on ``like``'s device that is not an inference tensor (so it can
    be written to outside ``torch.inference_mode`` too)."""
    with torch.inference_mode(False):
        return torch.zeros(rows, like.shape[-1], dtype=torch.float32, device=like.device)


def check_token_cache_size(size: object, source: str = "token_cache_size") -> int:
    """``size`` as a validated int >= 0 (0 disables the cache)."""
    if not is_int(size) or size < 0:
        raise ValueError(f"{source} must be an int >= 0 (0 disables the cache), found {size!r}")
    return size
