"""What the report reads and how it averages: the feature sets and metrics, the per-seed JSON files of the runs,
mean ± sample std over seeds. Shared by ``scripts/report.py`` and ``scripts/report_charts.py``."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Dict, Sequence, Tuple

import numpy

TASKS = {"ner": "WNUT-16 NER (test)", "textcat": "Rotten Tomatoes fresh/rotten (test)"}
FEATURES = {
    "baseline": "baseline (tok2vec)",
    "static": "+ static word2vec",
    "elmo": "+ ELMo",
    "static_elmo": "+ word2vec + ELMo",
    "elmo_adapted": "+ ELMo (domain-adapted)",
}
COLORS = {
    "baseline": "#999999",
    "static": "#4c72b0",
    "elmo": "#dd8452",
    "static_elmo": "#8172b3",
    "elmo_adapted": "#55a868",
}
# (metric key in the spacy evaluate JSON, column title); the first one is the main score
METRICS = {
    "ner": [("ents_f", "F1"), ("ents_p", "precision"), ("ents_r", "recall")],
    "textcat": [("cats_macro_f", "macro F1"), ("cats_micro_f", "accuracy"), ("cats_macro_auc", "macro AUC")],
}
RUN_NAME = re.compile(r"(?P<task>ner|textcat)_(?P<features>\w+)$")
Runs = Dict[Tuple[str, str], Dict[int, dict]]


def read_per_seed(runs_dir: Path, filename: str) -> Runs:
    """``{(task, features): {seed: content}}`` of the JSON files ``<task>_<features>/seed<n>/<filename>``: the
    ``spacy evaluate`` test scores (``test_metrics.json``) or the run records of ``train_run.py`` (``run.json``)."""
    runs: Runs = defaultdict(dict)
    for path in sorted(runs_dir.glob(f"*/seed*/{filename}")):
        match = RUN_NAME.match(path.parent.parent.name)
        if match:
            seed = int(path.parent.name.removeprefix("seed"))
            runs[match["task"], match["features"]][seed] = json.loads(path.read_text())
    return runs


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (0.0 for a single value)."""
    array = numpy.asarray(values, dtype="float64")
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def sample_std(array: numpy.ndarray) -> numpy.ndarray:
    """Sample standard deviation over axis 0 (zeros for a single row)."""
    return array.std(axis=0, ddof=1) if len(array) > 1 else numpy.zeros(array.shape[1:])


def fmt(values: Sequence[float], scale: float = 100.0) -> str:
    """``mean ± std`` of ``values * scale`` with one decimal."""
    mean, std = mean_std([v * scale for v in values])
    return f"{mean:.1f} ± {std:.1f}"
