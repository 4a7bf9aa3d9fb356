"""``scripts/train_run.py``: one ``spacy train`` of a shipped config, and the record of how the run ended."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin

from .helpers import ner_docs

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
