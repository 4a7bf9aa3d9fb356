"""The extension attributes ``Doc._.elmo_layers`` and ``Token/Span/Doc._.elmo``.

The component stores arrays in ``doc.user_data`` through the extensions (so they
survive ``Doc.to_bytes``, ``DocBin(store_user_data=True)`` and ``n_process``):

- ``Doc._.elmo_layers``: float32 ``(n_layers, len(doc), dim)`` (with ``store_layers``)
- ``Doc._.elmo_mix_weights``: float32 ``(n_layers,)``, the component's mix
- ``Doc._.elmo_token_vectors``: float32 ``(len(doc), dim)``, the mixed vectors
  (only without ``store_layers``)

``Token._.elmo``, ``Span._.elmo`` and ``Doc._.elmo`` are getters returning float32
``(dim,)`` (Span and Doc: the mean over their tokens), or ``None`` for a Doc the
component has not processed. Importing this module registers them (spaCy imports it
with its entry points when it creates a pipeline).
"""

from __future__ import annotations

from typing import Optional, Union

import numpy as np
from spacy.tokens import Doc, Span, Token

from ..bilm.mix import mean_mixed_vector

LAYERS = "elmo_layers"
MIX_WEIGHTS = "elmo_mix_weights"
TOKEN_VECTORS = "elmo_token_vectors"
VECTOR = "elmo"


def install_extensions() -> None:
    """Register the extension attributes (idempotent; also done when this module is imported)."""
    for name in (LAYERS, MIX_WEIGHTS, TOKEN_VECTORS):
        if not Doc.has_extension(name):
            Doc.set_extension(name, default=None)
    for cls in (Doc, Span, Token):
        if not cls.has_extension(VECTOR):
            cls.set_extension(VECTOR, getter=mean_vector)


def mean_vector(obj: Union[Doc, Span, Token]) -> Optional[np.ndarray]:
    """Mixed ELMo vector of a Token, or the mean over the tokens of a Span / Doc: float32 ``(dim,)``."""
    if isinstance(obj, Token):
        doc, start, end = obj.doc, obj.i, obj.i + 1
    elif isinstance(obj, Span):
        doc, start, end = obj.doc, obj.start, obj.end
    else:
        doc, start, end = obj, 0, len(obj)
    return token_range_vector(doc, start, end)


def token_range_vector(doc: Doc, start: int, end: int) -> Optional[np.ndarray]:
    """Mean mixed vector of ``doc[start:end]``, float32 ``(dim,)``; zeros for an empty range."""
    layers = doc._.get(LAYERS)
    if layers is not None:
        weights = np.asarray(doc._.get(MIX_WEIGHTS), dtype=np.float32)
        return mean_mixed_vector(layers[:, start : max(start, end)], weights)
    vectors = doc._.get(TOKEN_VECTORS)
    if vectors is not None:
        if end <= start:
            return np.zeros(vectors.shape[-1], dtype=np.float32)
        return vectors[start:end].mean(axis=0).astype(np.float32, copy=False)
    return None


install_extensions()
