"""Load a biLM from a local model directory of any supported kind, recognised by its files.

- AllenNLP / bilm-tf: ``options.json`` + ``weights.hdf5`` (the NLPL repository names the
  weights ``model.hdf5``), ``vocab.txt`` optional;
- ELMoForManyLangs: ``config.json`` + ``char.dic`` (+ ``word.dic``) + ``token_embedder.pkl`` + ``encoder.pkl``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .manylangs_format import (
    CONFIG_NAME,
    MANYLANGS_FILES,
    load_manylangs,
    parse_architecture,
    read_architecture,
    save_manylangs,
)
from .model import MODEL_FILES, OPTIONS_NAME, WEIGHTS_NAME, BiLM, load_local, resolve_device
from .options import BiLMOptions
from .token_cache import DEFAULT_TOKEN_CACHE_SIZE, check_token_cache_size
from .token_ids import VocabTokenIds

NLPL_WEIGHTS_NAME = "model.hdf5"
BILM_TF, MANYLANGS = "bilm-tf", "elmoformanylangs"
DIRECTORY_FILES = (*MODEL_FILES, NLPL_WEIGHTS_NAME, *MANYLANGS_FILES)  # every file a model directory may hold


def directory_kind(directory: str | os.PathLike[str]) -> str:
    """``"bilm-tf"`` (options.json) or ``"elmoformanylangs"`` (config.json); a ``ValueError`` otherwise."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"{directory}: not a model directory (not found or not a directory)")
    if (directory / CONFIG_NAME).is_file():
        return MANYLANGS
    if (directory / OPTIONS_NAME).is_file():
        return BILM_TF
    raise ValueError(
        f"{directory}: not a model directory: expected {OPTIONS_NAME} + {WEIGHTS_NAME} or {NLPL_WEIGHTS_NAME} "
        f"(AllenNLP / bilm-tf) or {CONFIG_NAME} + char.dic + token_embedder.pkl + encoder.pkl (ELMoForManyLangs)"
    )


def bilm_tf_weights(directory: Path) -> Path:
    """The weight file of a bilm-tf directory: ``weights.hdf5``, else NLPL's ``model.hdf5``."""
    for name in (WEIGHTS_NAME, NLPL_WEIGHTS_NAME):
        if (directory / name).is_file():
            return directory / name
    raise ValueError(f"{directory / WEIGHTS_NAME}: not found (nor {NLPL_WEIGHTS_NAME}) beside {OPTIONS_NAME}")


def directory_options(directory: str | os.PathLike[str]) -> BiLMOptions:
    """The architecture of a model directory of either kind, read from its small files (no weights)."""
    directory = Path(directory)
    if directory_kind(directory) == BILM_TF:
        return BiLMOptions.read(directory / OPTIONS_NAME)
    architecture, source = read_architecture(directory)
    return parse_architecture(architecture, source)[0]


def load_directory(
    directory: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    token_cache_size: int = DEFAULT_TOKEN_CACHE_SIZE,
) -> BiLM:
    """The biLM of a local model directory of either kind, on ``device`` in eval mode.

    A bad directory is a one-line ``ValueError`` naming the file at fault.
    """
    check_token_cache_size(token_cache_size)
    directory = Path(directory)
    if directory_kind(directory) == BILM_TF:
        return load_local(directory / OPTIONS_NAME, bilm_tf_weights(directory), device, token_cache_size)
    resolved = resolve_device(device)
    return load_manylangs(directory, token_cache_size=token_cache_size).to(resolved).eval()


def save_directory(model: BiLM, directory: str | os.PathLike[str]) -> None:
    """Write ``model`` into ``directory`` in the format it came in: ELMoForManyLangs for a biLM over
    vocabularies, else bilm-tf / AllenNLP (``options.json`` + ``weights.hdf5`` (+ ``vocab.txt``))."""
    if isinstance(model.token_ids, VocabTokenIds):
        save_manylangs(model, directory)
    else:
        model.save(Path(directory))
