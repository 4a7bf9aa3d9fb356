"""Which biLM to load: one small value that every entry point (Python API, CLI, component, embedding, adaptation)
parses, checks and resolves the same way.

A :class:`ModelSpec` is the bundled default model, a released model's name (AllenNLP's, or ELMoForManyLangs'
``many-langs/<code>``), a local model directory of any kind :mod:`spacy_elmo.bilm.model_dir` reads, or an
``options.json`` + weight-file pair (local paths or http(s) URLs). ``model`` and the two files exclude each
other; the files come as a pair.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import torch

from ..bilm.manylangs_format import SHIPPED_CONFIGS, parse_architecture
from ..bilm.model import DEFAULT_MODEL_DIR, OPTIONS_NAME, WEIGHTS_NAME, BiLM, load_local
from ..bilm.model_dir import BILM_TF, bilm_tf_weights, directory_kind, directory_options, load_directory
from ..bilm.options import BiLMOptions
from .download import fetch
from .manylangs_releases import PREFIX, fetch_many_langs, unpacked_model
from .releases import DEFAULT_NAMES, MODELS, is_url, mirror_base, model_named

PathArg = Optional[Union[str, os.PathLike]]


@dataclass(frozen=True)
class ModelSpec:
    """A biLM to load.

    ``model``: ``None`` or ``"default"`` (the bundled model), a released model's name (``"small"``,
    ``"many-langs/zh"``, see ``spacy-elmo models``), a local model directory (``options.json`` +
    ``weights.hdf5`` or NLPL's ``model.hdf5``, or an ELMoForManyLangs directory), or a ``.zip`` of such a
    directory (a path or a URL: unpacked once into the cache).
    ``options_file`` / ``weight_file``: the two files, each a local path or an http(s) URL.
    :raises ValueError: ``model`` together with the files, or only one of the files.
    """

    model: Optional[str] = None
    options_file: Optional[str] = None
    weight_file: Optional[str] = None

    def __post_init__(self) -> None:
        for field_name in ("model", "options_file", "weight_file"):
            value = getattr(self, field_name)
            if isinstance(value, os.PathLike):
                object.__setattr__(self, field_name, os.fspath(value))
            elif value is not None and not isinstance(value, str):
                raise ValueError(f"{field_name} must be a string or null, found {type(value).__name__} {value!r}")
        if self.model is not None and (self.options_file is not None or self.weight_file is not None):
            raise ValueError(
                "give either model (a name or a directory) or options_file + weight_file, not both; found "
                f"model={self.model!r}, options_file={self.options_file!r}, weight_file={self.weight_file!r}"
            )
        if (self.options_file is None) != (self.weight_file is None):
            raise ValueError(
                "give both options_file and weight_file (paths or URLs), or neither for the bundled default model; "
                f"found options_file={self.options_file!r}, weight_file={self.weight_file!r}"
            )

    @classmethod
    def from_args(cls, options_file: PathArg = None, weight_file: PathArg = None) -> ModelSpec:
        """``load_bilm``'s positional arguments: ``options_file`` alone is a model name or a directory,
        unless it names a file or a URL (which then needs ``weight_file``). A model's name or directory with a
        ``weight_file`` fails as ``model`` + files do everywhere ("not both")."""
        if weight_file is None and options_file is not None and _is_model(options_file):
            return cls(model=os.fspath(options_file))
        if options_file is not None and _names_model(options_file):
            return cls(model=os.fspath(options_file), weight_file=_str(weight_file))
        return cls(options_file=_str(options_file), weight_file=_str(weight_file))

    @property
    def is_default(self) -> bool:
        return self.options_file is None and (self.model is None or self.model in DEFAULT_NAMES)

    @property
    def released(self) -> bool:
        """An AllenNLP released model's name (its two files are downloaded into the cache on first use)."""
        model = self.model
        return (
            model is not None
            and not self.is_default
            and not (self.many_langs or _is_path(model) or _is_zip(model) or os.path.isdir(model))
        )

    @property
    def many_langs(self) -> bool:
        """An ELMoForManyLangs released model's name (``many-langs/<code>``: a zip, downloaded and unpacked)."""
        return self.model is not None and self.model.startswith(PREFIX) and not os.path.isdir(self.model)

    def directory(self) -> Optional[Path]:
        """The local model directory of a directory or ``many-langs/<code>`` spec (fetched and unpacked into the
        cache first), else ``None``.

        :raises ValueError: a path that is no directory, a failed download.
        """
        if self.model is None or self.is_default or self.released:
            return None
        if self.many_langs:
            return fetch_many_langs(self.model)
        if _is_zip(self.model):
            return unpacked_model(fetch(self.model) if is_url(self.model) else self.model)
        if not os.path.isdir(self.model):
            raise ValueError(f"model directory not found: {self.model}")
        return Path(self.model)

    def files(self) -> tuple[Path, Path]:
        """The local ``options.json`` and weight file, downloaded into the cache first where needed.

        :raises ValueError: an unknown name, a directory without the two files (naming it; an ELMoForManyLangs
            model has none), a failed download.
        """
        if self.is_default:
            if not (DEFAULT_MODEL_DIR / WEIGHTS_NAME).is_file():
                raise ValueError(
                    f"the bundled default ELMo model is not installed ({DEFAULT_MODEL_DIR}); "
                    "give a model name, a directory or options_file + weight_file"
                )
            return DEFAULT_MODEL_DIR / OPTIONS_NAME, DEFAULT_MODEL_DIR / WEIGHTS_NAME
        directory = self.directory()
        if directory is not None:
            if directory_kind(directory) != BILM_TF:
                raise ValueError(
                    f"{directory}: an ELMoForManyLangs model directory has no {OPTIONS_NAME} + {WEIGHTS_NAME}; "
                    "it can be loaded and embedded with, but not trained or adapted"
                )
            return directory / OPTIONS_NAME, bilm_tf_weights(directory)
        if self.model is not None:
            return download_model(self.model)
        assert self.options_file is not None and self.weight_file is not None  # checked in __post_init__
        return _local(self.options_file), _local(self.weight_file)

    def resolved(self) -> ModelSpec:
        """The same model as local files or a local directory (names and URLs fetched into the cache once):
        what worker processes on this machine are given, so that they never download."""
        directory = self.directory()
        if directory is not None:
            return ModelSpec(model=str(directory.resolve()))
        options_file, weight_file = self.files()
        return ModelSpec(options_file=str(options_file), weight_file=str(weight_file))

    def options(self) -> BiLMOptions:
        """The architecture, from what is known without downloading weights: a released name's entry in
        the releases table (ELMoForManyLangs' models share one architecture), else the model's small options /
        config files."""
        if self.released:
            assert self.model is not None
            return model_named(self.model).options
        if self.many_langs:
            released = SHIPPED_CONFIGS["cnn_50_100_512_4096_sample.json"]
            return parse_architecture(released, "ELMoForManyLangs' released architecture")[0]
        directory = self.directory()
        return directory_options(directory) if directory is not None else BiLMOptions.read(self.files()[0])

    def load(self, device: Union[str, torch.device] = "cpu", **kwargs: Any) -> BiLM:
        """The biLM, in eval mode on ``device``; keyword arguments (``token_cache_size``) go to the loader
        (:func:`spacy_elmo.bilm.model_dir.load_directory` / :func:`spacy_elmo.bilm.model.load_local`)."""
        directory = self.directory()
        if directory is not None:
            return load_directory(directory, device, **kwargs)
        options_file, weight_file = self.files()
        return load_local(options_file, weight_file, device, **kwargs)

    def __str__(self) -> str:
        if self.is_default:
            return "the bundled default model"
        if self.model is not None:
            return f"model {self.model}"
        return f"{self.options_file} + {self.weight_file}"


def download_model(name: str, force: bool = False) -> tuple[Path, Path]:
    """The cached ``options.json`` and weight file of the released model ``name`` (downloaded if needed, or
    again with ``force``)."""
    model = model_named(name)
    base = mirror_base()
    return (
        fetch(base + model.options_path, name=name, force=force),
        fetch(base + model.weights_path, name=name, force=force),
    )


def _names_model(value: Union[str, os.PathLike]) -> bool:
    """Certainly a model, never an options file: a directory, a ``.zip``, or a released or default name."""
    if os.path.isdir(value):
        return True
    return isinstance(value, str) and (
        _is_zip(value) or value in MODELS or value in DEFAULT_NAMES or value.startswith(PREFIX)
    )


def _is_model(value: Union[str, os.PathLike]) -> bool:
    """A model name or a directory rather than a file: a directory, a known name, or a plain string without a
    path separator or ``.json`` ending that names no existing file."""
    if os.path.isdir(value):
        return True
    if not isinstance(value, str):
        return False
    if _is_zip(value):
        return True
    if is_url(value):
        return False
    return (
        value in MODELS
        or value in DEFAULT_NAMES
        or value.startswith(PREFIX)
        or not (_is_path(value) or value.endswith(".json") or os.path.exists(value))
    )


def _is_path(value: str) -> bool:
    return "/" in value or os.sep in value


def _is_zip(value: str) -> bool:
    """A ``.zip`` of a model directory (a local path or a URL)."""
    return value.endswith(".zip")


def _local(file: str) -> Path:
    """A URL's cached copy (fetched if needed), or the local path."""
    return fetch(file) if is_url(file) else Path(file)


def _str(value: PathArg) -> Optional[str]:
    return None if value is None else os.fspath(value)
