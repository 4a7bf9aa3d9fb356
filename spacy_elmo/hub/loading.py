"""Model files by name, URL or path -> local paths; the public ``load_bilm`` on top of the bilm loader."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Union

import torch

from ..bilm.directory import load_directory
from ..bilm.model import BiLM
from ..bilm.model import load_bilm as load_local_bilm
from .download import fetch
from .registry import DEFAULT_NAMES, MODELS, is_url, mirror_base, model_named

FileArg = Optional[Union[str, os.PathLike]]


def download_model(name: str) -> tuple[Path, Path]:
    """The cached ``options.json`` and weight file of the released model ``name`` (downloaded if needed)."""
    model = model_named(name)
    base = mirror_base()
    return fetch(base + model.options_path, name=name), fetch(base + model.weights_path, name=name)


def resolve_files(options_file: FileArg, weight_file: FileArg) -> tuple[FileArg, FileArg]:
    """Local paths for ``load_bilm``'s arguments.

    ``options_file`` alone is a model name (``"default"``: the bundled model, giving ``None, None``)
    unless it looks like a path (then the bilm loader asks for both files);
    a URL is fetched through the cache; anything else is returned as it is.
    """
    if weight_file is None and _is_name(options_file):
        name = str(options_file)
        return (None, None) if name in DEFAULT_NAMES else download_model(name)
    return _local(options_file), _local(weight_file)


def _local(file: FileArg) -> FileArg:
    """A URL's cached copy (fetched if needed); anything else as it is."""
    return fetch(file) if is_url(file) else file


def load_bilm(
    options_file: FileArg = None, weight_file: FileArg = None, device: Union[str, torch.device] = "cpu", **kwargs: Any
) -> BiLM:
    """Load a biLM: ``load_bilm()`` the bundled default, ``load_bilm("small")`` a released model by name,
    ``load_bilm(options, weights)`` from paths or http(s) URLs (downloaded once into the cache),
    ``load_bilm(directory)`` from a local model directory of any kind (see :mod:`spacy_elmo.bilm.directory`).

    Other keyword arguments go to :func:`spacy_elmo.bilm.model.load_bilm`.
    """
    if weight_file is None and options_file is not None and os.path.isdir(options_file):
        return load_directory(options_file, device, **kwargs)
    options_file, weight_file = resolve_files(options_file, weight_file)
    return load_local_bilm(options_file, weight_file, device, **kwargs)


def _is_name(value: FileArg) -> bool:
    """A model name rather than a file: a plain string without a path separator or ``.json`` ending."""
    if not isinstance(value, str) or is_url(value):
        return False
    return (
        value in MODELS
        or value in DEFAULT_NAMES
        or not ("/" in value or os.sep in value or value.endswith(".json") or os.path.exists(value))
    )
