"""Request bodies of ``POST /v1/embed`` and ``POST /v1/similarity``: parsing and validation.

Every problem raises :class:`RequestError` with the HTTP status and a one-line message naming the field.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Callable, List, Union

import numpy as np

from ..bilm.mix import mix_weights
from ..bilm.outputs import OUTPUT_FORMATS
from ..util.checks import is_int, is_number

Tokenizer = Callable[[str], List[str]]
#: ``"all"``, ``"top"``, ``"average"``, or per-layer weights ``(n_layers,)``
Output = Union[str, np.ndarray]
#: characters a text may hold per token of --max-request-tokens (ELMo reads 50 characters of a token at most; the
#: rest is room for spaces): a longer text is refused before it is tokenized
CHARACTERS_PER_TOKEN = 64


class RequestError(ValueError):
    """A bad request: ``status`` (400, 413) and a message naming the field."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class EmbedRequest:
    sentences: List[List[str]]
    output: Output

    @property
    def n_tokens(self) -> int:
        return sum(len(s) for s in self.sentences)


@dataclass(frozen=True)
class SimilarityRequest:
    first: List[str]
    second: List[str]
    weights: np.ndarray  # (n_layers,)


def whitespace_tokenizer(text: str) -> List[str]:
    return text.split()


def parse_embed(
    body: bytes, n_layers: int, max_request_tokens: int, tokenizer: Tokenizer = whitespace_tokenizer
) -> EmbedRequest:
    """``{"sentences": [[token, ...], ...]}`` or ``{"texts": [text, ...]}``, optional ``"output"``."""
    data = _object(body, allowed=("sentences", "texts", "output"))
    sentences = _sentences(data, tokenizer, max_request_tokens)
    return EmbedRequest(sentences, _output(data.get("output", "all"), n_layers))


def parse_similarity(
    body: bytes, n_layers: int, max_request_tokens: int, tokenizer: Tokenizer = whitespace_tokenizer
) -> SimilarityRequest:
    """``{"texts": [a, b]}`` or ``{"sentences": [[tokens of a], [tokens of b]]}``, optional ``"mix"``
    (``"average"`` (default), ``"top"``, a layer index or per-layer weights)."""
    data = _object(body, allowed=("sentences", "texts", "mix"))
    sentences = _sentences(data, tokenizer, max_request_tokens, exactly=2)
    mix = data.get("mix", "average")
    if isinstance(mix, bool) or not (mix in ("average", "top") or is_int(mix) or isinstance(mix, list)):
        raise RequestError(
            400, f"mix must be 'average', 'top', a layer index or a list of per-layer weights, found {_show(mix)}"
        )
    if isinstance(mix, list):
        _check_weights(mix, "mix")
    try:
        weights = mix_weights(mix, n_layers, source="the model", setting="mix")
    except ValueError as error:
        raise RequestError(400, str(error)) from None
    return SimilarityRequest(sentences[0], sentences[1], weights)


def _object(body: bytes, allowed: tuple[str, ...]) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RequestError(400, f"the body is not valid JSON: {error}") from None
    except RecursionError:
        raise RequestError(400, "the body is nested too deeply to be a request") from None
    if not isinstance(data, dict):
        raise RequestError(400, f"the body must be a JSON object, found {_kind(data)}")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise RequestError(400, f"unknown field {unknown[0]!r}; expected {', '.join(map(repr, allowed))}")
    return data


def _sentences(
    data: dict[str, Any], tokenizer: Tokenizer, max_request_tokens: int, exactly: int | None = None
) -> List[List[str]]:
    if ("sentences" in data) == ("texts" in data):
        raise RequestError(400, "give either 'sentences' (token lists) or 'texts' (strings), exactly one of them")
    field = "sentences" if "sentences" in data else "texts"
    items = data[field]
    if not isinstance(items, list):
        raise RequestError(400, f"{field} must be a list, found {_kind(items)}")
    if exactly is not None and len(items) != exactly:
        raise RequestError(400, f"{field} must hold exactly {exactly} items, found {len(items)}")
    if not items:
        raise RequestError(400, f"{field} is empty: give at least one")
    if len(items) > max_request_tokens:  # each item has at least one token
        raise RequestError(413, f"{field} has {len(items)} items, more than the limit of {max_request_tokens} tokens")
    sentences = [_tokens(field, i, item, tokenizer, max_request_tokens) for i, item in enumerate(items)]
    n_tokens = sum(len(s) for s in sentences)
    if n_tokens > max_request_tokens:
        raise RequestError(413, f"the request has {n_tokens} tokens, more than the limit of {max_request_tokens}")
    return sentences


def _tokens(field: str, i: int, item: object, tokenizer: Tokenizer, max_request_tokens: int) -> List[str]:
    if field == "texts":
        if not isinstance(item, str):
            raise RequestError(400, f"texts[{i}] must be a string, found {_kind(item)}")
        most = max_request_tokens * CHARACTERS_PER_TOKEN
        if len(item) > most:
            raise RequestError(
                413,
                f"texts[{i}] has {len(item):,} characters, more than the limit of {most:,} "
                f"({CHARACTERS_PER_TOKEN} per token of the {max_request_tokens} a request may hold)",
            )
        _check_unicode(item, f"texts[{i}]")
        tokens = tokenizer(item)
        if not tokens:
            raise RequestError(400, f"texts[{i}] has no tokens")
        return tokens
    if not isinstance(item, list):
        hint = ": split it into tokens, or send it in 'texts'" if isinstance(item, str) else ""
        raise RequestError(400, f"sentences[{i}] must be a list of token strings, found {_kind(item)}{hint}")
    if not item:
        raise RequestError(400, f"sentences[{i}] is empty: give at least one token")
    for j, token in enumerate(item):
        if not isinstance(token, str):
            raise RequestError(400, f"sentences[{i}][{j}] must be a string token, found {_kind(token)}")
        if not token or token.isspace():
            raise RequestError(400, f"sentences[{i}][{j}] is an empty or whitespace-only token")
        _check_unicode(token, f"sentences[{i}][{j}]")
    return item


def _check_unicode(text: str, field: str) -> None:
    """Refuse a string that UTF-8 cannot encode: a lone surrogate (JSON's ``"\\ud800"`` escape decodes to one)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        code = ord(text[error.start])
        raise RequestError(
            400, f"{field} holds a lone surrogate U+{code:04X} at character {error.start}, which is not text"
        ) from None


def _output(value: object, n_layers: int) -> Output:
    if isinstance(value, str):
        if value not in OUTPUT_FORMATS:
            raise RequestError(
                400, f"output must be one of {OUTPUT_FORMATS} or a list of per-layer weights, found {value!r}"
            )
        return value
    if not isinstance(value, list):
        raise RequestError(
            400, f"output must be one of {OUTPUT_FORMATS} or a list of per-layer weights, found {_kind(value)}"
        )
    _check_weights(value, "output")
    try:
        return mix_weights(value, n_layers, source="the model", setting="output")
    except ValueError as error:
        raise RequestError(400, str(error)) from None


def _check_weights(weights: list, field: str) -> None:
    for k, w in enumerate(weights):
        if not is_number(w) or not math.isfinite(w):
            raise RequestError(400, f"{field}[{k}] must be a finite number, found {_show(w)}")


def _kind(value: object) -> str:
    """The JSON type name of a decoded value."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _show(value: object) -> str:
    return f"{_kind(value)} {json.dumps(value)[:40]}"
