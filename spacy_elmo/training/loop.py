"""The training loop of ``pretrain`` and ``adapt``: forward + backward LM loss, clipping, evaluation,
checkpoints, resume, DDP, and the head warm-up phase (the softmax alone, the biLM frozen)."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed as dist
from tqdm import tqdm

from ..bilm.kernels import runs_as
from ..bilm.model import HEAD_NAME, OPTIONS_NAME, VOCAB_NAME, WEIGHTS_NAME, read_vocab, resolve_device
from ..bilm.options import BiLMOptions
from ..bilm.precision import TRAINING_PRECISIONS, Precision, check_precision
from ..bilm.weights import load_weights
from ..util.atomic import atomic_path, check_output, write_text
from .checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from .corpus import EncodedCorpus, read_sentences
from .lm import BiLanguageModel
from .progress import Progress
from .vocab import build_vocab, check_vocab

logger = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "adagrad")
SCHEDULES = ("constant", "linear")
#: ``freeze`` settings: the biLM's parts that never train (the token layer: char CNN + highway + projection)
FREEZE_CHOICES = ("none", "token", "token+lstm1")
#: a run that continues a trained biLM and fine-tunes it fewer steps than this ends with a warning
FEW_FINE_TUNING_STEPS = 100
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
    precision: Precision = "fp32"
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


def _distributed() -> tuple[int, int]:
    """``(rank, world_size)``; joins the process group when started by ``torchrun``."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() and os.environ.get("LOCAL_RANK") else "gloo")
    return (dist.get_rank(), world_size) if world_size > 1 else (0, 1)


def _reduce_over_ranks(value: int, world_size: int, op: str, device: torch.device) -> int:
    """``min`` or ``sum`` of an integer over all processes."""
    if world_size == 1:
        return value
    tensor = torch.tensor([value], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN if op == "min" else dist.ReduceOp.SUM)
    return int(tensor.item())


@torch.no_grad()
def evaluate(
    model: BiLanguageModel, corpus: EncodedCorpus, batch_tokens: int, device: torch.device
) -> dict[str, float]:
    """Held-out perplexity of the forward and backward LM and their average."""
    model.eval()
    forward = backward = 0.0
    for index in corpus.batch_plan(batch_tokens):
        batch = corpus.batch(index).to(device)
        f, b = model(batch.char_ids, batch.targets, batch.lengths)
        forward, backward = forward + float(f), backward + float(b)
    model.train()
    n = corpus.n_tokens
    fwd, bwd = math.exp(forward / n), math.exp(backward / n)
    return {"forward_ppl": fwd, "backward_ppl": bwd, "ppl": (fwd + bwd) / 2}


def learning_rate(config: TrainConfig, step: int, start: int = 0) -> float:
    """The rate for step ``step`` (0-based) of a phase that began at step ``start``: linear warm-up over
    ``warmup_steps``, then constant or linear decay to zero ``max_steps`` steps after ``start``. A function
    of the steps alone, so a resumed run follows the same schedule."""
    rate = config.lr * min(1.0, (step - start + 1) / max(1, config.warmup_steps))
    if config.lr_schedule == "linear":
        rate *= max(0.0, 1.0 - (step - start) / max(1, config.max_steps))
    return rate


def _sources(config: TrainConfig) -> tuple[Path, Path | None, Path | None, Path | None]:
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
        optional(config.weights_file),
        optional(config.vocab_file),
        optional(config.head_file),
    )


def _load_head(model: BiLanguageModel, path: Path, vocab_file: Path | None) -> None:
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


def _warmup_finished(config: TrainConfig, progress: Progress, announce: bool) -> bool:
    """The head warm-up's stopping rule, applied at each of its evaluations (see :class:`TrainConfig`);
    ``announce``: log the end of the warm-up."""
    ppl = progress.history[-1]["ppl"]
    previous, progress.head_ppl = progress.head_ppl, ppl
    gain = (previous - ppl) / previous
    done = gain < config.head_min_gain or progress.step >= config.head_max_steps
    if done and announce:
        logger.info(
            "head warm-up done at step %d: held-out perplexity %.1f, %.1f%% below the evaluation before "
            "(stops under %.1f%%, or at step %d); now fine-tuning everything at lr %g",
            progress.step,
            ppl,
            100 * gain,
            100 * config.head_min_gain,
            config.head_max_steps,
            config.lr,
        )
    return done


def _evaluation_due(config: TrainConfig, progress: Progress) -> bool:
    step = progress.step
    if progress.phase == "head" and not config.head_only:
        return step % config.head_eval_every == 0 or step >= config.head_max_steps
    return step % config.eval_every == 0


