"""Helpers shared by the evaluation scripts (similarity.py, word_sense.py)."""

from __future__ import annotations

from typing import Optional

import numpy
import spacy
from spacy.language import Language


def optional_path(value: str) -> Optional[str]:
    """``"null"`` / ``"none"`` / empty -> None (the bundled model), else the path."""
    return None if value.lower() in ("", "null", "none") else value


def cosine(a: numpy.ndarray, b: numpy.ndarray) -> float:
    """Cosine of two ``(dim,)`` vectors; 0.0 when either is all zeros."""
    norm = float(numpy.linalg.norm(a) * numpy.linalg.norm(b))
    return float(numpy.dot(a, b) / norm) if norm > 0 else 0.0


def elmo_pipeline(options_file: Optional[str], weight_file: Optional[str]) -> Language:
    """A blank English pipeline with an ``elmo`` component storing all layers, vector hooks on."""
    nlp = spacy.blank("en")
    config = {
        "options_file": options_file,
        "weight_file": weight_file,
        "mix": "average",
        "store_layers": True,
        "set_vector_hooks": True,
    }
    nlp.add_pipe("elmo", config=config)
    nlp.initialize()
    return nlp
