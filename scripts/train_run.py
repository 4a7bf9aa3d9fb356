"""Run one ``spacy train`` and record how it ended: steps reached, best step, wall time.

    python scripts/train_run.py CONFIG OUTPUT [spacy train overrides ...]

e.g. ``python scripts/train_run.py configs/ner_elmo.cfg runs/ner_elmo/seed0 --system.seed 0``. The run stops
when the dev score has not improved for ``training.patience`` steps or at ``training.max_steps``. Besides
spaCy's ``model-best`` / ``model-last``, OUTPUT gets ``train_log.jsonl`` (one line per evaluation, from
``spacy.ConsoleLogger.v3``) and ``run.json``: ``wall_seconds``, ``steps`` (last evaluated step), ``best_step``,
``best_dev_score``, ``patience``, ``max_steps``, ``stopped_by`` ("patience" or "max_steps"), ``threads``,
the CPU model and, for a config with static vectors, ``vectors`` (their path) and ``vectors_sha256`` (the checksum
of their table, ``scripts/vectors_checksum.py``), so runs on different vectors are never mixed up. A rerun starts
the run over (the old log is removed first).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import List

from spacy.util import load_config

from spacy_elmo.bilm.kernels import cpu_name
from spacy_elmo.util.atomic import write_text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vectors_checksum import vectors_checksum  # noqa: E402  (scripts/, beside this file)


def read_log(path: Path) -> List[dict]:
    """The evaluations ``spacy.ConsoleLogger.v3`` wrote, in order."""
    if not path.is_file():
        sys.exit(f"error: {path}: no training log (did spacy train evaluate at least once?)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path)
    parser.add_argument("output", type=Path)
    args, overrides = parser.parse_known_args()
    if not args.config.is_file():
        sys.exit(f"error: {args.config}: no such config file")
    log = args.output / "train_log.jsonl"
    log.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "spacy",
        "train",
        str(args.config),
        "--output",
        str(args.output),
        "--training.logger.output_file",
        str(log),
        *overrides,
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - start
    evaluations = read_log(log)
    config = load_config(args.output / "model-last" / "config.cfg", interpolate=True)
    training = config["training"]
    best = max(reversed(evaluations), key=lambda e: e["score"])  # the latest of equal scores, as spaCy picks
    steps = evaluations[-1]["step"]
    record = {
        "wall_seconds": round(wall, 1),
        "steps": steps,
        "best_step": best["step"],
        "best_dev_score": best["score"],
        "patience": training["patience"],
        "max_steps": training["max_steps"],
        "eval_frequency": training["eval_frequency"],
        "stopped_by": "patience" if steps < training["max_steps"] else "max_steps",
        "threads": int(os.environ.get("OMP_NUM_THREADS", "0")) or os.cpu_count(),
        "cpu": cpu_name(),
        "overrides": overrides,
    }
    vectors = config["initialize"].get("vectors")
    if vectors:
        record["vectors"] = str(vectors)
        record["vectors_sha256"] = vectors_checksum(Path(vectors))
    write_text(args.output / "run.json", json.dumps(record, indent=1))
    print(
        f"{args.output}: {steps} steps ({record['stopped_by']}), best dev {best['score']:.4f} at step "
        f"{best['step']}, {wall:.0f} s"
    )


if __name__ == "__main__":
    main()