def train(config: TrainConfig, resume: bool = False) -> dict[str, Any]:
    """Train (or resume) a biLM and export it to ``config.output_dir`` in the bilm-tf format.

    Returns the final metrics. Only rank 0 evaluates, writes files and shows progress.
    """
    config.validate()
    rank, world_size = _distributed()
    device = _training_device(config)
    out = Path(config.output_dir)
    state = _checkpoint_to_resume(config, out, rank) if resume else None
    run = _start(config, state, rank, world_size, device, out)
    progress = run.progress
    warms_up = config.head_warmup and not config.head_only
    total = (config.max_steps or None) if not warms_up else None  # the warm-up's length is not known ahead
    bar = tqdm(total=total, initial=progress.step, disable=rank != 0, unit="step")
    if run.starts_trained:  # the trained biLM's perplexity before any step
        run.record(bar)
        progress.head_ppl = progress.history[-1]["ppl"]
    run.model.train()
    n_batches = run.train_epochs(bar)
    bar.close()
    if not progress.history or progress.history[-1]["step"] != progress.step:
        run.record(bar)
    run.checkpoint()
    metrics = run.final_metrics(n_batches)
    if rank == 0:
        _export(run.model, {"final": metrics, "history": progress.history}, out)
        logger.info("%s; exported to %s", summary_line(metrics), out)
        warning = fine_tuning_warning(metrics)
        if warning:
            logger.warning(warning)
    if world_size > 1:
        dist.barrier()
    return metrics


def fine_tuning_warning(metrics: dict[str, Any]) -> str | None:
    """One line when a run that continued a trained biLM (not ``head_only``) fine-tuned it for no step, or
    for fewer than :data:`FEW_FINE_TUNING_STEPS`; ``metrics``: those :func:`train` returns."""
    if not metrics["continues_trained"] or metrics["head_only"]:
        return None
    steps = metrics["fine_tuned_steps"]
    if steps == 0:
        return (
            f"warning: the biLM was NOT fine-tuned: the run ended in the head warm-up at step {metrics['step']}, "
            "so the exported weights are the input biLM's, unchanged (raise --max-minutes, or resume)"
        )
    if steps < FEW_FINE_TUNING_STEPS:
        return (
            f"warning: only {steps} steps fine-tuned the biLM ({metrics['fine_tuned_epochs']:.2f} epochs of "
            f"{metrics['batches_per_epoch']} batches): it has barely moved from the input biLM; raise --max-epochs "
            "(or --max-steps), or lower --batch-tokens"
        )
    return None


def summary_line(metrics: dict[str, Any]) -> str:
    """What a run did to the biLM, in one line, from the metrics :func:`train` returns."""
    history_ppl = f"held-out perplexity {metrics['ppl']:.1f}"
    if metrics.get("start_ppl") is not None:
        history_ppl = f"held-out perplexity {metrics['start_ppl']:.1f} -> {metrics['ppl']:.1f}"
    if metrics["head_only"]:
        return (
            f"trained the softmax alone for {metrics['step']} steps; the biLM is unchanged (head only); {history_ppl}"
        )
    verb = "fine-tuned" if metrics["continues_trained"] else "trained"
    done = f"{verb} the biLM for {metrics['fine_tuned_steps']} steps ({metrics['fine_tuned_epochs']:.2f} epochs)"
    if metrics["head_steps"]:
        done += f" after a {metrics['head_steps']}-step head warm-up"
    if metrics["fine_tuned_steps"] == 0 and metrics["continues_trained"]:
        done = f"the biLM was NOT fine-tuned (the run ended in a {metrics['head_steps']}-step head warm-up)"
    return f"{done}; {history_ppl}"


