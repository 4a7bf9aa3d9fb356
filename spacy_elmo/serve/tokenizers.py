"""Tokenizers for the ``"texts"`` of a request: whitespace (default) or a spaCy tokenizer."""

from __future__ import annotations

from typing import List, Optional

from .schema import Tokenizer, whitespace_tokenizer


def make_tokenizer(name: Optional[str]) -> Tokenizer:
    """``None`` / ``"whitespace"``: split on whitespace; otherwise a spaCy language code (``"en"``: the
    tokenizer of ``spacy.blank("en")``) or an installed pipeline's name (its tokenizer only)."""
    if name is None or name == "whitespace":
        return whitespace_tokenizer
    import spacy

    try:
        nlp = spacy.blank(name) if len(name) <= 3 else spacy.load(name, exclude=["*"])
    except (ImportError, OSError) as error:
        raise ValueError(
            f"tokenizer {name!r} is neither 'whitespace', a spaCy language code nor a pipeline: {error}"
        ) from None

    def tokenize(text: str) -> List[str]:
        return [token.text for token in nlp.make_doc(text) if not token.is_space]

    return tokenize
