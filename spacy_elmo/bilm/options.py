"""The biLM hyper-parameters, read from and written to bilm-tf's ``options.json``."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..util.checks import is_int, is_number

ACTIVATIONS = ("relu", "tanh")
#: upper bounds of the sizes an options file may declare, far above any published ELMo (the largest has 4096 LSTM
#: cells, projection 512, 2048 filters): a file declaring more is refused before anything is allocated
MAX_SIZES = {
    "lstm.dim": 65_536,
    "lstm.projection_dim": 16_384,
    "lstm.n_layers": 32,
    "char_cnn.n_highway": 32,
    "char_cnn.embedding.dim": 4_096,
    "char_cnn.max_characters_per_token": 1_024,
    "char_cnn.filters num": 65_536,
}
#: parameters at most (4 GB of float32; the largest released ELMo has 93.6M)
MAX_PARAMETERS = 1_000_000_000
# Keys bilm-tf writes next to "lstm"/"char_cnn" when training; they do not change the network.
TRAINING_KEYS = {
    "bidirectional",
    "dropout",
    "n_epochs",
    "batch_size",
    "n_train_tokens",
    "unroll_steps",
    "n_negative_samples_batch",
    "all_clip_norm_val",
    "n_tokens_vocab",
    "share_embedding_softmax",
}


@dataclass(frozen=True)
class BiLMOptions:
    """Architecture of an ELMo biLM: char CNN + highway + projection, then a stacked biLSTM."""

    filters: tuple[tuple[int, int], ...]
    n_highway: int
    char_dim: int
    projection_dim: int
    lstm_dim: int
    n_layers: int
    activation: str = "relu"
    max_chars: int = 50
    cell_clip: float | None = 3.0
    proj_clip: float | None = 3.0
    use_skip_connections: bool = True

    @property
    def n_filters(self) -> int:
        return sum(num for _, num in self.filters)

    @property
    def n_parameters(self) -> int:
        """Parameters of the biLM this describes (without a softmax), known before anything is allocated."""
        f, p, c = self.n_filters, self.projection_dim, self.lstm_dim
        total = 262 * self.char_dim + sum(w * self.char_dim * n + n for w, n in self.filters)
        total += self.n_highway * 2 * (f * f + f) + f * p + p
        return total + 2 * self.n_layers * ((p + p) * 4 * c + 4 * c + c * p)

    @property
    def output_dim(self) -> int:
        """Width of every output layer: forward + backward halves."""
        return 2 * self.projection_dim

    @property
    def n_output_layers(self) -> int:
        return self.n_layers + 1

    def to_json(self) -> dict[str, Any]:
        return {
            "lstm": {
                "use_skip_connections": self.use_skip_connections,
                "projection_dim": self.projection_dim,
                "cell_clip": self.cell_clip or 0,
                "proj_clip": self.proj_clip or 0,
                "dim": self.lstm_dim,
                "n_layers": self.n_layers,
            },
            "char_cnn": {
                "activation": self.activation,
                "filters": [list(f) for f in self.filters],
                "n_highway": self.n_highway,
                "embedding": {"dim": self.char_dim},
                "n_characters": 262,
                "max_characters_per_token": self.max_chars,
            },
        }

    @classmethod
    def from_json(cls, data: Any, source: str = "options") -> "BiLMOptions":
        """Validate a parsed ``options.json``; every problem is a ``ValueError`` naming ``source``."""

        def fail(msg: str) -> ValueError:
            return ValueError(f"{source}: {msg}")

        if not isinstance(data, dict):
            raise fail(f"expected a JSON object, found {type(data).__name__}")
        unknown = set(data) - {"lstm", "char_cnn"} - TRAINING_KEYS
        if unknown:
            raise fail(f"unsupported option(s) {sorted(unknown)}; expected 'lstm' and 'char_cnn'")
        if data.get("bidirectional") is False:
            raise fail("unsupported option bidirectional=false: ELMo biLMs are bidirectional")
        lstm = _section(data, "lstm", fail)
        cnn = _section(data, "char_cnn", fail)
        _no_unknown(
            lstm, "lstm", {"use_skip_connections", "projection_dim", "cell_clip", "proj_clip", "dim", "n_layers"}, fail
        )
        _no_unknown(
            cnn,
            "char_cnn",
            {"activation", "filters", "n_highway", "embedding", "n_characters", "max_characters_per_token"},
            fail,
        )

        filters = cnn.get("filters")
        if (
            not isinstance(filters, list)
            or not filters
            or not all(isinstance(f, list) and len(f) == 2 and all(is_int(x) and x > 0 for x in f) for f in filters)
        ):
            raise fail(f"char_cnn.filters must be a non-empty list of [width, num] positive ints, found {filters!r}")
        for width, num in filters:
            if num > MAX_SIZES["char_cnn.filters num"]:
                raise fail(
                    f"char_cnn.filters has [{width}, {num}]: more than {MAX_SIZES['char_cnn.filters num']} filters"
                )
        activation = cnn.get("activation", "relu")
        if activation not in ACTIVATIONS:
            raise fail(f"unsupported char_cnn.activation {activation!r}; expected one of {ACTIVATIONS}")
        n_characters = cnn.get("n_characters", 262)
        if n_characters not in (261, 262):
            raise fail(
                f"unsupported char_cnn.n_characters {n_characters!r}; expected 262 (or 261 from bilm-tf training)"
            )
        embedding = cnn.get("embedding")
        if not isinstance(embedding, dict) or set(embedding) != {"dim"}:
            raise fail(f"char_cnn.embedding must be {{'dim': int}}, found {embedding!r}")
        max_chars = _positive_int(cnn, "max_characters_per_token", "char_cnn", fail, default=50)
        if max_chars < 3:
            raise fail(f"char_cnn.max_characters_per_token must be >= 3, found {max_chars}")
        if max(w for w, _ in filters) > max_chars:
            raise fail(f"char_cnn.filters has a width wider than max_characters_per_token={max_chars}")
        skip = lstm.get("use_skip_connections", True)
        if not isinstance(skip, bool):
            raise fail(f"lstm.use_skip_connections must be true or false, found {skip!r}")
        options = cls(
            filters=tuple((int(w), int(n)) for w, n in filters),
            n_highway=_positive_int(cnn, "n_highway", "char_cnn", fail, minimum=0),
            char_dim=_positive_int(embedding, "dim", "char_cnn.embedding", fail),
            projection_dim=_positive_int(lstm, "projection_dim", "lstm", fail),
            lstm_dim=_positive_int(lstm, "dim", "lstm", fail),
            n_layers=_positive_int(lstm, "n_layers", "lstm", fail),
            activation=activation,
            max_chars=max_chars,
            cell_clip=_clip(lstm, "cell_clip", fail),
            proj_clip=_clip(lstm, "proj_clip", fail),
            use_skip_connections=skip,
        )
        if options.n_parameters > MAX_PARAMETERS:
            raise fail(
                f"describes a biLM of {options.n_parameters:,} parameters, more than the {MAX_PARAMETERS:,} taken "
                "(the largest released ELMo has 93.6M)"
            )
        return options

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> "BiLMOptions":
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"ELMo options file not found: {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: not a valid JSON options file ({err})") from None
        except RecursionError:
            raise ValueError(f"{path}: not an options file: its JSON is nested too deeply") from None
        return cls.from_json(data, source=str(path))


def _section(data: dict, key: str, fail) -> dict:
    section = data.get(key)
    if not isinstance(section, dict):
        raise fail(f"missing or invalid '{key}' section (expected an object, found {section!r})")
    return section


def _no_unknown(section: dict, name: str, known: set[str], fail) -> None:
    unknown = set(section) - known
    if unknown:
        raise fail(f"unsupported option(s) {sorted(unknown)} in '{name}'; known: {sorted(known)}")


def _positive_int(section: dict, key: str, name: str, fail, minimum: int = 1, default: int | None = None) -> int:
    value = section.get(key, default)
    most = MAX_SIZES.get(f"{name}.{key}")
    if not is_int(value) or value < minimum or (most is not None and value > most):
        bound = f"in [{minimum}, {most:,}]" if most is not None else f">= {minimum}"
        raise fail(f"{name}.{key} must be an integer {bound}, found {value!r}")
    return value


def _clip(section: dict, key: str, fail) -> float | None:
    value = section.get(key)
    if value is None or value == 0:
        return None
    if not is_number(value) or not 0 <= value < math.inf:  # nan and inf too
        raise fail(f"lstm.{key} must be a finite non-negative number or null, found {value!r}")
    return float(value)
