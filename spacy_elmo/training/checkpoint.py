"""Training checkpoints: plain tensors, numbers and strings only, so they load with ``weights_only=True``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from ..util.atomic import atomic_path

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
#: what every checkpoint of a training run holds
CHECKPOINT_KEYS = ("model", "optimizer", "progress", "rng", "config", "options", "vocab")


def save_checkpoint(state: dict[str, Any], directory: str | Path) -> Path:
    """Atomically write ``state`` as ``directory/checkpoint.pt``; a killed write leaves the old one intact."""
    path = Path(directory) / CHECKPOINT_NAME
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_checkpoint(directory: str | Path) -> dict[str, Any] | None:
    """The last checkpoint in ``directory``, or ``None`` when there is none."""
    path = Path(directory) / CHECKPOINT_NAME
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or foreign files
        raise ValueError(f"{path}: not a readable spacy-elmo checkpoint ({err})") from None


def checkpoint_to_resume(directory: Path, train_file: str, rank: int) -> dict[str, Any] | None:
    """The last checkpoint in ``directory``, if any; a ``ValueError`` when it lacks an entry or was trained on
    another file."""
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
    if trained_on != train_file:
        raise ValueError(f"{directory}: the checkpoint was trained on {trained_on}, not {train_file}")
    return state