def _training_device(config: TrainConfig) -> torch.device:
    """``config.device``; with CUDA this process's GPU (``LOCAL_RANK`` under torchrun), TF32 matmuls allowed."""
    device = resolve_device(f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if config.device == "cuda" else config.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
    return device


#: what every checkpoint holds (see :meth:`_Run.checkpoint`)
CHECKPOINT_KEYS = ("model", "optimizer", "progress", "rng", "config", "options", "vocab")


def _checkpoint_to_resume(config: TrainConfig, out: Path, rank: int) -> dict[str, Any] | None:
    """The last checkpoint in ``out``, if any; a ``ValueError`` when it lacks an entry or was trained on
    another file."""
    directory = out / "checkpoints"
    state = load_checkpoint(directory)
    if state is None:
        if rank == 0:
            logger.info("no checkpoint in %s: starting a new run", directory)
        return None
    path = directory / CHECKPOINT_NAME
    missing = [key for key in CHECKPOINT_KEYS if key not in state] if isinstance(state, dict) else list(CHECKPOINT_KEYS)
    if missing:
        raise ValueError(f"{path}: cannot resume: the checkpoint lacks {', '.join(missing)}")
    trained_on = state["config"].get("train_file") if isinstance(state["config"], dict) else None
    if trained_on != config.train_file:
        raise ValueError(f"{directory}: the checkpoint was trained on {trained_on}, not {config.train_file}")
    return state


@dataclass
class _Run:
    """What one training run works on (see :func:`_start`); :func:`train` drives it."""

    config: TrainConfig
    rank: int
    world_size: int
    device: torch.device
    out: Path
    options: BiLMOptions
    vocab: list[str]
    train_corpus: EncodedCorpus
    heldout: EncodedCorpus
    model: BiLanguageModel
    trainer: torch.nn.Module  # the model, wrapped for DDP when there are several processes
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    progress: Progress  # step, epoch, batch in epoch, tokens, seconds, history, phase...; checkpointed
    autocasts: dict[bool, Any]  # biLM frozen or not -> the autocast context of a step
    starts_trained: bool  # trained weights loaded for a new run: measure the perplexity before any step
    n_train: int  # sentences of train_corpus from the training text (after them: the mix corpus's)
    train_tokens: int  # tokens of the training text (this process's share)

    def finished(self) -> bool:
        """``max_minutes`` spent, or the budget of the phase that counts (see :class:`TrainConfig`)."""
        config, progress = self.config, self.progress
        if config.max_minutes > 0 and progress.seconds >= 60 * config.max_minutes:
            return True
        if progress.phase == "head" and not config.head_only:
            return False  # the warm-up ends by its own rule
        steps = progress.step - progress.phase_start
        return (config.max_steps > 0 and steps >= config.max_steps) or (
            progress.epoch - progress.phase_epoch >= config.max_epochs
        )

    def train_epochs(self, bar: tqdm) -> int:
        """Train until the budgets are spent, evaluating and checkpointing on the way; returns the number of
        batches of the last epoch."""
        config, progress = self.config, self.progress
        n_batches = 0
        while not self.finished():
            generator = torch.Generator().manual_seed(config.seed * 1009 + progress.epoch * 7919 + self.rank)
            plan = self.train_corpus.batch_plan(config.batch_tokens, generator, self.epoch_sentences(generator))
            n_batches = _reduce_over_ranks(len(plan), self.world_size, "min", self.device)
            while progress.batch < n_batches and not self.finished():
                frozen = self.step(plan[progress.batch], bar)
                switched = False
                if _evaluation_due(config, progress):
                    self.record(bar)
                    if frozen and not config.head_only and _warmup_finished(config, progress, self.rank == 0):
                        self.begin_fine_tuning()
                        switched = True
                if progress.step % config.checkpoint_every == 0:
                    self.checkpoint()
                if switched:
                    break
            if progress.batch >= n_batches:
                progress.epoch += 1
                progress.batch = 0
        return n_batches

    def begin_fine_tuning(self) -> None:
        """End the head warm-up: the biLM trains from the next step, on a fresh pass over the text."""
        progress = self.progress
        progress.phase, progress.phase_start = "full", progress.step
        if progress.batch > 0:
            progress.epoch, progress.batch = progress.epoch + 1, 0
        progress.phase_epoch = progress.epoch

    def epoch_sentences(self, generator: torch.Generator) -> list[int] | None:
        """The sentences of an epoch: all of the training text, and a fresh sample of the mix corpus that
        makes ``mix_ratio`` of them; ``None`` (all) without a mix corpus."""
        n_mix = len(self.train_corpus) - self.n_train
        if not n_mix:
            return None
        ratio = self.config.mix_ratio
        wanted = min(n_mix, round(self.n_train * ratio / (1 - ratio)))
        picked = torch.randperm(n_mix, generator=generator)[:wanted] + self.n_train
        return [*range(self.n_train), *picked.tolist()]

    def step(self, index: list[int], bar: tqdm) -> bool:
        """One optimizer step on the training batch ``index``; returns whether the biLM was frozen (head phase)."""
        config, progress = self.config, self.progress
        started = time.perf_counter()
        batch = self.train_corpus.batch(index).to(self.device)
        frozen = progress.phase == "head"
        with self.autocasts[frozen]:
            forward_nll, backward_nll = self.trainer(batch.char_ids, batch.targets, batch.lengths, frozen=frozen)
        loss = (forward_nll + backward_nll) / (2 * batch.n_tokens)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # frozen: the biLM's gradients stay None, so the optimizer leaves it untouched
        rate = config.head_lr if frozen else learning_rate(config, progress.step, progress.phase_start)
        for group in self.optimizer.param_groups:
            group["lr"] = rate * group.get("lr_factor", 1.0)
        torch.nn.utils.clip_grad_norm_(self.params, config.clip)
        self.optimizer.step()
        elapsed = time.perf_counter() - started
        progress.step += 1
        progress.batch += 1
        progress.tokens += batch.n_tokens * self.world_size
        progress.seconds += elapsed
        bar.update(1)
        bar.set_postfix(
            loss=f"{loss.item():.3f}",
            ppl=f"{math.exp(min(loss.item(), 50)):.1f}",
            tok_s=f"{batch.n_tokens * self.world_size / elapsed:.0f}",
            epoch=progress.epoch,
            phase=progress.phase,
        )
        return frozen

    def record(self, bar: tqdm) -> None:
        """Evaluate held-out perplexity on rank 0 and append it to every rank's history."""
        progress = self.progress
        entry: list[dict[str, Any] | None] = [None]
        if self.rank == 0:
            scores = evaluate(self.model, self.heldout, self.config.batch_tokens, self.device)
            entry[0] = {
                "step": progress.step,
                "tokens": progress.tokens,
                "phase": progress.phase,
                **{k: round(v, 3) for k, v in scores.items()},
            }
            bar.write(
                f"step {progress.step} ({progress.phase}): held-out perplexity forward "
                f"{scores['forward_ppl']:.1f}, backward {scores['backward_ppl']:.1f}"
            )
        if self.world_size > 1:
            dist.broadcast_object_list(entry, src=0)
        assert entry[0] is not None  # rank 0 evaluated, and broadcast it
        progress.history.append(entry[0])

    def checkpoint(self) -> None:
        if self.rank == 0:
            save_checkpoint(
                {
                    "model": self.model.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "progress": self.progress.to_checkpoint(),
                    "rng": torch.get_rng_state(),
                    "config": dataclasses.asdict(self.config),
                    "options": self.options.to_json(),
                    "vocab": self.vocab,
                },
                self.out / "checkpoints",
            )

    def final_metrics(self, n_batches: int) -> dict[str, Any]:
        config, progress = self.config, self.progress
        train_tokens = _reduce_over_ranks(self.train_tokens, self.world_size, "sum", self.device)
        first = progress.history[0]
        return {
            **progress.history[-1],
            "tokens_seen": progress.tokens,
            "train_minutes": progress.seconds / 60,
            "epochs": progress.epoch + progress.batch / max(1, n_batches),
            "train_tokens": train_tokens,
            "heldout_tokens": self.heldout.n_tokens,
            "vocab_size": len(self.vocab),
            "parameters": sum(p.numel() for p in self.model.bilm.parameters()),
            "phase": progress.phase,
            "phase_start": progress.phase_start,
            "world_size": self.world_size,
            "device": str(self.device),
            "continues_trained": bool(config.weights_file or config.init_from),
            "head_only": config.head_only,
            "head_steps": progress.head_steps,
            "fine_tuned_steps": progress.fine_tuned_steps,
            "fine_tuned_epochs": progress.phase_epochs(n_batches) if progress.phase == "full" else 0.0,
            "batches_per_epoch": n_batches,
            "start_ppl": first["ppl"] if first["step"] == 0 else None,
            "mix_ratio": config.mix_ratio,
            "freeze": config.freeze,
            "lower_lr_factor": config.lower_lr_factor,
        }


def _start(
    config: TrainConfig, state: dict[str, Any] | None, rank: int, world_size: int, device: torch.device, out: Path
) -> _Run:
    """A new run from ``config``'s files, or the checkpointed one ``state``: options, data, vocabulary, model,
    optimizer and progress (the random state seeded, or restored from the checkpoint)."""
    options_file, weights_file, vocab_file, head_file = _sources(config)
    options = BiLMOptions.from_json(state["options"]) if state else BiLMOptions.read(options_file)
    torch.manual_seed(config.seed)
    train_sentences = read_sentences(config.train_file, config.max_length, rank, world_size)
    vocab = _build_vocab(config, state, vocab_file, train_sentences, world_size)
    mix_sentences = read_sentences(config.mix_file, config.max_length, rank, world_size) if config.mix_file else []
    train_corpus, heldout = _build_data(config, train_sentences + mix_sentences, vocab, options)
    model = _build_model(config, state, options, vocab, (options_file, weights_file, vocab_file, head_file), rank)
    model = model.to(device)
    params = list(model.parameters())
    optimizer = _build_optimizer(config, model)
    progress = _build_progress(config, state, out)
    if state:
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
    trainer = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True) if world_size > 1 else model
    return _Run(
        config=config,
        rank=rank,
        world_size=world_size,
        device=device,
        out=out,
        options=options,
        vocab=vocab,
        train_corpus=train_corpus,
        heldout=heldout,
        model=model,
        trainer=trainer,
        params=params,
        optimizer=optimizer,
        progress=progress,
        autocasts=_autocasts(config, device),
        starts_trained=bool(weights_file and not state),
        n_train=len(train_sentences),
        train_tokens=sum(len(sentence) + 1 for sentence in train_sentences),  # predictions per direction
    )


