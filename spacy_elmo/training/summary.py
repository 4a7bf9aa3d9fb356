"""The lines that tell what a run did to the biLM: its summary, and the warning when it was barely fine-tuned."""

from __future__ import annotations

from typing import Any

#: a run that continues a trained biLM and fine-tunes it fewer steps than this ends with a warning
FEW_FINE_TUNING_STEPS = 100


def fine_tuning_warning(metrics: dict[str, Any]) -> str | None:
    """One line when a run that continued a trained biLM (not ``head_only``) fine-tuned it for no step, or
    for fewer than :data:`FEW_FINE_TUNING_STEPS`; ``metrics``: those :func:`~.loop.train` returns."""
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
    """What a run did to the biLM, in one line, from the metrics :func:`~.loop.train` returns."""
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
