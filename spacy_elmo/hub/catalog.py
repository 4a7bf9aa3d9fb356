"""The table of released models shown by ``spacy-elmo models``."""

from __future__ import annotations

import torch

from ..bilm.model import BiLM
from .cache import cache_dir, remote_for
from .registry import MODELS, PINS, ReleasedModel, mirror_base


def parameter_count(model: ReleasedModel) -> int:
    """Parameters of the model's architecture (built on the meta device: no memory, no download)."""
    with torch.device("meta"):
        return sum(p.numel() for p in BiLM(model.options).parameters())


def download_size(model: ReleasedModel, parameters: int) -> str:
    """The pinned size of the weight file, else about 4 bytes (float32) per parameter."""
    pin = PINS.get(model.weights_path)
    return f"{pin.size / 1e6:.1f} MB" if pin else f"~{4 * parameters / 1e6:.0f} MB"


def is_cached(model: ReleasedModel) -> bool:
    base = mirror_base()
    return all(
        (cache_dir() / remote_for(base + path).cache_key).is_file() for path in (model.options_path, model.weights_path)
    )


def model_table() -> str:
    """One row per released model, aligned columns, and where the cache is."""
    rows = [("name", "layers", "dim", "parameters", "download", "cached", "trained on")]
    for name, model in MODELS.items():
        parameters = parameter_count(model)
        rows.append(
            (
                name,
                str(model.options.n_output_layers),
                str(model.options.output_dim),
                f"{parameters / 1e6:.1f}M",
                download_size(model, parameters),
                "yes" if is_cached(model) else "no",
                model.trained_on,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in rows]
    return "\n".join(lines + ["", f"cache: {cache_dir()}   base URL: {mirror_base()}"])
