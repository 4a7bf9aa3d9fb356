"""What defines a training run: :class:`TrainConfig` (stored in every checkpoint) and its checks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..bilm.kernels import PRECISIONS
from ..bilm.model import HEAD_NAME, OPTIONS_NAME, VOCAB_NAME, WEIGHTS_NAME
from ..util.atomic import check_output

OPTIMIZERS = ("adam", "adagrad")
SCHEDULES = ("constant", "linear")
#: ``freeze`` settings: the biLM's parts that never train (the token layer: char CNN + highway + projection)
FREEZE_CHOICES = ("none", "token", "token+lstm1")
#: a run that continues a trained biLM and fine-tunes it fewer steps than this ends with a warning
#: the files of an exported biLM, and the run's metrics beside them
MODEL_NAMES = (OPTIONS_NAME, WEIGHTS_NAME, VOCAB_NAME)
METRICS_NAME = "metrics.json"


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in every checkpoint).

    The biLM: ``options_file`` alone (a new one), ``options_file`` + ``weights_file`` (trained weights,
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
    weights_file: Optional[str] = None
    vocab_file: Optional[str] = None
    head_file: Optional[str] = None
    head_warmup: bool = False
    head_only: bool = False
    head_lr: float = 1e-3
    head_eval_every: int = 100
    head_min_gain: float = 0.02
    head_max_steps: int = 2000
    vocab_size: int = 50000
    min_count: int = 3
    max_length: int = 64
    batch_tokens: int = 4096
    optimizer: str = "adam"
    lr: float = 1e-3
    clip: float = 1.0
    warmup_steps: int = 0
    lr_schedule: str = "constant"
    dropout: float = 0.1
    max_steps: int = 0
    max_minutes: float = 0.0
    max_epochs: int = 1
    eval_every: int = 500
    checkpoint_every: int = 200
    seed: int = 0
    precision: str = "fp32"
    device: str = "cpu"
    mix_file: Optional[str] = None
    mix_ratio: float = 0.0
    freeze: str = "none"
    lower_lr_factor: float = 1.0

    def validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; expected one of {OPTIMIZERS}")
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(f"unknown lr_schedule {self.lr_schedule!r}; expected one of {SCHEDULES}")
        if self.lr_schedule == "linear" and self.max_steps < 1:
            raise ValueError("lr_schedule 'linear' decays to zero at max_steps: give max_steps >= 1")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, found {self.precision!r}")
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
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), found {self.dropout}")
        if not 0 <= self.head_min_gain < 1:
            raise ValueError(f"head_min_gain must be in [0, 1), found {self.head_min_gain}")
        if not 0 <= self.mix_ratio < 1:
            raise ValueError(f"mix_ratio must be in [0, 1), found {self.mix_ratio}")
        if bool(self.mix_file) != (self.mix_ratio > 0):
            raise ValueError("mixing general text needs both a mix corpus (mix_file) and a mix_ratio above 0")
        if self.freeze not in FREEZE_CHOICES:
            raise ValueError(f"freeze must be one of {FREEZE_CHOICES}, found {self.freeze!r}")
        if not 0 < self.lower_lr_factor <= 1:
            raise ValueError(f"lower_lr_factor must be in (0, 1], found {self.lower_lr_factor}")
        if bool(self.options_file) == bool(self.init_from):
            raise ValueError("give either an options file (a new biLM) or init_from (a trained one to continue)")
        if self.init_from and (self.weights_file or self.vocab_file or self.head_file):
            raise ValueError("init_from brings its own weights, vocabulary and softmax: give no other files with it")
        if self.head_file and not self.vocab_file:
            raise ValueError("a trained softmax (head_file) belongs to a vocabulary: give its vocab_file too")
        if (self.head_warmup or self.head_only) and not (self.weights_file or self.init_from):
            raise ValueError("a frozen biLM must be a trained one: head_warmup and head_only need trained weights")
        if self.freeze != "none" and not (self.weights_file or self.init_from):
            raise ValueError(f"freeze {self.freeze!r} keeps trained layers: it needs trained weights")
        names = ("train_file", "heldout_file", "mix_file", "options_file", "weights_file", "vocab_file", "head_file")
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
        names = ("train_file", "heldout_file", "options_file", "weights_file", "vocab_file", "head_file")
        inputs = [Path(getattr(self, name)) for name in names if getattr(self, name)]
        if self.init_from:
            inputs += [Path(self.init_from) / name for name in (*MODEL_NAMES, HEAD_NAME)]
        for name in (*MODEL_NAMES, HEAD_NAME, METRICS_NAME):
            check_output(Path(self.output_dir) / name, inputs)
