"""A smoke run of the whole experiment that writes only under one scratch folder (default ``quick/``, ignored by
git): never into ``results/``, ``runs/`` or ``corpus/vectors``, so the committed report stays as it is.

    python scripts/quick_run.py [--output quick] [--steps 50] [--only report]

Needs the data (``spacy project run data`` and ``corpus``; ``spacy project run quick`` runs them first). On quick
settings, seed 0 only: word2vec vectors of width 50, one epoch over the first 20,000 corpus sentences; adaptation
of the bundled biLM for 5 steps of 1,024 tokens per task (100 dev lines held out); each feature set (baseline,
static, elmo, static_elmo, elmo_adapted, both tasks) trained ``--steps`` steps on the first 500 train and 200 dev
documents and evaluated on the first 500 test documents; then the report with 1,000 bootstrap resamples. Writes
``<output>/vectors``, ``<output>/adapt`` (task text), ``<output>/runs`` (pipelines, scores), ``<output>/results``
(run records, ``report.md``, charts). ``--only report`` redoes the last stage from ``<output>/runs``. The
similarity and word-sense steps are not part of it. Its scores say nothing about the features: they only show
that the steps run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
FEATURES = ("baseline", "static", "elmo", "static_elmo", "elmo_adapted")
TASKS = ("ner", "textcat")
VECTOR_SENTENCES = 20_000
TRAIN_DOCS, DEV_DOCS, TEST_DOCS = 500, 200, 500
ADAPT_STEPS, ADAPT_BATCH_TOKENS, ADAPT_HELDOUT_LINES = 5, 1024, 100
RESAMPLES = 1_000


def run(command: List[str]) -> None:
    """Run one step from the repository root; a failed step ends the run with its command."""
    print("+", " ".join(command), flush=True)
    if subprocess.run(command, cwd=ROOT).returncode != 0:
        sys.exit(f"error: quick run step failed: {' '.join(command)}")


def python(script: str, *args: str) -> List[str]:
    return [sys.executable, str(SCRIPTS / script), *args]


def check_output(output: Path) -> None:
    """Refuse an output folder that is, or holds, or lies in the committed results or the full run's folders
    (``output`` as the user gave it, relative to the current folder)."""
    resolved = output.resolve()
    for kept in ("results", "runs", "corpus", "configs", "scripts"):
        protected = (ROOT / kept).resolve()
        if resolved == protected or protected in resolved.parents or resolved in protected.parents:
            sys.exit(f"error: --output {output}: the quick run never writes into or over {kept}/ (use e.g. quick/)")


def check_inputs() -> None:
    needed = [ROOT / "corpus" / task / f"{split}.spacy" for task in TASKS for split in ("train", "dev", "test")]
    needed.append(ROOT / "corpus" / "pretrain" / "train.txt")
    missing = [str(path.relative_to(ROOT)) for path in needed if not path.is_file()]
    if missing:
        sys.exit(
            f"error: {missing[0]} missing ({len(missing)} inputs): run `spacy project run data` and "
            "`spacy project run corpus` first (or `spacy project run quick`)"
        )


def vectors(output: Path) -> Path:
    sample = output / "vectors" / "corpus_sample.txt"
    sample.parent.mkdir(parents=True, exist_ok=True)
    with (ROOT / "corpus" / "pretrain" / "train.txt").open(encoding="utf-8") as source:
        sample.write_text("".join(line for _, line in zip(range(VECTOR_SENTENCES), source)), encoding="utf-8")
    run(
        python(
            "train_vectors.py",
            "--corpus",
            str(sample),
            "--output",
            str(output / "vectors"),
            "--dim",
            "50",
            "--epochs",
            "1",
        )
    )
    return output / "vectors" / "static_model"


def adapt(output: Path, task: str) -> Path:
    text = output / "adapt"
    for split in ("train", "dev"):
        run(python("task_text.py", str(ROOT / "corpus" / task / f"{split}.spacy"), str(text / f"{task}_{split}.txt")))
    heldout = text / f"{task}_dev.txt"
    heldout.write_text(
        "".join(heldout.read_text(encoding="utf-8").splitlines(keepends=True)[:ADAPT_HELDOUT_LINES]), encoding="utf-8"
    )
    target = output / "runs" / f"adapt_{task}"
    run(
        [
            sys.executable,
            "-m",
            "spacy_elmo",
            "adapt",
            "default",
            str(text / f"{task}_train.txt"),
            str(target),
            "--heldout",
            str(heldout),
            "--max-steps",
            str(ADAPT_STEPS),
            "--batch-tokens",
            str(ADAPT_BATCH_TOKENS),
            "--eval-every",
            str(ADAPT_STEPS),
            "--checkpoint-every",
            str(ADAPT_STEPS),
            "--device",
            "cpu",
            "--seed",
            "0",
        ]
    )
    return target


def train_and_evaluate(output: Path, task: str, features: str, steps: int, static: Path, adapted: Path) -> None:
    folder = output / "runs" / f"{task}_{features}" / "seed0"
    config = ROOT / "configs" / f"{task}_{features.replace('_adapted', '')}.cfg"
    overrides = [
        "--system.seed",
        "0",
        "--training.max_steps",
        str(steps),
        "--training.eval_frequency",
        str(max(1, steps // 2)),
        "--corpora.train.limit",
        str(TRAIN_DOCS),
        "--corpora.dev.limit",
        str(DEV_DOCS),
    ]
    if "static" in features:
        overrides += ["--paths.vectors", str(static)]
    if features == "elmo_adapted":
        overrides += [
            "--components.elmo.options_file",
            str(adapted / "options.json"),
            "--components.elmo.weight_file",
            str(adapted / "weights.hdf5"),
        ]
    run(python("train_run.py", str(config), str(folder), *overrides))
    run(
        python(
            "evaluate_run.py",
            str(folder / "model-best"),
            str(ROOT / "corpus" / task / "test.spacy"),
            "--output",
            str(folder / "test_metrics.json"),
            "--per-doc",
            str(folder / "per_doc.json"),
            "--limit",
            str(TEST_DOCS),
        )
    )


def report(output: Path) -> None:
    records = output / "results" / "runs"
    run(python("collect_runs.py", "--runs", str(output / "runs"), "--records", str(records)))
    run(
        python(
            "report.py",
            "--runs",
            str(records),
            "--output",
            str(output / "results"),
            "--similarity",
            str(output / "results" / "similarity.json"),
            "--word-sense",
            str(output / "results" / "word_sense.json"),
            "--adapt-sweep",
            str(output / "results" / "adapt_sweep_ner.json"),
            "--resamples",
            str(RESAMPLES),
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path("quick"), help="scratch folder (never results/)")
    parser.add_argument("--steps", type=int, default=50, help="training steps per run")
    parser.add_argument("--only", choices=["all", "report"], default="all", help="report: only the last stage")
    args = parser.parse_args()
    check_output(args.output)
    output = args.output.resolve()
    start = time.perf_counter()
    if args.only == "all":
        check_inputs()
        static = vectors(output)
        for task in TASKS:
            adapted = adapt(output, task)
            for features in FEATURES:
                train_and_evaluate(output, task, features, args.steps, static, adapted)
    report(output)
    print(f"quick run: {time.perf_counter() - start:.0f} s; report in {output / 'results' / 'report.md'}")


if __name__ == "__main__":
    main()
