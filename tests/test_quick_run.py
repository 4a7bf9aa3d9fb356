"""``scripts/quick_run.py``: the quick run writes only under its scratch folder. Its report stage runs on small
fake runs and must leave every tracked file of the repository as it was; output folders over the committed
results are refused."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy
import pytest

pytestmark = pytest.mark.slow  # spawns the report process
pytest.importorskip("matplotlib", reason='the report draws charts: pip install "spacy-elmo[project]"')

ROOT = Path(__file__).parent.parent


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def _tracked_state() -> tuple[str, dict[str, str]]:
    """``git status --porcelain`` and the SHA-256 of every tracked file (so a file already modified before the
    test that the test changes again is caught too)."""
    files = [name for name in _git("ls-files", "-z").split("\0") if name and (ROOT / name).is_file()]
    return _git("status", "--porcelain"), {
        name: hashlib.sha256((ROOT / name).read_bytes()).hexdigest() for name in files
    }


def _fake_run(folder: Path, task: str, seed: int, rng: numpy.random.Generator) -> None:
    folder.mkdir(parents=True)
    n = 200
    if task == "ner":
        found = rng.random(n) < 0.4
        docs = [[[0, int(f), int(rng.random() < 0.2), int(not f)]] for f in found]
        record = {"task": "ner", "test_sha256": "fake", "labels": ["person"], "docs": docs}
        tp, fp, fn = (sum(doc[0][k] for doc in docs) for k in (1, 2, 3))
        p, r = tp / (tp + fp), tp / (tp + fn)
        metrics = {
            "ents_p": p,
            "ents_r": r,
            "ents_f": 2 * p * r / (p + r),
            "speed": 1000.0,
            "ents_per_type": {"person": {"p": p, "r": r, "f": 2 * p * r / (p + r)}},
        }
    else:
        gold = [i % 2 for i in range(n)]
        pred = [g if rng.random() < 0.7 else 1 - g for g in gold]
        record = {"task": "textcat", "test_sha256": "fake", "labels": ["fresh", "rotten"], "gold": gold, "pred": pred}
        metrics = {"cats_macro_f": 0.7, "cats_micro_f": 0.7, "cats_macro_auc": 0.75, "speed": 1000.0}
    run = {
        "wall_seconds": 1.0,
        "steps": 50,
        "best_step": 50,
        "best_dev_score": 0.5,
        "patience": 1000,
        "max_steps": 50,
        "eval_frequency": 25,
        "stopped_by": "max_steps",
        "threads": 1,
        "cpu": "test",
        "overrides": [],
    }
    if "static" in folder.parent.name:
        run["vectors_sha256"] = "0" * 64
    (folder / "per_doc.json").write_text(json.dumps(record))
    (folder / "test_metrics.json").write_text(json.dumps(metrics))
    (folder / "run.json").write_text(json.dumps(run))


def test_report_stage_writes_only_under_the_scratch_folder():
    scratch = ROOT / "quick" / f"test-{uuid.uuid4().hex[:8]}"
    rng = numpy.random.default_rng(0)
    for task in ("ner", "textcat"):
        for features in ("baseline", "static", "elmo", "static_elmo"):
            for seed in (0, 1):
                _fake_run(scratch / "runs" / f"{task}_{features}" / f"seed{seed}", task, seed, rng)
    before = _tracked_state()
    try:
        command = [sys.executable, str(ROOT / "scripts" / "quick_run.py"), "--output", str(scratch), "--only", "report"]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-3000:]
        report = (scratch / "results" / "report.md").read_text()
        assert "## Which differences are real" in report and "does ELMo add to static vectors?" in report
        assert (scratch / "results" / "differences.png").stat().st_size > 0
        assert (scratch / "results" / "runs" / "ner_static_elmo" / "seed1" / "per_doc.json").is_file()
        rows = json.loads((scratch / "results" / "significance.json").read_text())
        assert {(row["task"], row["a"], row["b"]) for row in rows} >= {
            ("ner", "static_elmo", "static"),
            ("textcat", "elmo", "baseline"),
        }
        assert _tracked_state() == before
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.mark.parametrize("output", ["results", "results/quick", "runs/x", "."])
def test_output_over_committed_results_is_refused(output: str):
    command = [sys.executable, str(ROOT / "scripts" / "quick_run.py"), "--output", output, "--only", "report"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: --output {output}: ")
