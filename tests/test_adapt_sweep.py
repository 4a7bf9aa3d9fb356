"""``scripts/adapt_sweep.py``: the adaptation recipe sweep runs end to end (``--smoke``), resumes, and refuses a
grid it cannot run with one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin

from .helpers import NER_EXAMPLES, ner_docs

pytestmark = pytest.mark.slow  # spacy-elmo adapt and spacy train in subprocesses

ROOT = Path(__file__).parent.parent


def _inputs(folder: Path) -> dict:
    DocBin(docs=ner_docs(spacy.blank("en"))).to_disk(folder / "ner.spacy")
    (folder / "train.txt").write_text("\n".join(text for text, _ in NER_EXAMPLES * 2) + "\n")
    (folder / "dev.txt").write_text("Sarah visited London\nnothing here\n")
    return {"train": folder / "train.txt", "dev": folder / "dev.txt", "spacy": folder / "ner.spacy"}


def _sweep(inputs: dict, folder: Path, *grid: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        str(ROOT / "scripts" / "adapt_sweep.py"),
        "--train-text",
        str(inputs["train"]),
        "--heldout-text",
        str(inputs["dev"]),
        "--config",
        str(ROOT / "configs" / "ner_elmo.cfg"),
        "--train-spacy",
        str(inputs["spacy"]),
        "--dev-spacy",
        str(inputs["spacy"]),
        "--runs",
        str(folder / "runs"),
        "--output",
        str(folder / "sweep"),
        "--smoke",
        *grid,
    ]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT)


def test_sweep_adapts_trains_tabulates_and_resumes(tmp_path: Path):
    inputs = _inputs(tmp_path)
    grid = ("--epochs", "1", "--mix", "0", "--freeze", "token")
    result = _sweep(inputs, tmp_path, *grid)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads((tmp_path / "sweep.json").read_text())["settings"]
    assert [row["setting"] for row in rows] == ["e1_mix0_token"]
    row = rows[0]
    # one epoch of the 12-line text is one batch of --smoke's 256 tokens (its --max-steps 2 is not reached)
    assert row["fine_tuned_steps"] == 1 and row["freeze"] == "token" and row["mix_ratio"] == 0
    # --smoke trains at most 4 steps, evaluating every 2, with a patience of 2
    assert row["task_steps"] in (2, 4) and row["task_best_step"] <= row["task_steps"]
    assert 0.0 <= row["dev_score"] <= 1.0
    assert row["dev_ppl"] > 1 and row["dev_ppl_before"] > 1
    table = (tmp_path / "sweep.md").read_text()
    assert "**Smoke run**" in table and "| e1_mix0_token | 1 | 0 | token | 1 |" in table
    assert "Best by dev ents_f: `e1_mix0_token`" in table

    weights = tmp_path / "runs" / "e1_mix0_token" / "bilm" / "weights.hdf5"
    stamp = weights.stat().st_mtime_ns
    again = _sweep(inputs, tmp_path, *grid)
    assert again.returncode == 0, again.stderr[-2000:]
    assert weights.stat().st_mtime_ns == stamp  # a finished setting is not adapted again
    assert json.loads((tmp_path / "sweep.json").read_text())["settings"] == rows


def test_sweep_refuses_more_than_eight_settings(tmp_path: Path):
    result = _sweep(
        _inputs(tmp_path), tmp_path, "--epochs", "1", "2", "3", "--mix", "0", "--freeze", "none", "token", "token+lstm1"
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "error: 9 settings; the sweep runs at most 8"


def test_sweep_needs_a_mix_corpus_for_a_mix_ratio(tmp_path: Path):
    result = _sweep(_inputs(tmp_path), tmp_path, "--epochs", "1", "--mix", "0.5", "--freeze", "none")
    assert result.returncode == 1
    assert result.stderr.strip() == "error: a mix ratio above 0 needs --mix-corpus (a file); found None"
