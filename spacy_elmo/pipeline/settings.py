"""Validation of the ``elmo`` component's settings and the mix weights they define."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np

from ..bilm.kernels import PRECISIONS
from ..bilm.mix import Mix, mix_weights
from ..bilm.model import DEFAULT_MODEL_DIR, OPTIONS_NAME
from ..bilm.options import BiLMOptions, is_int, is_number
from ..bilm.token_cache import check_token_cache_size
from ..hub.registry import model_named

MIX_NAMES = ("average", "top")


def check_settings(
    options_file: Optional[str],
    weight_file: Optional[str],
    mix: Mix,
    max_length: int,
    batch_size: int,
    precision: str,
    token_cache_size: int,
) -> None:
    """Raise ``ValueError`` for settings that are wrong whatever the model."""
    if (options_file is None) != (weight_file is None):
        raise ValueError(
            "elmo: give both options_file and weight_file, or neither (null) for the bundled default model; "
            f"found options_file={options_file!r}, weight_file={weight_file!r}"
        )
    for name, path in (("options_file", options_file), ("weight_file", weight_file)):
        if path is not None and not isinstance(path, str):
            raise ValueError(f"elmo: {name} must be a path string or null, found {type(path).__name__} {path!r}")
    if isinstance(mix, list):
        if not mix or not all(is_number(w) and math.isfinite(w) for w in mix):
            raise ValueError(f"elmo: mix weights must be a non-empty list of finite numbers, found {mix!r}")
    elif mix not in MIX_NAMES and not is_int(mix):
        raise ValueError(
            f"elmo: mix must be 'average', 'top', a layer index or a list of per-layer weights, found {mix!r}"
        )
    for name, value in (("max_length", max_length), ("batch_size", batch_size)):
        if not is_int(value) or value < 1:
            raise ValueError(f"elmo: {name} must be an integer >= 1, found {value!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"elmo: precision must be one of {PRECISIONS}, found {precision!r}")
    check_token_cache_size(token_cache_size, "elmo: token_cache_size")


def check_sequence_cache_mb(sequence_cache_mb: float) -> None:
    """Raise ``ValueError`` unless ``sequence_cache_mb`` is a finite number >= 0 (0: no cache)."""
    if not is_number(sequence_cache_mb) or not math.isfinite(sequence_cache_mb) or sequence_cache_mb < 0:
        raise ValueError(
            "elmo: sequence_cache_mb must be a number of megabytes >= 0 (0 turns the cache off), "
            f"found {sequence_cache_mb!r}"
        )


def layer_weights(mix: Mix, n_layers: int, source: str = "the biLM") -> np.ndarray:
    """Per-layer weights ``(n_layers,)`` float32 of the component's ``mix`` (see ``bilm.mix.mix_weights``)."""
    return mix_weights(mix, n_layers, source, setting="elmo: mix")


def check_model(model: Optional[str], options_file: Optional[str], weight_file: Optional[str], mix: Mix) -> None:
    """``model``: a released model's name, or ``null`` / ``"default"`` for the bundled model; it
    excludes ``options_file`` / ``weight_file``. A name's layer count is checked against ``mix``."""
    if model is None:
        return
    if not isinstance(model, str):
        raise ValueError(f"elmo: model must be a model name or null, found {type(model).__name__} {model!r}")
    if options_file is not None or weight_file is not None:
        raise ValueError(
            f"elmo: give either model or options_file / weight_file, not both; found model={model!r}, "
            f"options_file={options_file!r}, weight_file={weight_file!r}"
        )
    if model != "default":
        try:
            released = model_named(model)
        except ValueError as error:
            raise ValueError(f"elmo: {error}") from None
        layer_weights(mix, released.options.n_output_layers, source=f"the released model {model!r}")


def check_mix_against_files(mix: Mix, options_file: Optional[str]) -> None:
    """Check ``mix`` against the layer count in ``options.json`` when that file is readable now.

    Only the small JSON file is read; an absent file is not an error here (the model
    loads lazily, and a saved pipeline brings its own copy).
    """
    path = Path(options_file) if options_file is not None else DEFAULT_MODEL_DIR / OPTIONS_NAME
    if not path.is_file():
        return
    try:
        options = BiLMOptions.read(path)
    except (ValueError, OSError):
        return  # reported with the path when the model loads
    layer_weights(mix, options.n_output_layers, source=f"the biLM of {path}")
