"""The released ELMo biLMs: their names, files (relative to the release base URL) and integrity pins."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from ..bilm.options import BiLMOptions

if TYPE_CHECKING:
    from typing_extensions import TypeGuard

#: where AllenNLP published the biLMs; ``SPACY_ELMO_MIRROR`` replaces it, keeping the relative paths
RELEASE_BASE = "https://s3-us-west-2.amazonaws.com/allennlp/models/elmo/"
#: the same files under their other published address (found in users' AllenNLP code)
RELEASE_BASES = (RELEASE_BASE, "https://allennlp.s3.amazonaws.com/models/elmo/")
#: names that mean the bundled default model
DEFAULT_NAMES = ("default",)


class Pin(NamedTuple):
    """The known size (bytes) and sha256 of a released file."""

    size: int
    sha256: str


#: pinned files, keyed by their path relative to the release base
PINS: dict[str, Pin] = {
    "2x1024_128_2048cnn_1xhighway/elmo_2x1024_128_2048cnn_1xhighway_weights.hdf5": Pin(
        54_402_456, "747ba97abce8a5f446558369e10bb0f7931437a46867476fdd156f5d7f576229"
    ),
    "2x4096_512_2048cnn_2xhighway/elmo_2x4096_512_2048cnn_2xhighway_weights.hdf5": Pin(
        374_434_792, "a6b92b9ccbb13fe489faacd2221c795d4bebe84b75f8aded9d85ea464fa5c994"
    ),
}

CHAR_FILTERS = ((1, 32), (2, 32), (3, 64), (4, 128), (5, 256), (6, 512), (7, 1024))


@dataclass(frozen=True)
class ReleasedModel:
    """A released biLM: its two files and its architecture (known without downloading anything)."""

    name: str
    options_path: str
    weights_path: str
    trained_on: str
    lstm_dim: int
    projection_dim: int
    n_highway: int

    @property
    def options(self) -> BiLMOptions:
        return BiLMOptions(
            filters=CHAR_FILTERS,
            n_highway=self.n_highway,
            char_dim=16,
            projection_dim=self.projection_dim,
            lstm_dim=self.lstm_dim,
            n_layers=2,
        )


def _released(name: str, directory: str, trained_on: str, lstm_dim: int, projection_dim: int, n_highway: int):
    stem = f"{directory}/elmo_{directory}"
    return ReleasedModel(
        name, f"{stem}_options.json", f"{stem}_weights.hdf5", trained_on, lstm_dim, projection_dim, n_highway
    )


BILLION_WORDS = "1 Billion Word Benchmark (~800M tokens of news)"
MODELS: dict[str, ReleasedModel] = {
    model.name: model
    for model in (
        _released("small", "2x1024_128_2048cnn_1xhighway", BILLION_WORDS, 1024, 128, 1),
        _released("medium", "2x2048_256_2048cnn_1xhighway", BILLION_WORDS, 2048, 256, 1),
        _released("original", "2x4096_512_2048cnn_2xhighway", BILLION_WORDS, 4096, 512, 2),
        _released(
            "original-5.5b",
            "2x4096_512_2048cnn_2xhighway_5.5B",
            "5.5B tokens: Wikipedia (1.9B) + WMT 2008-2012 news crawl (3.6B)",
            4096,
            512,
            2,
        ),
        ReleasedModel(
            "pubmed",
            "contributed/pubmed/elmo_2x4096_512_2048cnn_2xhighway_options.json",
            "contributed/pubmed/elmo_2x4096_512_2048cnn_2xhighway_weights_PubMed_only.hdf5",
            "PubMed (biomedical abstracts)",
            4096,
            512,
            2,
        ),
    )
}


def is_url(value: object) -> TypeGuard[str]:
    """A URL (``scheme://...``) rather than a local path or a model name."""
    return isinstance(value, str) and "://" in value


def mirror_base() -> str:
    """The base URL of the released files: ``SPACY_ELMO_MIRROR`` if set, else AllenNLP's."""
    base = os.environ.get("SPACY_ELMO_MIRROR", "").strip() or RELEASE_BASE
    if not is_url(base):
        raise ValueError(f"SPACY_ELMO_MIRROR must be a base URL such as https://host/elmo/, found {base!r}")
    return base if base.endswith("/") else base + "/"


def release_path(url: str) -> str | None:
    """The path relative to the release base of a URL under that base or the mirror (else ``None``)."""
    for base in (mirror_base(), *RELEASE_BASES):
        if url.startswith(base) and len(url) > len(base):
            return url[len(base) :]
    return None


def model_named(name: str) -> ReleasedModel:
    """The released model ``name``; a ``ValueError`` listing the known names otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(
            f"unknown ELMo model name {name!r}; released models: {', '.join(MODELS)} "
            "(or 'default' for the bundled model, or pass options_file and weight_file: paths or URLs)"
        ) from None
