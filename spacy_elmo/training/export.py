"""A trained run written out: the biLM in the bilm-tf format, its softmax and the run's metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..bilm.model import HEAD_NAME
from ..util.atomic import atomic_path, write_text
from .config import METRICS_NAME
from .lm import BiLMWithSoftmax


def export_model(model: BiLMWithSoftmax, metrics: dict[str, Any], out: Path) -> None:
    """The biLM in the bilm-tf format with its vocabulary, the softmax (for ``init_from``) and the metrics."""
    model.bilm.save(out)
    with atomic_path(out / HEAD_NAME) as tmp:
        torch.save(model.softmax.state_dict(), tmp)
    write_text(out / METRICS_NAME, json.dumps(metrics, indent=1))
