"""Training checkpoints: plain tensors, numbers and strings only, so they load with ``weights_only=True``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..util.atomic import atomic_path

CHECKPOINT_NAME = "checkpoint.pt"


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
