"""The table of released models shown by ``spacy-elmo models``."""

from __future__ import annotations

import torch

from ..bilm.manylangs_format import SHIPPED_CONFIGS, parse_architecture
from ..bilm.model import BiLM
from . import manylangs_releases
from .cache import cache_dir, remote_for
from .releases import MODELS, PINS, ReleasedModel, mirror_base


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
    options, _ = parse_architecture(SHIPPED_CONFIGS["cnn_50_100_512_4096_sample.json"], "the released architecture")
    with torch.device("meta"):  # ELMoForManyLangs' one architecture, plus a word embedding of its vocabulary
        shared = sum(p.numel() for p in BiLM(options).parameters())
    for name, released in manylangs_releases.MANY_LANGS.items():
        cached = "yes" if manylangs_releases.is_cached(name) else "no"
        rows.append((name, "3", "1024", f"{shared / 1e6:.1f}M+words", "zip", cached, released.language))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in rows]
    return "\n".join(
        lines
        + [
            "",
            f"cache: {cache_dir()}   base URL: {mirror_base()}   "
            f"many-langs base URL: {manylangs_releases.many_langs_base()}",
        ]
    )
