"""What defines a training run: :class:`TrainConfig` (stored in every checkpoint) and its checks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, get_args

from ..bilm.model import HEAD_NAME, OPTIONS_NAME, VOCAB_NAME, WEIGHTS_NAME
from ..bilm.precision import TRAINING_PRECISIONS, Precision, check_precision
from ..util.atomic import check_output
from ..util.checks import check_choice

Optimizer = Literal["adam", "adagrad"]
Schedule = Literal["constant", "linear"]
#: the biLM's parts that never train: nothing, the token layer (char CNN + highway + projection), or it and the
#: first biLSTM layer
Freeze = Literal["none", "token", "token+lstm1"]
OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)
SCHEDULES: tuple[str, ...] = get_args(Schedule)
FREEZE_CHOICES: tuple[str, ...] = get_args(Freeze)
#: the files of an exported biLM, and the run's metrics beside them
MODEL_NAMES = (OPTIONS_NAME, WEIGHTS_NAME, VOCAB_NAME)
METRICS_NAME = "metrics.json"
#: the largest learning rates and gradient-norm clip taken: far above any that trains (Adam 1e-3, Adagrad 0.2),
#: low enough that a typo such as 1e30 is refused rather than training to NaN
MAX_RATE_OR_CLIP = {"lr": 10.0, "head_lr": 10.0, "clip": 1e6}


def setting(default: Any, help: str) -> Any:
    """A :class:`TrainConfig` field with its default and its help text (the CLI builds its options from both)."""
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in every checkpoint).

    The biLM: ``options_file`` alone (a new one), ``options_file`` + ``weight_file`` (trained weights,
    as ``adapt`` gives them), or ``init_from`` (an exported directory: options, weights, vocab and, when
    there, ``lm_head.pt``). The vocabulary: ``vocab_file``, else built from ``train_file``. The softmax:
    ``head_file`` (trained for ``vocab_file``), else new.

    Phases: with ``head_warmup`` the run starts by training only the softmax (the biLM frozen, at
    ``head_lr``); held-out perplexity is measured before the first step and every ``head_eval_every``
    steps, and the warm-up ends at the first measurement that is less than ``head_min_gain``
    (relative) below the one before, or at step ``head_max_steps``; then the biLM trains too, at ``lr``,
    from a fresh pass over the text. The warm-up has only this budget (and ``max_minutes``, which caps the
    whole run): ``max_steps`` and ``max_epochs`` count the fine-tuning alone, as do ``warmup_steps`` and
    ``lr_schedule``, so ``max_epochs=1`` is one pass of fine-tuning. ``head_only``: the biLM stays frozen
    for the whole run (no stopping rule; ``max_steps`` / ``max_epochs`` count its steps; evaluation every
    ``eval_every`` steps).

    Protecting what a trained biLM knows: ``mix_file`` sentences make up a ``mix_ratio`` share of each
    epoch's sentences (a fresh sample each epoch; one epoch is still one pass over ``train_file``);
    ``freeze`` keeps the token layer (``"token"``), or it and the first biLSTM layer (``"token+lstm1"``),
    bitwise unchanged; ``lower_lr_factor`` ``F`` gives each layer below the top biLSTM layer ``F`` times
    the rate of the layer above it (discriminative rates; the softmax and the top layer train at ``lr``).
    """

    train_file: str
    heldout_file: str
    output_dir: str
    options_file: Optional[str] = None
    init_from: Optional[str] = None
    weight_file: Optional[str] = None
    vocab_file: Optional[str] = None
    head_file: Optional[str] = None
    head_warmup: bool = False
    head_only: bool = setting(False, "train only the softmax: the biLM stays bitwise unchanged")
    head_lr: float = setting(1e-3, "learning rate of the head warm-up (and of --head-only)")
    head_eval_every: int = setting(100, "head warm-up: held-out evaluation every N steps")
    head_min_gain: float = setting(
        0.02, "head warm-up ends when an evaluation is less than this fraction below the one before"
    )
    head_max_steps: int = setting(2000, "head warm-up ends at this step at the latest")
    vocab_size: int = setting(50000, "softmax vocabulary size, specials included (when one is built from the corpus)")
    min_count: int = setting(3, "least count for a word to enter a vocabulary built from the corpus")
    max_length: int = setting(64, "longer sentences are cut to this many tokens")
    batch_tokens: int = setting(4096, "tokens per batch (per process)")
    optimizer: Optimizer = setting("adam", "adam or adagrad")
    lr: float = setting(1e-3, "learning rate")
    clip: float = setting(1.0, "gradient norm clipping")
    warmup_steps: int = setting(0, "linear learning-rate warm-up over this many steps")
    lr_schedule: Schedule = setting("constant", "constant, or linear: decay to zero at --max-steps")
    dropout: float = setting(0.1, "dropout on LSTM inputs and before the softmax")
    max_steps: int = setting(
        0, "stop after this many steps (0: no limit), not counting a head warm-up (it has its own budget)"
    )
    max_minutes: float = setting(0.0, "stop after this much training time (0: no limit), head warm-up included")
    max_epochs: int = setting(1, "passes over the corpus, not counting a head warm-up (1: one pass of fine-tuning)")
    eval_every: int = setting(500, "held-out evaluation every N steps")
    checkpoint_every: int = setting(200, "checkpoint every N steps")
    seed: int = setting(0, "random seed")
    precision: Precision = setting("fp32", "fp32 or bf16 (autocast); int8 is for inference only")
    device: str = setting("cpu", "cpu or cuda")
    mix_file: Optional[str] = None
    mix_ratio: float = setting(0.0, "share of each epoch's sentences drawn from the mix corpus, in [0, 1)")
    freeze: Freeze = setting(
        "none", "layers kept bitwise unchanged: none, token (char CNN + highway + projection), token+lstm1"
    )
    lower_lr_factor: float = setting(
        1.0, "each layer below the top biLSTM layer trains at this factor of the rate of the layer above"
    )

    def validate(self) -> None:
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("lr_schedule", self.lr_schedule, SCHEDULES)
        check_choice("freeze", self.freeze, FREEZE_CHOICES)
        if self.lr_schedule == "linear" and self.max_steps < 1:
            raise ValueError("lr_schedule 'linear' decays to zero at max_steps: give max_steps >= 1")
        check_precision(self.precision, allowed=TRAINING_PRECISIONS)
        for name in (
            "vocab_size",
            "max_length",
            "batch_tokens",
            "eval_every",
            "checkpoint_every",
            "max_epochs",
            "head_eval_every",
            "head_max_steps",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, found {getattr(self, name)}")
        for name in ("lr", "head_lr", "clip"):  # nan and inf too
            if not 0 < getattr(self, name) <= MAX_RATE_OR_CLIP[name]:
                raise ValueError(f"{name} must be in (0, {MAX_RATE_OR_CLIP[name]:g}], found {getattr(self, name)}")
        for name in ("min_count", "seed", "warmup_steps", "max_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, found {getattr(self, name)}")
        if not 0 <= self.max_minutes < math.inf:
            raise ValueError(f"max_minutes must be a finite number >= 0, found {self.max_minutes}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), found {self.dropout}")
        if not 0 <= self.head_min_gain < 1:
            raise ValueError(f"head_min_gain must be in [0, 1), found {self.head_min_gain}")
        if not 0 <= self.mix_ratio < 1:
            raise ValueError(f"mix_ratio must be in [0, 1), found {self.mix_ratio}")
        if bool(self.mix_file) != (self.mix_ratio > 0):
            raise ValueError("mixing general text needs both a mix corpus (mix_file) and a mix_ratio above 0")
        if not 0 < self.lower_lr_factor <= 1:
            raise ValueError(f"lower_lr_factor must be in (0, 1], found {self.lower_lr_factor}")
        if bool(self.options_file) == bool(self.init_from):
            raise ValueError("give either an options file (a new biLM) or init_from (a trained one to continue)")
        if self.init_from and (self.weight_file or self.vocab_file or self.head_file):
            raise ValueError("init_from brings its own weights, vocabulary and softmax: give no other files with it")
        if self.head_file and not self.vocab_file:
            raise ValueError("a trained softmax (head_file) belongs to a vocabulary: give its vocab_file too")
        if (self.head_warmup or self.head_only) and not (self.weight_file or self.init_from):
            raise ValueError("a frozen biLM must be a trained one: head_warmup and head_only need trained weights")
        if self.freeze != "none" and not (self.weight_file or self.init_from):
            raise ValueError(f"freeze {self.freeze!r} keeps trained layers: it needs trained weights")
        names = ("train_file", "heldout_file", "mix_file", "options_file", "weight_file", "vocab_file", "head_file")
        for name in names:
            if getattr(self, name) and not Path(getattr(self, name)).is_file():
                raise ValueError(f"{name.replace('_', ' ')} not found: {getattr(self, name)}")
        for name in (OPTIONS_NAME, WEIGHTS_NAME, VOCAB_NAME):
            if self.init_from and not (Path(self.init_from) / name).is_file():
                raise ValueError(
                    f"init_from {self.init_from}: {name} not found "
                    f"(an exported biLM has {OPTIONS_NAME}, {WEIGHTS_NAME} and {VOCAB_NAME})"
                )
        self.check_outputs()

    def check_outputs(self) -> None:
        """Before any work: no file the run exports is one of its inputs (also through a link) or a directory,
        and ``output_dir`` can be written. :raises ValueError: naming the file and the problem."""
        names = ("train_file", "heldout_file", "options_file", "weight_file", "vocab_file", "head_file")
        inputs = [Path(getattr(self, name)) for name in names if getattr(self, name)]
        if self.init_from:
            inputs += [Path(self.init_from) / name for name in (*MODEL_NAMES, HEAD_NAME)]
        for name in (*MODEL_NAMES, HEAD_NAME, METRICS_NAME):
            check_output(Path(self.output_dir) / name, inputs)
