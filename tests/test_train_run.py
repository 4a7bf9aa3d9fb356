"""``scripts/train_run.py``: one ``spacy train`` of a shipped config, and the record of how the run ended."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin

from .helpers import ner_docs, tiny_sentence

pytestmark = pytest.mark.slow  # runs spacy train

ROOT = Path(__file__).parent.parent


def _corpus(path: Path) -> Path:
    DocBin(docs=ner_docs(spacy.blank("en"))).to_disk(path)
    return path


def _train_run(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(ROOT / "scripts" / "train_run.py"), *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT)


def test_train_run_records_steps_best_step_and_log(tmp_path: Path):
    data = _corpus(tmp_path / "data.spacy")
    output = tmp_path / "run"
    result = _train_run(
        str(ROOT / "configs" / "ner_baseline.cfg"),
        str(output),
        "--paths.train",
        str(data),
        "--paths.dev",
        str(data),
        "--training.max_steps",
        "6",
        "--training.eval_frequency",
        "2",
        "--system.seed",
        "0",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((output / "run.json").read_text())
    log = [json.loads(line) for line in (output / "train_log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [0, 2, 4, 6]
    best = max(entry["score"] for entry in log)
    assert record["steps"] == 6 and record["max_steps"] == 6 and record["stopped_by"] == "max_steps"
    assert record["best_step"] == max(entry["step"] for entry in log if entry["score"] == best)
    assert record["best_dev_score"] == best
    assert record["patience"] == 1000 and record["eval_frequency"] == 2
    assert record["wall_seconds"] > 0 and record["overrides"][-2:] == ["--system.seed", "0"]
    assert (output / "model-best" / "meta.json").is_file()


def test_train_run_names_a_missing_config(tmp_path: Path):
    result = _train_run(str(tmp_path / "nope.cfg"), str(tmp_path / "run"))
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {tmp_path / 'nope.cfg'}: no such config file"


def test_static_run_records_the_checksum_of_its_vectors(workspace: Path, tmp_path: Path):
    output = tmp_path / "run"
    data = str(workspace / "ner" / "train.spacy")
    result = _train_run(
        str(ROOT / "configs" / "ner_static.cfg"),
        str(output),
        *("--paths.train", data, "--paths.dev", data, "--paths.vectors", str(workspace / "static_model")),
        *("--training.max_steps", "2", "--training.eval_frequency", "2"),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((output / "run.json").read_text())
    table = (workspace / "static_model" / "vocab" / "vectors").read_bytes()
    assert record["vectors"] == str(workspace / "static_model")
    assert record["vectors_sha256"] == hashlib.sha256(table).hexdigest()


def test_word2vec_vectors_are_the_same_every_time(tmp_path: Path):
    # two trainings in separate processes (different PYTHONHASHSEED) give the same vector table, and the checksum
    # in vectors.json is that table's
    pytest.importorskip("gensim", reason='word2vec: pip install "spacy-elmo[project]"')
    rng = random.Random(0)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(tiny_sentence(rng) for _ in range(3000)) + "\n")
    records = []
    for hash_seed in ("1", "2"):
        command = [sys.executable, str(ROOT / "scripts" / "train_vectors.py"), "--corpus", str(corpus)]
        command += ["--output", str(tmp_path / hash_seed), "--dim", "16", "--epochs", "2", "--min-count", "1"]
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
        assert result.returncode == 0, result.stderr[-2000:]
        records.append(json.loads((tmp_path / hash_seed / "vectors.json").read_text()))
    tables = [(tmp_path / seed / "static_model" / "vocab" / "vectors").read_bytes() for seed in ("1", "2")]
    assert tables[0] == tables[1]
    assert records[0]["sha256"] == records[1]["sha256"] == hashlib.sha256(tables[0]).hexdigest()
    assert records[0]["workers"] == 1 and records[0]["words"] == len(set(corpus.read_text().split()))
