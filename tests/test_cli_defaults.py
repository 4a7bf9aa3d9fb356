"""Every default of the command line is its library's: each option with a default is compared with the default of
the library field or parameter of the same name (or is listed as the command line's own, with the reason)."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest
import typer

from spacy_elmo.cli import app
from spacy_elmo.embed import EmbedSettings, embed_dir, embed_file
from spacy_elmo.hub import ModelSpec, download_model
from spacy_elmo.training import TrainConfig, train
from spacy_elmo.training.adapt import adapt, recipe_settings

serve_app = pytest.importorskip("spacy_elmo.serve.app")
ray_serve = pytest.importorskip("spacy_elmo.serve.ray_serve")
serve_limits = pytest.importorskip("spacy_elmo.serve.limits")

#: the library sources of each command's defaults, searched in order
SOURCES: dict[str, tuple[Any, ...]] = {
    "pretrain": (TrainConfig, train),
    "adapt": (adapt, TrainConfig),
    "embed": (EmbedSettings, ModelSpec, embed_file),
    "embed-dir": (EmbedSettings, ModelSpec, embed_dir),
    "serve": (serve_app.create_app, serve_app.run, ray_serve.deployment, ModelSpec, serve_limits.Limits),
    "info": (),
    "download": (download_model,),
    "models": (),
}
#: a command-line name for a library name
RENAMED = {("pretrain", "options"): "options_file", ("adapt", "mix_corpus"): "mix_file"}
#: options whose default is the command line's own
CLI_ONLY = {
    ("adapt", "lr"): "the chosen recipe's rate (checked below)",
    ("adapt", "mix_ratio"): "None: the chosen recipe's, which depends on --mix-corpus (checked below)",
    ("adapt", "max_epochs"): "None: the chosen recipe's, which depends on --mix-corpus (checked below)",
    ("embed-dir", "ray_address"): "None: not on Ray",
    ("serve", "ray_address"): "None: not on Ray",
    ("serve", "tokenizer"): "'whitespace' is the name of the library's default (None)",
    ("info", "options_file"): "None: the bundled model",
    ("info", "weight_file"): "None: the bundled model",
    ("info", "as_json"): "a table unless --json",
}


def _library_defaults(source: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(source):
        return {f.name: f.default for f in dataclasses.fields(source) if f.default is not dataclasses.MISSING}
    parameters = inspect.signature(source).parameters.values()
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


def _commands() -> dict[str, Any]:
    """The click commands typer builds from ``app``, by name."""
    return dict(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def test_every_command_has_its_sources():
    assert set(_commands()) == set(SOURCES)


@pytest.mark.parametrize("command", sorted(SOURCES))
def test_command_line_defaults_are_the_library_defaults(command: str):
    checked = 0
    for param in _commands()[command].params:
        if param.required or (command, param.name) in CLI_ONLY:
            continue
        name = RENAMED.get((command, param.name), param.name)
        found = [d[name] for d in map(_library_defaults, SOURCES[command]) if name in d]
        assert found, f"{command} --{param.name}: no library default of that name; add its source or CLI_ONLY"
        assert param.default == found[0], (
            f"{command} --{param.name}: {param.default!r} here, {found[0]!r} in the library"
        )
        checked += 1
    assert checked or not SOURCES[command]


def test_adapt_defaults_are_the_recipe():
    recipe = recipe_settings({})
    params = {p.name: p for p in _commands()["adapt"].params}
    assert params["lr"].default == recipe["lr"]
    assert params["mix_ratio"].default is None and params["max_epochs"].default is None
    assert recipe_settings({"mix_file": "general.txt"})["mix_ratio"] > 0 == recipe["mix_ratio"]


def test_a_disagreeing_default_fails_the_check(monkeypatch):
    monkeypatch.setattr(TrainConfig.__dataclass_fields__["seed"], "default", 1)
    with pytest.raises(AssertionError, match=r"pretrain --seed: 0 here, 1 in the library"):
        test_command_line_defaults_are_the_library_defaults("pretrain")


def test_unused_names_are_not_listed():
    commands = _commands()
    for command, name in [*CLI_ONLY, *RENAMED]:
        assert name in {p.name for p in commands[command].params}, (command, name)
