"""The public ``load_bilm``: a model by name, directory, URL or path, through :class:`~.spec.ModelSpec`."""

from __future__ import annotations

from typing import Any, Union

import torch

from ..bilm.model import BiLM
from .spec import ModelSpec, PathArg


def load_bilm(
    options_file: PathArg = None, weight_file: PathArg = None, device: Union[str, torch.device] = "cpu", **kwargs: Any
) -> BiLM:
    """Load a biLM: ``load_bilm()`` the bundled default, ``load_bilm("small")`` a released model by name,
    ``load_bilm(directory)`` a model directory, ``load_bilm(options, weights)`` from paths or http(s) URLs
    (downloaded once into the cache).

    Other keyword arguments (``token_cache_size``) go to :func:`spacy_elmo.bilm.model.load_local`.
    """
    return ModelSpec.from_args(options_file, weight_file).load(device, **kwargs)
