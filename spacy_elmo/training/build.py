"""What a run is built from: its input files, the vocabulary, the data, the biLM with its softmax (layers frozen
as asked), the optimizer, the progress and the autocast contexts."""

from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from ..bilm.kernels import runs_as
from ..bilm.model import HEAD_NAME, OPTIONS_NAME, VOCAB_NAME, WEIGHTS_NAME, read_vocab
from ..bilm.options import BiLMOptions
from ..bilm.weights import load_weights
from .checkpoint import CHECKPOINT_NAME
from .config import FREEZE_CHOICES, TrainConfig
from .corpus import EncodedCorpus, read_sentences
from .lm import BiLMWithSoftmax
from .progress import Progress
from .vocab import build_vocab, check_vocab

logger = logging.getLogger(__name__)


def input_files(config: TrainConfig) -> tuple[Path, Path | None, Path | None, Path | None]:
    """The files a run starts from: options, and weights, vocabulary and softmax where given."""
    if config.init_from:
        init = Path(config.init_from)
        head = init / HEAD_NAME
        return init / OPTIONS_NAME, init / WEIGHTS_NAME, init / VOCAB_NAME, head if head.is_file() else None

    def optional(name: str | None) -> Path | None:
        return Path(name) if name else None

    assert config.options_file  # validate(): an options file when there is no init_from
    return (
        Path(config.options_file),
        optional(config.weight_file),
        optional(config.vocab_file),
        optional(config.head_file),
    )


def load_head(model: BiLMWithSoftmax, path: Path, vocab_file: Path | None) -> None:
    """The softmax from ``path``; a ``ValueError`` when it is unreadable or made for another vocabulary."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or foreign files
        raise ValueError(f"{path}: not a readable softmax ({err})") from None
    expected = {name: tuple(value.shape) for name, value in model.softmax.state_dict().items()}
    found = {name: tuple(value.shape) for name, value in state.items()} if isinstance(state, dict) else None
    if found != expected:
        raise ValueError(
            f"{path}: this softmax does not fit the {len(model.bilm.vocab or [])}-word vocabulary of {vocab_file} "
            f"and the biLM's {model.bilm.options.projection_dim}-dim states (vocabulary mismatch)"
        )
    model.softmax.load_state_dict(state)


def choose_vocab(
    config: TrainConfig,
    state: dict[str, Any] | None,
    vocab_file: Path | None,
    train_sentences: list[list[str]],
    world_size: int,
) -> list[str]:
    """The checkpoint's vocabulary, ``vocab_file``'s, or one built from the whole training file."""
    if state:
        vocab = state["vocab"]
    elif vocab_file:
        vocab = read_vocab(vocab_file)
    else:
        full = train_sentences if world_size == 1 else read_sentences(config.train_file, config.max_length)
        vocab = build_vocab(full, config.vocab_size, config.min_count)
    check_vocab(vocab, str(vocab_file or config.train_file))
    return vocab


def build_data(
    config: TrainConfig, train_sentences: list[list[str]], vocab: list[str], options: BiLMOptions
) -> tuple[EncodedCorpus, EncodedCorpus]:
    """This process's training sentences (the training text's, then the mix corpus's) and the whole held-out
    file, encoded for ``vocab``."""
    train_corpus = EncodedCorpus(train_sentences, vocab, options.max_chars)
    heldout = EncodedCorpus(read_sentences(config.heldout_file, config.max_length), vocab, options.max_chars)
    return train_corpus, heldout


def build_model(
    config: TrainConfig,
    state: dict[str, Any] | None,
    options: BiLMOptions,
    vocab: list[str],
    sources: tuple[Path, Path | None, Path | None, Path | None],
    rank: int,
) -> BiLMWithSoftmax:
    """The biLM with its softmax: random (seeded), the checkpoint's, or the trained files' (``sources``:
    options, weights, vocabulary and softmax, see :func:`input_files`)."""
    options_file, weight_file, vocab_file, head_file = sources
    model = BiLMWithSoftmax(options, vocab, config.dropout)
    if state:
        model.load_state_dict(state["model"])
    elif weight_file:
        load_weights(model.bilm, weight_file, options_source=str(options_file))
        if head_file:
            load_head(model, head_file, vocab_file)
        elif config.init_from and not config.head_warmup and rank == 0:
            logger.warning(
                "%s has no %s: the softmax starts from scratch (use --warmup-steps)", config.init_from, HEAD_NAME
            )
    for layer in layer_parameters(model)[: FREEZE_CHOICES.index(config.freeze)]:  # bottom first
        for param in layer:
            param.requires_grad_(False)  # no gradient: the optimizer leaves it bitwise unchanged
    return model


def layer_parameters(model: BiLMWithSoftmax) -> list[list[torch.nn.Parameter]]:
    """The parameters by depth, bottom first: the token layer (char CNN, highway, projection), each biLSTM
    layer (both directions), then the softmax."""
    lstm = model.bilm.lstm
    return [
        list(model.bilm.encoder.parameters()),
        *[[*f.parameters(), *b.parameters()] for f, b in zip(lstm.forward_layers, lstm.backward_layers)],
        list(model.softmax.parameters()),
    ]


def build_optimizer(config: TrainConfig, model: BiLMWithSoftmax) -> torch.optim.Optimizer:
    """Adam or Adagrad over every parameter; with ``lower_lr_factor`` below 1, one group per layer whose
    ``lr_factor`` scales the rate (the top biLSTM layer and the softmax: 1)."""
    groups: Any = list(model.parameters())
    if config.lower_lr_factor != 1:
        layers = layer_parameters(model)
        depths = [len(layers) - 2 - i for i in range(len(layers) - 1)] + [0]  # the softmax sits with the top
        groups = [{"params": p, "lr_factor": config.lower_lr_factor**d} for p, d in zip(layers, depths)]
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr)
    return torch.optim.Adagrad(groups, lr=config.lr, initial_accumulator_value=1.0)


def build_progress(config: TrainConfig, state: dict[str, Any] | None, out: Path) -> Progress:
    """The checkpoint's progress, or a new run's (in the head phase with a head warm-up or ``head_only``)."""
    phase = "head" if config.head_warmup or config.head_only else "full"
    if state:
        return Progress.from_checkpoint(state["progress"], phase, out / "checkpoints" / CHECKPOINT_NAME)
    return Progress(phase=phase)


def autocasts(config: TrainConfig, device: torch.device) -> dict[bool, Any]:
    """biLM frozen or not -> the autocast context of a step; a frozen biLM takes the inference kernels,
    so bf16 there only where this CPU has bf16 kernels."""
    return {
        frozen: torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
        for frozen, precision in ((False, config.precision), (True, runs_as(config.precision, device)))
    }
