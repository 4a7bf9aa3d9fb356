"""Where a training run stands (steps, epochs, phase, held-out history): saved in every checkpoint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PHASES = ("head", "full")

#: fields a checkpoint may lack (written before the phases, or their budgets, existed): they take their defaults
_OPTIONAL = ("phase", "phase_start", "head_ppl", "phase_epoch")


@dataclass
class Progress:
    """The counters of a run. ``phase``: ``"head"`` (the softmax alone, the biLM frozen) or ``"full"``
    (the biLM trains too), which began at step ``phase_start`` and epoch ``phase_epoch`` (the fine-tuning's
    budget counts from there); ``head_ppl``: the warm-up's last held-out perplexity (its stopping rule
    compares against it); ``history``: one entry per held-out evaluation."""

    phase: str
    step: int = 0
    epoch: int = 0
    batch: int = 0  # batches of the current epoch already trained
    tokens: int = 0  # tokens trained on, all processes together
    seconds: float = 0.0  # time spent in training steps
    history: list[dict[str, Any]] = field(default_factory=list)
    phase_start: int = 0
    head_ppl: float = 0.0
    phase_epoch: int = 0

    @property
    def fine_tuned_steps(self) -> int:
        """Steps that trained the biLM (0 while in the head phase)."""
        return self.step - self.phase_start if self.phase == "full" else 0

    @property
    def head_steps(self) -> int:
        """Steps that trained the softmax alone, the biLM frozen."""
        return self.phase_start if self.phase == "full" else self.step

    def phase_epochs(self, n_batches: int) -> float:
        """Passes over the training text in the current phase (``n_batches`` batches to a pass)."""
        return self.epoch - self.phase_epoch + self.batch / max(1, n_batches)

    def to_checkpoint(self) -> dict[str, Any]:
        """Plain numbers, strings, lists and dicts (loadable with ``weights_only=True``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_checkpoint(cls, state: Any, phase: str, path: Path) -> Progress:
        """The progress saved in the checkpoint ``path`` (``state``); ``phase`` for a checkpoint written
        before the phases existed. A ``ValueError`` naming ``path`` and the missing or unknown entries."""
        if not isinstance(state, dict):
            raise ValueError(f"{path}: the checkpoint's progress is not a dict (found {type(state).__name__})")
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [name for name in names if name not in state and name not in _OPTIONAL]
        unknown = sorted(set(state) - set(names))
        if missing or unknown:
            found = ", ".join(
                f"{kind} {', '.join(keys)}" for kind, keys in (("lacks", missing), ("has unknown", unknown)) if keys
            )
            raise ValueError(f"{path}: cannot resume: the checkpoint's progress {found}")
        progress = cls(phase=phase, **{name: value for name, value in state.items() if name != "phase"})
        progress.phase = state.get("phase", phase)
        if progress.phase not in PHASES:
            raise ValueError(f"{path}: cannot resume: unknown phase {progress.phase!r} (expected one of {PHASES})")
        return progress
