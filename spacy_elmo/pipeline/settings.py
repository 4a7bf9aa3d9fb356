"""Validation of the ``elmo`` component's settings and the mix weights they define."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np

from ..bilm.mix import Mix, mix_weights
from ..bilm.model import DEFAULT_MODEL_DIR, OPTIONS_NAME
from ..bilm.options import BiLMOptions
from ..bilm.precision import check_precision
from ..bilm.token_cache import check_token_cache_size
from ..hub.releases import model_named
from ..hub.spec import ModelSpec
from ..util.checks import is_int, is_number

MIX_NAMES = ("average", "top")


def check_settings(
    mix: Mix,
    max_length: int,
    batch_size: int,
    precision: str,
    token_cache_size: int,
) -> None:
    """Raise ``ValueError`` for settings that are wrong whatever the model."""
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
    check_precision(precision, "elmo: precision")
    check_token_cache_size(token_cache_size, "elmo: token_cache_size")


def check_sequence_cache_mb(sequence_cache_mb: float) -> None:
    """Raise ``ValueError`` unless ``sequence_cache_mb`` is a finite number >= 0 (0: no cache)."""
    if not is_number(sequence_cache_mb) or not math.isfinite(sequence_cache_mb) or sequence_cache_mb < 0:
        raise ValueError(
            "elmo: sequence_cache_mb must be a number of megabytes >= 0 (0 turns the cache off), "
            f"found {sequence_cache_mb!r}"
        )


def component_mix_weights(mix: Mix, n_layers: int, source: str = "the biLM") -> np.ndarray:
    """Per-layer weights ``(n_layers,)`` float32 of the component's ``mix`` (see ``bilm.mix.mix_weights``)."""
    return mix_weights(mix, n_layers, source, setting="elmo: mix")


def model_spec(model: Optional[str], options_file: Optional[str], weight_file: Optional[str], mix: Mix) -> ModelSpec:
    """The component's model: ``model`` (a released model's name, a model directory, or ``null`` / ``"default"``
    for the bundled model) or ``options_file`` + ``weight_file``. A name's layer count is checked against ``mix``."""
    try:
        spec = ModelSpec(model, options_file, weight_file)
        if spec.released:
            assert spec.model is not None  # a released model has a name
            released = model_named(spec.model)
            component_mix_weights(mix, released.options.n_output_layers, source=f"the released model {spec.model!r}")
    except ValueError as error:
        raise ValueError(error if str(error).startswith("elmo: ") else f"elmo: {error}") from None
    return spec


def check_mix_against_files(mix: Mix, spec: ModelSpec) -> None:
    """Check ``mix`` against the layer count in a local ``options.json`` when that file is readable now.

    Only the small JSON file is read; an absent file is not an error here (the model
    loads lazily, and a saved pipeline brings its own copy).
    """
    if spec.is_default:
        path = DEFAULT_MODEL_DIR / OPTIONS_NAME
    elif spec.model is not None:
        path = Path(spec.model) / OPTIONS_NAME
    else:
        path = Path(str(spec.options_file))
    if not path.is_file():
        return
    try:
        options = BiLMOptions.read(path)
    except (ValueError, OSError):
        return  # reported with the path when the model loads
    component_mix_weights(mix, options.n_output_layers, source=f"the biLM of {path}")
