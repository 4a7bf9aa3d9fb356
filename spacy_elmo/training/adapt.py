"""Domain adaptation: continue any biLM we can load on the user's text (Peters et al. 2018, §3.4).

The model's vocabulary is kept (or one is built from the corpus); when the model has no trained softmax
for that vocabulary, the run starts with the head warm-up (see :class:`~.config.TrainConfig`), then
fine-tunes everything at a small learning rate, with the engine of ``pretrain``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from ..bilm.model import HEAD_NAME, OPTIONS_NAME, VOCAB_NAME, WEIGHTS_NAME
from ..hub.spec import ModelSpec
from ..util.checks import check_choice
from .config import TrainConfig
from .loop import train

logger = logging.getLogger(__name__)

#: ``"model"``: the model's vocabulary; ``"corpus"``: one built from the training text
VocabSource = Literal["model", "corpus"]
VOCAB_CHOICES: tuple[str, ...] = get_args(VocabSource)
#: The recipe chosen on WNUT-16 dev F1 (``scripts/adapt_sweep.py``, the pretraining guide), nothing frozen: with
#: general text to mix in, three epochs at a mix ratio of 0.5 (the best of the eight settings); without, one
#: epoch (the best setting without mixing). ``pretrain``'s rate of 1e-3 is for a biLM trained from scratch.
ADAPT_LR = 3e-4
MIX_RATIO = 0.5
EPOCHS_WITH_MIX = 3
EPOCHS_WITHOUT_MIX = 1


def recipe_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` with the recipe's ``lr``, ``mix_ratio`` and ``max_epochs`` where they are absent or None;
    the last two depend on whether a mix corpus (``mix_file``) is given."""
    mixing = bool(settings.get("mix_file"))
    recipe = {
        "lr": ADAPT_LR,
        "mix_ratio": MIX_RATIO if mixing else 0.0,
        "max_epochs": EPOCHS_WITH_MIX if mixing else EPOCHS_WITHOUT_MIX,
    }
    return {**settings, **{name: value for name, value in recipe.items() if settings.get(name) is None}}


@dataclass(frozen=True)
class ModelFiles:
    """A loadable biLM's files: options and weights, and the vocabulary and softmax beside the weights if any."""

    options: Path
    weights: Path
    vocab: Path | None
    head: Path | None


def model_files(model: str, weights: str | None = None) -> ModelFiles:
    """The files of ``model``: ``"default"`` (the bundled biLM), a released model's name, a directory
    holding ``options.json`` + ``weights.hdf5``, or an options file (path or URL) with ``weights``."""
    try:
        spec = ModelSpec.from_args(model, weights)
    except ValueError:
        if weights is not None:
            raise
        raise ValueError(
            f"model {model}: not a model name or a directory with {OPTIONS_NAME} and {WEIGHTS_NAME} "
            "(an options file needs --weights)"
        ) from None
    options_file, weight_file = spec.files()
    for path in (options_file, weight_file):
        if not path.is_file():
            raise ValueError(f"model {model}: {path} not found")
    vocab, head = weight_file.with_name(VOCAB_NAME), weight_file.with_name(HEAD_NAME)
    return ModelFiles(options_file, weight_file, vocab if vocab.is_file() else None, head if head.is_file() else None)


def adapt(
    model: str,
    train_file: str,
    heldout_file: str,
    output_dir: str,
    weights: str | None = None,
    vocab: VocabSource = "model",
    resume: bool = False,
    **settings: Any,
) -> dict[str, Any]:
    """Adapt ``model`` (see :func:`model_files`) to the text of ``train_file`` and export the result to
    ``output_dir`` (``options.json``, ``weights.hdf5``, ``vocab.txt``, ``lm_head.pt``, ``metrics.json``).

    ``vocab``: ``"model"`` keeps the model's ``vocab.txt`` (built from ``train_file`` when the model has
    none), ``"corpus"`` builds one from ``train_file``. A trained softmax (``lm_head.pt`` beside the
    weights) is used only with the model's own vocabulary; otherwise the head warm-up comes first.
    Other keyword arguments are :class:`~.config.TrainConfig` settings; ``lr``, ``mix_ratio`` and ``max_epochs``
    default to the chosen recipe (:func:`recipe_settings`). Returns the final metrics.
    """
    settings = recipe_settings(settings)
    check_choice("vocab", vocab, VOCAB_CHOICES)
    files = model_files(model, weights)
    vocab_file = files.vocab if vocab == "model" else None
    if vocab_file:
        logger.info("vocabulary: the model's %s", vocab_file)
    else:
        reason = "--vocab corpus" if vocab == "corpus" else f"the model has no {VOCAB_NAME}"
        logger.info("vocabulary: built from %s (%s)", train_file, reason)
    head_file = files.head if vocab_file else None
    if head_file:
        logger.info("softmax: the model's %s, trained for this vocabulary: no head warm-up", head_file)
    else:
        logger.info("softmax: none trained for this vocabulary: a new one, head warm-up first (biLM frozen)")
    config = TrainConfig(
        train_file=train_file,
        heldout_file=heldout_file,
        output_dir=output_dir,
        options_file=str(files.options),
        weight_file=str(files.weights),
        vocab_file=str(vocab_file) if vocab_file else None,
        head_file=str(head_file) if head_file else None,
        head_warmup=head_file is None,
        **settings,
    )
    return train(config, resume=resume)