def _build_vocab(
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


def _build_data(
    config: TrainConfig, train_sentences: list[list[str]], vocab: list[str], options: BiLMOptions
) -> tuple[EncodedCorpus, EncodedCorpus]:
    """This process's training sentences (the training text's, then the mix corpus's) and the whole held-out
    file, encoded for ``vocab``."""
    train_corpus = EncodedCorpus(train_sentences, vocab, options.max_chars)
    heldout = EncodedCorpus(read_sentences(config.heldout_file, config.max_length), vocab, options.max_chars)
    return train_corpus, heldout


def _build_model(
    config: TrainConfig,
    state: dict[str, Any] | None,
    options: BiLMOptions,
    vocab: list[str],
    sources: tuple[Path, Path | None, Path | None, Path | None],
    rank: int,
) -> BiLanguageModel:
    """The biLM with its softmax: random (seeded), the checkpoint's, or the trained files' (``sources``:
    options, weights, vocabulary and softmax, see :func:`_sources`)."""
    options_file, weights_file, vocab_file, head_file = sources
    model = BiLanguageModel(options, vocab, config.dropout)
    if state:
        model.load_state_dict(state["model"])
    elif weights_file:
        load_weights(model.bilm, weights_file, options_source=str(options_file))
        if head_file:
            _load_head(model, head_file, vocab_file)
        elif config.init_from and not config.head_warmup and rank == 0:
            logger.warning(
                "%s has no %s: the softmax starts from scratch (use --warmup-steps)", config.init_from, HEAD_NAME
            )
    frozen = {"none": 0, "token": 1, "token+lstm1": 2}[config.freeze]
    for layer in layer_parameters(model)[:frozen]:
        for param in layer:
            param.requires_grad_(False)  # no gradient: the optimizer leaves it bitwise unchanged
    return model


def layer_parameters(model: BiLanguageModel) -> list[list[torch.nn.Parameter]]:
    """The parameters by depth, bottom first: the token layer (char CNN, highway, projection), each biLSTM
    layer (both directions), then the softmax."""
    lstm = model.bilm.lstm
    return [
        list(model.bilm.encoder.parameters()),
        *[[*f.parameters(), *b.parameters()] for f, b in zip(lstm.forward_layers, lstm.backward_layers)],
        list(model.softmax.parameters()),
    ]


def _build_optimizer(config: TrainConfig, model: BiLanguageModel) -> torch.optim.Optimizer:
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


def _build_progress(config: TrainConfig, state: dict[str, Any] | None, out: Path) -> Progress:
    """The checkpoint's progress, or a new run's (in the head phase with a head warm-up or ``head_only``)."""
    phase = "head" if config.head_warmup or config.head_only else "full"
    if state:
        return Progress.from_checkpoint(state["progress"], phase, out / "checkpoints" / CHECKPOINT_NAME)
    return Progress(phase=phase)


def _autocasts(config: TrainConfig, device: torch.device) -> dict[bool, Any]:
    """biLM frozen or not -> the autocast context of a step; a frozen biLM takes the inference kernels,
    so bf16 there only where this CPU has bf16 kernels."""
    return {
        frozen: torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
        for frozen, precision in ((False, config.precision), (True, runs_as(config.precision, device)))
    }


def _export(model: BiLanguageModel, metrics: dict[str, Any], out: Path) -> None:
    """The biLM in the bilm-tf format with its vocabulary, the softmax (for ``init_from``) and the metrics."""
    model.bilm.save(out)
    with atomic_path(out / HEAD_NAME) as tmp:
        torch.save(model.softmax.state_dict(), tmp)
    write_text(out / METRICS_NAME, json.dumps(metrics, indent=1))
