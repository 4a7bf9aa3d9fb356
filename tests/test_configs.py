"""Smoke tests of the eight training configs: a few ``spacy train`` steps on tiny data, then load and run.

The ELMo configs use the tiny random-weight parity biLM instead of the bundled model, the static
configs a vectors pipeline built here with ``spacy init vectors`` from a small word2vec text file.
The trained ELMo pipelines are also scored by ``spacy evaluate`` and by ``scripts/evaluate_run.py`` in fresh
processes (no ``--code``: the factory and the architecture come from entry points), which must agree.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import spacy
from spacy.cli.train import train

from spacy_elmo.pipeline.architectures import get_scalar_mix_weights

from .helpers import CONFIGS, NER_EXAMPLES, TEXTCAT_EXAMPLES

pytestmark = pytest.mark.slow  # runs spacy train

TASKS = ("ner", "textcat")
FEATURES = ("baseline", "static", "elmo", "static_elmo")
ROOT = Path(__file__).parent.parent


@pytest.mark.parametrize("features", FEATURES)
@pytest.mark.parametrize("task", TASKS)
def test_config_trains_loads_and_runs(workspace: Path, parity_files, task: str, features: str, tmp_path: Path):
    overrides = {
        "paths.train": str(workspace / task / "train.spacy"),
        "paths.dev": str(workspace / task / "dev.spacy"),
        "training.max_steps": 4,
        "training.eval_frequency": 2,
    }
    if "static" in features:
        overrides["paths.vectors"] = str(workspace / "static_model")
    if "elmo" in features:
        overrides["components.elmo.options_file"] = str(parity_files[0])
        overrides["components.elmo.weight_file"] = str(parity_files[1])
    train(CONFIGS / f"{task}_{features}.cfg", tmp_path, overrides=overrides)

    nlp = spacy.load(tmp_path / "model-last")
    assert nlp.pipe_names == (["elmo", task] if "elmo" in features else [task])
    doc = nlp(NER_EXAMPLES[0][0] if task == "ner" else TEXTCAT_EXAMPLES[0][0])
    if task == "textcat":
        assert set(doc.cats) == {"fresh", "rotten"}
        assert sum(doc.cats.values()) == pytest.approx(1.0, abs=1e-5)
    else:
        assert all(ent.label_ for ent in doc.ents)
    assert (nlp.vocab.vectors.shape[0] > 0) == ("static" in features)
    if "elmo" in features:
        assert doc._.elmo_layers.shape == (3, len(doc), 64)
        weights, gamma = get_scalar_mix_weights(nlp.get_pipe(task).model)
        assert weights.shape == (3,) and weights.sum() == pytest.approx(1.0, abs=1e-5)
        assert not numpy.allclose(weights, 1 / 3), "the scalar mix was not trained"
        metrics = tmp_path / "metrics.json"
        command = ["spacy", "evaluate", str(tmp_path / "model-last"), str(workspace / task / "dev.spacy")]
        subprocess.run([sys.executable, "-m", *command, "--output", str(metrics)], check=True)
        theirs = json.loads(metrics.read_text())
        mine_path, per_doc = tmp_path / "mine.json", tmp_path / "per_doc.json"
        command = [str(ROOT / "scripts" / "evaluate_run.py"), *command[2:], "--output", str(mine_path)]
        subprocess.run([sys.executable, *command, "--per-doc", str(per_doc)], check=True)
        mine, record = json.loads(mine_path.read_text()), json.loads(per_doc.read_text())
        keys = ["ents_p", "ents_r", "ents_f", "ents_per_type"] if task == "ner" else ["cats_score", "cats_macro_f"]
        assert {k: mine[k] for k in keys} == {k: theirs[k] for k in keys}
        n_docs = len(record["docs"] if task == "ner" else record["gold"])
        assert n_docs == len(NER_EXAMPLES if task == "ner" else TEXTCAT_EXAMPLES)
