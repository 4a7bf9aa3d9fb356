"""Wall time of ``spacy train`` for the ELMo NER config of two checkouts (e.g. without and with the sequence cache),
next to the baseline.

Runs, one after another, each with ``OMP_NUM_THREADS=1`` and the same seed, steps and data:

1. ``before``: ``configs/ner_elmo.cfg`` of the checkout ``--before`` (a ``git worktree`` of the commit to compare
   against), run from that checkout so it imports its own code;
2. ``after``: ``configs/ner_elmo.cfg`` of this checkout (sequence cache + warm-up);
3. ``baseline``: ``configs/ner_baseline.cfg`` of this checkout.

It prints the wall times, the ratios, the final scores (``model-best`` / ``model-last`` meta) and
whether the ``before`` and ``after`` pipelines are identical (scores and the bytes of the trained
``ner`` model), plus the CPU model and the load averages around each run; all of it also goes to
``OUTPUT/bench_train.json``.

    git worktree add --detach /tmp/before COMMIT
    python benchmarks/bench_train.py --before /tmp/before --output runs/bench_train
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from machine import cpu_model, load_average

ROOT = Path(__file__).resolve().parent.parent


def train(checkout: Path, config: str, output: Path, args: argparse.Namespace) -> dict:
    """One ``spacy train`` run from ``checkout``: wall seconds, load averages, final scores."""
    command = [
        sys.executable,
        "-m",
        "spacy",
        "train",
        config,
        "--output",
        str(output),
        "--system.seed",
        str(args.seed),
        "--training.max_steps",
        str(args.max_steps),
        "--training.eval_frequency",
        str(args.eval_frequency),
        "--paths.train",
        str(args.train),
        "--paths.dev",
        str(args.dev),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(checkout)}
    load_before = list(load_average())
    start = time.perf_counter()
    subprocess.run(command, cwd=checkout, env=env, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    scores = {
        name: json.loads((output / name / "meta.json").read_text())["performance"]
        for name in ("model-best", "model-last")
    }
    return {
        "command": " ".join(command),
        "cwd": str(checkout),
        "seconds": round(seconds, 1),
        "load_before": load_before,
        "load_after": list(load_average()),
        "scores": scores,
    }


def same_model(a: Path, b: Path) -> bool:
    """Whether two trained pipelines have byte-identical ``ner`` weights (best and last)."""
    return all(
        (a / name / "ner" / "model").read_bytes() == (b / name / "ner" / "model").read_bytes()
        for name in ("model-best", "model-last")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="checkout of the code before the cache")
    parser.add_argument("--output", type=Path, default=ROOT / "runs" / "bench_train")
    parser.add_argument("--max-steps", type=int, default=1500)
    parser.add_argument("--eval-frequency", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=Path, default=ROOT / "corpus" / "ner" / "train.spacy")
    parser.add_argument("--dev", type=Path, default=ROOT / "corpus" / "ner" / "dev.spacy")
    parser.add_argument("--order", default="before,after,baseline", help="the order of the three runs")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    setups = {
        "before": (args.before.resolve(), "configs/ner_elmo.cfg"),
        "after": (ROOT, "configs/ner_elmo.cfg"),
        "baseline": (ROOT, "configs/ner_baseline.cfg"),
    }
    order = args.order.split(",")
    if sorted(order) != sorted(setups):
        parser.error(f"--order must name {', '.join(setups)} once each, found {args.order!r}")
    runs = {name: train(*setups[name], args.output / name, args) for name in order}
    identical = runs["before"]["scores"] == runs["after"]["scores"] and same_model(
        args.output / "before", args.output / "after"
    )
    result = {
        "cpu": cpu_model(),
        "steps": args.max_steps,
        "eval_frequency": args.eval_frequency,
        "seed": args.seed,
        "order": order,
        "runs": runs,
        "speedup_after_vs_before": round(runs["before"]["seconds"] / runs["after"]["seconds"], 2),
        "before_and_after_identical": identical,
    }
    (args.output / "bench_train.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"CPU: {result['cpu']}; {args.max_steps} steps, eval every {args.eval_frequency}, seed {args.seed}")
    print("| run | wall s | x baseline | load avg (1/5/15 min) before -> after | best ents_f | last ents_f |")
    print("|---|---|---|---|---|---|")
    for name, run in runs.items():
        ratio = run["seconds"] / runs["baseline"]["seconds"]
        load = f"{run['load_before']} -> {run['load_after']}"
        best, last = (run["scores"][m]["ents_f"] for m in ("model-best", "model-last"))
        print(f"| {name} | {run['seconds']} | {ratio:.2f} | {load} | {best} | {last} |")
    print(
        f"after is {result['speedup_after_vs_before']}x faster than before; "
        f"scores and ner weights identical: {identical}"
    )


if __name__ == "__main__":
    main()
