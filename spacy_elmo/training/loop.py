"""The training loop of ``pretrain`` and ``adapt``: forward + backward LM loss, clipping, evaluation,
checkpoints, resume, DDP, and the head warm-up phase (the softmax alone, the biLM frozen)."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm import tqdm

from ..bilm.options import BiLMOptions
from .build import autocasts, build_data, build_model, build_optimizer, build_progress, choose_vocab, input_files
from .checkpoint import checkpoint_to_resume, save_checkpoint
from .config import TrainConfig
from .corpus import EncodedCorpus, read_sentences
from .distributed import join_process_group, reduce_over_ranks, training_device
from .divergence import Diverged, check_weights, divergence_message
from .evaluation import evaluate
from .export import export_model
from .lm import BiLMWithSoftmax
from .progress import Progress
from .summary import fine_tuning_warning, summary_line

logger = logging.getLogger(__name__)


def learning_rate(config: TrainConfig, step: int, start: int = 0) -> float:
    """The rate for step ``step`` (0-based) of a phase that began at step ``start``: linear warm-up over
    ``warmup_steps``, then constant or linear decay to zero ``max_steps`` steps after ``start``. A function
    of the steps alone, so a resumed run follows the same schedule."""
    rate = config.lr * min(1.0, (step - start + 1) / max(1, config.warmup_steps))
    if config.lr_schedule == "linear":
        rate *= max(0.0, 1.0 - (step - start) / max(1, config.max_steps))
    return rate


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
    rank, world_size = join_process_group()
    device = training_device(config.device)
    out = Path(config.output_dir)
    state = checkpoint_to_resume(out / "checkpoints", config.train_file, rank) if resume else None
    run = _start(config, state, rank, world_size, device, out)
    progress = run.progress
    warms_up = config.head_warmup and not config.head_only
    total = (config.max_steps or None) if not warms_up else None  # the warm-up's length is not known ahead
    bar = tqdm(total=total, initial=progress.step, disable=rank != 0, unit="step")
    try:  # the bar ends its line before any error line (a diverged run) is printed
        if run.starts_trained:  # the trained biLM's perplexity before any step
            run.record(bar)
            progress.head_ppl = progress.history[-1]["ppl"]
        run.model.train()
        n_batches = run.train_epochs(bar)
    finally:
        bar.close()
    if not progress.history or progress.history[-1]["step"] != progress.step:
        run.record(bar)
    run.checkpoint()
    metrics = run.final_metrics(n_batches)
    if not all(math.isfinite(v) for k, v in metrics.items() if k.endswith("ppl") and isinstance(v, float)):
        raise Diverged(run.diverged(f"the held-out perplexity is {metrics.get('ppl')}"))
    if rank == 0:
        export_model(run.model, {"final": metrics, "history": progress.history}, out)
        logger.info("%s; exported to %s", summary_line(metrics), out)
        warning = fine_tuning_warning(metrics)
        if warning:
            logger.warning(warning)
    if world_size > 1:
        dist.barrier()
    return metrics


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
    model: BiLMWithSoftmax
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
            n_batches = reduce_over_ranks(len(plan), self.world_size, "min", self.device)
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
        if not torch.isfinite(loss):
            raise Diverged(self.diverged(f"the training loss is {loss.item()}"))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # frozen: the biLM's gradients stay None, so the optimizer leaves it untouched
        rate = config.head_lr if frozen else learning_rate(config, progress.step, progress.phase_start)
        for group in self.optimizer.param_groups:
            group["lr"] = rate * group.get("lr_factor", 1.0)
        norm = torch.nn.utils.clip_grad_norm_(self.params, config.clip)
        if not torch.isfinite(norm):
            raise Diverged(self.diverged(f"the gradient norm is {norm.item()}"))
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
            if not math.isfinite(scores["ppl"]):
                raise Diverged(self.diverged(f"the held-out perplexity is {scores['ppl']}"))
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

    def check_finite(self) -> None:
        check_weights(self.model, self.diverged)

    def diverged(self, what: str) -> str:
        return divergence_message(self.config, self.progress.step, what)

    def checkpoint(self) -> None:
        self.check_finite()  # a checkpoint holds no NaN weights: a resume starts from a sound model
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
        train_tokens = reduce_over_ranks(self.train_tokens, self.world_size, "sum", self.device)
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
            "continues_trained": bool(config.weight_file or config.init_from),
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
    options_file, weight_file, vocab_file, head_file = input_files(config)
    options = BiLMOptions.from_json(state["options"]) if state else BiLMOptions.read(options_file)
    torch.manual_seed(config.seed)
    train_sentences = read_sentences(config.train_file, config.max_length, rank, world_size)
    vocab = choose_vocab(config, state, vocab_file, train_sentences, world_size)
    mix_sentences = read_sentences(config.mix_file, config.max_length, rank, world_size) if config.mix_file else []
    train_corpus, heldout = build_data(config, train_sentences + mix_sentences, vocab, options)
    model = build_model(config, state, options, vocab, (options_file, weight_file, vocab_file, head_file), rank)
    model = model.to(device)
    params = list(model.parameters())
    optimizer = build_optimizer(config, model)
    progress = build_progress(config, state, out)
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
        autocasts=autocasts(config, device),
        starts_trained=bool(weight_file and not state),
        n_train=len(train_sentences),
        train_tokens=sum(len(sentence) + 1 for sentence in train_sentences),  # predictions per direction
    )
