"""The pretraining loop: forward + backward LM loss, clipping, evaluation, checkpoints, resume, DDP."""
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
from typing import Any

import torch
import torch.distributed as dist
from tqdm import tqdm

from ..bilm.atomic import atomic_path, write_text
from ..bilm.kernels import PRECISIONS
from ..bilm.model import read_vocab, resolve_device
from ..bilm.weights import load_weights
from ..bilm.options import BiLMOptions
from .checkpoint import load_checkpoint, save_checkpoint
from .corpus import EncodedCorpus, read_sentences
from .lm import BiLanguageModel
from .vocab import build_vocab, check_vocab

logger = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "adagrad")
SCHEDULES = ("constant", "linear")
OPTIONS_NAME, WEIGHTS_NAME, VOCAB_NAME = "options.json", "weights.hdf5", "vocab.txt"
HEAD_NAME = "lm_head.pt"  # the softmax, exported beside the biLM so that training can continue (init_from)


@dataclass
class TrainConfig:
    """Everything that defines a pretraining run (stored in every checkpoint)."""

    train_file: str
    heldout_file: str
    output_dir: str
    options_file: str = ""
    init_from: str = ""
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

    def validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; expected one of {OPTIMIZERS}")
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(f"unknown lr_schedule {self.lr_schedule!r}; expected one of {SCHEDULES}")
        if self.lr_schedule == "linear" and self.max_steps < 1:
            raise ValueError("lr_schedule 'linear' decays to zero at max_steps: give max_steps >= 1")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, found {self.precision!r}")
        for name in ("vocab_size", "max_length", "batch_tokens", "eval_every", "checkpoint_every", "max_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, found {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), found {self.dropout}")
        if bool(self.options_file) == bool(self.init_from):
            raise ValueError("give either an options file (a new biLM) or init_from (a trained one to continue)")
        for name in ("train_file", "heldout_file", "options_file"):
            if getattr(self, name) and not Path(getattr(self, name)).is_file():
                raise ValueError(f"{name.replace('_', ' ')} not found: {getattr(self, name)}")
        for name in (OPTIONS_NAME, WEIGHTS_NAME, VOCAB_NAME):
            if self.init_from and not (Path(self.init_from) / name).is_file():
                raise ValueError(f"init_from {self.init_from}: {name} not found (an exported biLM has {OPTIONS_NAME}, {WEIGHTS_NAME} and {VOCAB_NAME})")


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
def evaluate(model: BiLanguageModel, corpus: EncodedCorpus, batch_tokens: int, device: torch.device) -> dict[str, float]:
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


def learning_rate(config: TrainConfig, step: int) -> float:
    """The rate for step ``step`` (0-based): linear warm-up, then constant or linear decay to zero at
    ``max_steps``. A function of the step alone, so a resumed run follows the same schedule."""
    rate = config.lr * min(1.0, (step + 1) / max(1, config.warmup_steps))
    if config.lr_schedule == "linear":
        rate *= max(0.0, 1.0 - step / config.max_steps)
    return rate


