"""Smoke tests of the six training configs: a few ``spacy train`` steps on tiny data, then load and run.

The ELMo configs use the tiny random-weight parity biLM instead of the bundled model, the static
configs a vectors pipeline built here with ``spacy init vectors`` from a small word2vec text file.
The trained ELMo pipelines are also scored by ``spacy evaluate`` in a fresh process (no ``--code``:
the factory and the architecture come from entry points).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import spacy
from spacy.cli.init_pipeline import init_vectors_cli
from spacy.cli.train import train
from spacy.tokens import Doc, DocBin
from spacy.training import offsets_to_biluo_tags

from spacy_elmo.pipeline.architectures import get_scalar_mix_weights

CONFIGS = Path(__file__).parent.parent / "configs"
TASKS = ("ner", "textcat")
FEATURES = ("baseline", "static", "elmo")

NER_EXAMPLES = [
    ("Barack Obama visited Paris yesterday", [(0, 12, "person"), (21, 26, "geo-loc")]),
    ("I love my new iPhone from Apple", [(14, 20, "product"), (26, 31, "company")]),
    ("Watching the Lakers game in Los Angeles tonight", [(13, 19, "sportsteam"), (28, 39, "geo-loc")]),
    ("Taylor Swift is on MTV again", [(0, 12, "person"), (19, 22, "company")]),
    ("nothing to see here lol", []),
    ("Going to London with Sarah", [(9, 15, "geo-loc"), (21, 26, "person")]),
]
TEXTCAT_EXAMPLES = [
    ("A smart , funny and moving film .", "fresh"),
    ("Dull , overlong and badly acted .", "rotten"),
    ("One of the best movies of the year .", "fresh"),
    ("A tedious mess with no redeeming qualities .", "rotten"),
    ("Charming performances carry this delightful story .", "fresh"),
    ("The plot makes no sense and the jokes fall flat .", "rotten"),
]


def _ner_docs(nlp) -> list[Doc]:
    docs = []
    for text, spans in NER_EXAMPLES:
        doc = nlp.make_doc(text)
        doc.ents = [doc.char_span(start, end, label=label) for start, end, label in spans]
        assert "-" not in offsets_to_biluo_tags(doc, spans)
        docs.append(doc)
    return docs


def _textcat_docs(nlp) -> list[Doc]:
    docs = []
    for text, label in TEXTCAT_EXAMPLES:
        doc = nlp.make_doc(text)
        doc.cats = {"fresh": float(label == "fresh"), "rotten": float(label == "rotten")}
        docs.append(doc)
    return docs


def _write_word2vec(path: Path, words: list[str], dim: int = 8) -> None:
    rng = numpy.random.RandomState(0)
    lines = [f"{len(words)} {dim}"]
    lines += [word + " " + " ".join(f"{x:.4f}" for x in rng.uniform(-1, 1, dim)) for word in words]
    path.write_text("\n".join(lines) + "\n", encoding="utf8")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Tiny ``{ner,textcat}/{train,dev}.spacy`` and a static vectors pipeline ``static_model``."""
    root = tmp_path_factory.mktemp("configs")
    nlp = spacy.blank("en")
    words = set()
    for task, make_docs in (("ner", _ner_docs), ("textcat", _textcat_docs)):
        docs = make_docs(nlp)
        words.update(token.text for doc in docs for token in doc)
        (root / task).mkdir()
        for split in ("train", "dev"):
            DocBin(docs=docs).to_disk(root / task / f"{split}.spacy")
    _write_word2vec(root / "w2v.txt", sorted(words))
    init_vectors_cli(
        lang="en",
        vectors_loc=root / "w2v.txt",
        output_dir=root / "static_model",
        prune=-1,
        truncate=0,
        mode="default",
        name=None,
        verbose=False,
        jsonl_loc=None,
        attr="ORTH",
    )
    return root


@pytest.mark.parametrize("features", FEATURES)
@pytest.mark.parametrize("task", TASKS)
def test_config_trains_loads_and_runs(workspace: Path, parity_files, task: str, features: str, tmp_path: Path):
    overrides = {
        "paths.train": str(workspace / task / "train.spacy"),
        "paths.dev": str(workspace / task / "dev.spacy"),
        "training.max_steps": 4,
        "training.eval_frequency": 2,
    }
    if features == "static":
        overrides["paths.vectors"] = str(workspace / "static_model")
    if features == "elmo":
        overrides["components.elmo.options_file"] = str(parity_files[0])
        overrides["components.elmo.weight_file"] = str(parity_files[1])
    train(CONFIGS / f"{task}_{features}.cfg", tmp_path, overrides=overrides)

    nlp = spacy.load(tmp_path / "model-last")
    assert nlp.pipe_names == (["elmo", task] if features == "elmo" else [task])
    doc = nlp(NER_EXAMPLES[0][0] if task == "ner" else TEXTCAT_EXAMPLES[0][0])
    if task == "textcat":
        assert set(doc.cats) == {"fresh", "rotten"}
        assert sum(doc.cats.values()) == pytest.approx(1.0, abs=1e-5)
    else:
        assert all(ent.label_ for ent in doc.ents)
    if features == "static":
        assert nlp.vocab.vectors.shape[0] > 0
    if features == "elmo":
        assert doc._.elmo_layers.shape == (3, len(doc), 64)
        weights, gamma = get_scalar_mix_weights(nlp.get_pipe(task).model)
        assert weights.shape == (3,) and weights.sum() == pytest.approx(1.0, abs=1e-5)
        assert not numpy.allclose(weights, 1 / 3), "the scalar mix was not trained"
        metrics = tmp_path / "metrics.json"
        command = ["spacy", "evaluate", str(tmp_path / "model-last"), str(workspace / task / "dev.spacy")]
        subprocess.run([sys.executable, "-m", *command, "--output", str(metrics)], check=True)
        assert ("ents_f" if task == "ner" else "cats_score") in json.loads(metrics.read_text())
