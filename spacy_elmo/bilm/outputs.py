"""What callers take from the biLM's layers, shared by embedding, serving and the AllenNLP API: the output
formats, the layer selection, and the batch size with its check."""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from ..util.checks import check_choice, is_int

#: ``"all"``: every layer ``(n_layers, n_tokens, dim)``; ``"top"``: the top layer, ``"average"``: the mean of the
#: layers, each ``(n_tokens, dim)``
OutputFormat = Literal["all", "top", "average"]
OUTPUT_FORMATS: tuple[str, ...] = get_args(OutputFormat)
#: sentences per biLM forward (``BiLM.embed_sentences`` sorts by length first, so each forward pads only to the
#: longest of similar lengths)
DEFAULT_BATCH_SIZE = 64


def check_batch_size(batch_size: int) -> None:
    """:raises ValueError: unless ``batch_size`` is an int >= 1."""
    if not is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, found {batch_size!r}")


def check_output_format(output_format: str) -> None:
    """:raises ValueError: unless ``output_format`` is one of :data:`OUTPUT_FORMATS`."""
    check_choice("output_format", output_format, OUTPUT_FORMATS)


def select_layers(layers: np.ndarray, output_format: str) -> np.ndarray:
    """float32 ``(n_layers, n_tokens, dim)`` for ``"all"``; ``(n_tokens, dim)``: top layer or layer mean."""
    if output_format == "top":
        layers = layers[-1]
    elif output_format == "average":
        layers = layers.mean(axis=0)
    return layers.astype(np.float32, copy=False)