def train(config: TrainConfig, resume: bool = False) -> dict[str, Any]:
    """Train (or resume) a biLM and export it to ``config.output_dir`` in the bilm-tf format.

    Returns the final metrics. Only rank 0 evaluates, writes files and shows progress.
    """
    config.validate()
    rank, world_size = _distributed()
    device = resolve_device(f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if config.device == "cuda" else config.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
    out = Path(config.output_dir)
    state = load_checkpoint(out / "checkpoints") if resume else None
    if resume and state is None and rank == 0:
        logger.info("no checkpoint in %s: starting a new run", out / "checkpoints")
    if state is not None and state["config"]["train_file"] != config.train_file:
        raise ValueError(
            f"{out / 'checkpoints'}: the checkpoint was trained on {state['config']['train_file']}, not {config.train_file}"
        )
    init = Path(config.init_from) if config.init_from and not state else None
    if state:
        options = BiLMOptions.from_json(state["options"])
    else:
        options = BiLMOptions.read(init / OPTIONS_NAME if init else config.options_file)
    torch.manual_seed(config.seed)
    train_sentences = read_sentences(config.train_file, config.max_length, rank, world_size)
    if state:
        vocab = state["vocab"]
    elif init:
        vocab = read_vocab(init / VOCAB_NAME)
    else:
        full = train_sentences if world_size == 1 else read_sentences(config.train_file, config.max_length)
        vocab = build_vocab(full, config.vocab_size, config.min_count)
    check_vocab(vocab, config.train_file)
    train_corpus = EncodedCorpus(train_sentences, vocab, options.max_chars)
    heldout = EncodedCorpus(read_sentences(config.heldout_file, config.max_length), vocab, options.max_chars)

    model = BiLanguageModel(options, vocab, config.dropout)
    if init:
        load_weights(model.bilm, init / WEIGHTS_NAME, options_source=str(init / OPTIONS_NAME))
        if (init / HEAD_NAME).is_file():
            model.softmax.load_state_dict(torch.load(init / HEAD_NAME, map_location="cpu", weights_only=True))
        elif rank == 0:
            logger.warning("%s has no %s: the softmax starts from scratch (use --warmup-steps)", init, HEAD_NAME)
    model = model.to(device)
    params = list(model.parameters())
    optimizer = (
        torch.optim.Adam(params, lr=config.lr)
        if config.optimizer == "adam"
        else torch.optim.Adagrad(params, lr=config.lr, initial_accumulator_value=1.0)
    )
    progress = {"step": 0, "epoch": 0, "batch": 0, "tokens": 0, "seconds": 0.0, "history": []}
    if state:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        progress = state["progress"]
        torch.set_rng_state(state["rng"])
    trainer = (
        torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True) if world_size > 1 else model
    )
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if config.precision == "bf16" else nullcontext()

    def checkpoint() -> None:
        if rank == 0:
            save_checkpoint(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "progress": progress,
                    "rng": torch.get_rng_state(),
                    "config": dataclasses.asdict(config),
                    "options": options.to_json(),
                    "vocab": vocab,
                },
                out / "checkpoints",
            )

    def finished() -> bool:
        return (config.max_steps > 0 and progress["step"] >= config.max_steps) or (
            config.max_minutes > 0 and progress["seconds"] >= 60 * config.max_minutes
        )

    bar = tqdm(total=config.max_steps or None, initial=progress["step"], disable=rank != 0, unit="step")
    model.train()
    n_batches = 0
    while progress["epoch"] < config.max_epochs and not finished():
        generator = torch.Generator().manual_seed(config.seed * 1009 + progress["epoch"] * 7919 + rank)
        plan = train_corpus.batch_plan(config.batch_tokens, generator)
        n_batches = _reduce_over_ranks(len(plan), world_size, "min", device)
        while progress["batch"] < n_batches and not finished():
            started = time.perf_counter()
            batch = train_corpus.batch(plan[progress["batch"]]).to(device)
            with autocast:
                forward_nll, backward_nll = trainer(batch.char_ids, batch.targets, batch.lengths)
            loss = (forward_nll + backward_nll) / (2 * batch.n_tokens)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, progress["step"])
            torch.nn.utils.clip_grad_norm_(params, config.clip)
            optimizer.step()
            elapsed = time.perf_counter() - started
            progress["step"] += 1
            progress["batch"] += 1
            progress["tokens"] += batch.n_tokens * world_size
            progress["seconds"] += elapsed
            bar.update(1)
            bar.set_postfix(
                loss=f"{loss.item():.3f}",
                ppl=f"{math.exp(min(loss.item(), 50)):.1f}",
                tok_s=f"{batch.n_tokens * world_size / elapsed:.0f}",
                epoch=progress["epoch"],
            )
            if progress["step"] % config.eval_every == 0:
                _record(progress, model, heldout, config, device, rank, world_size, bar)
            if progress["step"] % config.checkpoint_every == 0:
                checkpoint()
        if progress["batch"] >= n_batches:
            progress["epoch"] += 1
            progress["batch"] = 0
    bar.close()
    if not progress["history"] or progress["history"][-1]["step"] != progress["step"]:
        _record(progress, model, heldout, config, device, rank, world_size, bar)
    checkpoint()
    train_tokens = _reduce_over_ranks(train_corpus.n_tokens, world_size, "sum", device)
    metrics = {
        **progress["history"][-1],
        "tokens_seen": progress["tokens"],
        "train_minutes": progress["seconds"] / 60,
        "epochs": progress["epoch"] + progress["batch"] / max(1, n_batches),
        "train_tokens": train_tokens,
        "heldout_tokens": heldout.n_tokens,
        "vocab_size": len(vocab),
        "parameters": sum(p.numel() for p in model.bilm.parameters()),
        "world_size": world_size,
        "device": str(device),
    }
    if rank == 0:
        _export(model, {"final": metrics, "history": progress["history"]}, out)
    if world_size > 1:
        dist.barrier()
    return metrics


def _export(model: BiLanguageModel, metrics: dict[str, Any], out: Path) -> None:
    """The biLM in the bilm-tf format with its vocabulary, the softmax (for ``init_from``) and the metrics."""
    model.bilm.save(out)
    with atomic_path(out / HEAD_NAME) as tmp:
        torch.save(model.softmax.state_dict(), tmp)
    write_text(out / "metrics.json", json.dumps(metrics, indent=1))


def _record(progress, model, heldout, config, device, rank, world_size, bar) -> None:
    """Evaluate held-out perplexity on rank 0 and append it to every rank's history."""
    entry = [None]
    if rank == 0:
        scores = evaluate(model, heldout, config.batch_tokens, device)
        entry[0] = {"step": progress["step"], "tokens": progress["tokens"], **{k: round(v, 3) for k, v in scores.items()}}
        bar.write(
            f"step {progress['step']}: held-out perplexity forward {scores['forward_ppl']:.1f}, "
            f"backward {scores['backward_ppl']:.1f}"
        )
    if world_size > 1:
        dist.broadcast_object_list(entry, src=0)
    progress["history"].append(entry[0])
