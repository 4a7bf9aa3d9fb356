"""The option tables the commands of :mod:`spacy_elmo.cli` share: each option defined once (name, default,
``typer.Option`` arguments), added to a command by :func:`with_options`."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable, Optional

import typer

from .bilm.outputs import DEFAULT_BATCH_SIZE
from .bilm.token_cache import DEFAULT_TOKEN_CACHE_SIZE
from .training.adapt import EPOCHS_WITH_MIX, EPOCHS_WITHOUT_MIX
from .training.config import TrainConfig

#: the model and how it runs (every command that loads one for inference): the model spec's three parts, precision,
#: device, token cache
MODEL_OPTIONS: tuple[tuple[str, Any, dict[str, Any]], ...] = (
    (
        "model",
        None,
        {
            "param_decls": ["--model"],
            "help": "a released model's name (see `spacy-elmo models`), a model directory or a .zip of one",
        },
    ),
    ("options_file", None, {"param_decls": ["--options"], "help": "options.json: path or URL (default: bundled)"}),
    ("weight_file", None, {"param_decls": ["--weights"], "help": "weights.hdf5: path or URL (default: bundled)"}),
    (
        "precision",
        "fp32",
        {"help": "fp32, bf16 or int8 (each runs as the best other one where this CPU lacks its kernels: see `info`)"},
    ),
    ("device", "cpu", {"help": "cpu, cuda or cuda:N"}),
    ("token_cache_size", DEFAULT_TOKEN_CACHE_SIZE, {"help": "word types whose token layer is cached (0: no cache)"}),
)
#: `embed` and `embed-dir`: the model options and the output layout (EmbedSettings fields)
EMBEDDING_OPTIONS = MODEL_OPTIONS + (
    ("output_format", "all", {"help": "all (every layer), top, or average"}),
    ("batch_size", DEFAULT_BATCH_SIZE, {"help": "sentences per biLM batch"}),
    ("forget_sentences", False, {"param_decls": ["--forget-sentences"], "help": "no sentence_to_index map"}),
)


def fields(*names: str, **option: Any) -> tuple[tuple[str, Any, dict[str, Any]], ...]:
    """Options from :class:`TrainConfig` fields: the default and help text are the field's (``option``: more
    ``typer.Option`` arguments, e.g. ``param_decls``)."""
    by_name = {field.name: field for field in dataclasses.fields(TrainConfig)}
    return tuple((name, by_name[name].default, {"help": by_name[name].metadata["help"], **option}) for name in names)


#: settings shared by ``pretrain`` and ``adapt``
TRAINING_OPTIONS = fields(
    *"vocab_size min_count max_length batch_tokens optimizer clip warmup_steps lr_schedule dropout max_steps".split(),
    *"max_minutes max_epochs eval_every checkpoint_every seed precision device".split(),
)
#: ``adapt``'s: the same, but --max-epochs defaults to the chosen recipe's, which depends on --mix-corpus; and the
#: head warm-up and the ways to keep what the trained biLM knows
ADAPT_OPTIONS = tuple(
    (
        name,
        None,
        {
            "help": "passes over the corpus, not counting a head warm-up (default: "
            f"{EPOCHS_WITH_MIX} with --mix-corpus, else {EPOCHS_WITHOUT_MIX})",
            "type": Optional[int],
        },
    )
    if name == "max_epochs"
    else (name, default, option)
    for name, default, option in TRAINING_OPTIONS
)
ADAPT_OPTIONS += fields("head_only", param_decls=["--head-only"])
ADAPT_OPTIONS += fields("head_lr", "head_eval_every", "head_min_gain", "head_max_steps", "freeze", "lower_lr_factor")


def with_options(
    table: tuple[tuple[str, Any, dict[str, Any]], ...],
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Add the options of ``table`` (name, default, ``typer.Option`` arguments) to a command, which takes them
    as ``**settings``: one definition for the commands that share them."""

    def add(command: Callable[..., None]) -> Callable[..., None]:
        signature = inspect.signature(command)
        own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        shared = [
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=typer.Option(default, *option.get("param_decls", ()), help=option["help"]),
                annotation=option.get("type", Optional[str] if default is None else type(default)),
            )
            for name, default, option in table
        ]
        # typer reads the parameters from __signature__, which mypy does not know on a plain function
        command.__signature__ = signature.replace(parameters=[*own, *shared])  # type: ignore[attr-defined]
        return command

    return add
