"""``vector`` / ``has_vector`` / ``vector_norm`` / ``similarity`` hooks backed by the ELMo vectors.

Hooks are module-level functions (picklable). They are not serialized by spaCy:
after ``Doc.to_bytes``, ``DocBin`` or ``nlp.pipe(n_process>1)`` call
:func:`set_vector_hooks` again (the extension values themselves survive).
"""

from __future__ import annotations

from typing import Any, Union

import numpy as np
from spacy.tokens import Doc, Span, Token

from ..bilm.mix import cosine
from .extensions import mean_vector

Container = Union[Doc, Span, Token]


def vector(obj: Container) -> np.ndarray:
    """The mixed ELMo vector, float32 ``(dim,)``."""
    value = mean_vector(obj)
    if value is None:
        raise ValueError(f"this {type(obj).__name__} has no ELMo vectors: run the 'elmo' component on its Doc first")
    return value


def has_vector(obj: Container) -> bool:
    return mean_vector(obj) is not None


def vector_norm(obj: Container) -> float:
    return float(np.linalg.norm(vector(obj)))


def similarity(obj: Container, other: Any) -> float:
    """Cosine similarity of the ELMo vector of ``obj`` and ``other.vector`` (0.0 if either is zero)."""
    own = vector(obj)
    theirs = np.asarray(getattr(other, "vector", other), dtype=np.float32)
    if theirs.shape != own.shape:
        raise ValueError(
            f"cannot compare an ELMo vector of shape {own.shape} with a {type(other).__name__} vector of "
            f"shape {theirs.shape}: compare objects whose Docs were processed by the same 'elmo' component"
        )
    return cosine(own, theirs)


def set_vector_hooks(doc: Doc) -> None:
    """Make ``.vector``, ``.has_vector``, ``.vector_norm``, ``.similarity`` of the Doc, Spans and Tokens use ELMo.

    ``Span.vector_norm`` is left alone: spaCy returns the hook's input vector for it.
    """
    doc.user_hooks.update(vector=vector, has_vector=has_vector, vector_norm=vector_norm, similarity=similarity)
    doc.user_span_hooks.update(vector=vector, has_vector=has_vector, similarity=similarity)
    doc.user_token_hooks.update(vector=vector, has_vector=has_vector, vector_norm=vector_norm, similarity=similarity)
