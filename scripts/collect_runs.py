"""Keep the small record of every finished run in the repository: ``results/runs`` mirrors ``runs`` with only
what the report reads, so the report can be regenerated (and seeds added) without the trained pipelines.

For ``<runs>/<task>_<features>/seed<n>/``: ``test_metrics.json`` (``scripts/evaluate_run.py`` on the test
split), ``per_doc.json`` (its per-document results, for the paired bootstrap), ``run.json`` (``train_run.py``'s
record, with the static vectors' checksum) and, for ELMo pipelines, ``mix.json`` (the listener's learned scalar-mix
weights and gamma, read from ``model-best``); for ``<runs>/adapt_<task>/``: ``metrics.json``. Existing records
of runs that are not in ``<runs>`` are kept (seeds trained earlier or on other machines).

    python scripts/collect_runs.py --runs runs --records results/runs
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import spacy

from spacy_elmo.pipeline.architectures import get_scalar_mix_weights
from spacy_elmo.util.atomic import write_text


def collect(runs: Path, records: Path) -> list[Path]:
    """Copy the records of every finished run in ``runs`` into ``records``; returns the run folders copied."""
    copied = []
    for metrics in sorted(runs.glob("*/seed*/test_metrics.json")):
        run, target = metrics.parent, records / metrics.parent.relative_to(runs)
        target.mkdir(parents=True, exist_ok=True)
        for name in ("test_metrics.json", "run.json", "per_doc.json"):
            if (run / name).is_file():
                shutil.copyfile(run / name, target / name)
        task = run.parent.name.split("_")[0]
        if "elmo" in run.parent.name and (run / "model-best").is_dir():
            nlp = spacy.load(run / "model-best", exclude=["elmo"])
            mix = get_scalar_mix_weights(nlp.get_pipe(task).model)
            if mix is not None:
                write_text(target / "mix.json", json.dumps({"weights": mix[0].tolist(), "gamma": mix[1]}) + "\n")
        copied.append(run)
    for metrics in sorted(runs.glob("adapt_*/metrics.json")):
        (records / metrics.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(metrics, records / metrics.parent.name / "metrics.json")
        copied.append(metrics.parent)
    return copied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="the training runs of this machine")
    parser.add_argument("--records", type=Path, default=Path("results/runs"), help="the records kept in git")
    args = parser.parse_args()
    for run in collect(args.runs, args.records):
        print(f"recorded {run}")


if __name__ == "__main__":
    main()
