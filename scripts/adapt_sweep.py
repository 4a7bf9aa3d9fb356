"""Choose an adaptation recipe on the downstream dev score: adapt the biLM under each setting of a small grid,
train one task pipeline on each adapted biLM, and tabulate dev perplexity and dev score.

    python scripts/adapt_sweep.py --train-text corpus/adapt/ner_train.txt --heldout-text corpus/adapt/ner_dev.txt \
        --mix-corpus corpus/pretrain/train.txt --config configs/ner_elmo.cfg --runs runs/adapt_sweep_ner \
        --output results/adapt_sweep_ner --epochs 1 3 --mix 0 0.5 --freeze none token

For each setting (at most eight; the grid is epochs x mix ratio x frozen layers): ``spacy-elmo adapt MODEL``
(default: the bundled biLM, from its own softmax) on the task's train text, the dev text held out, into
``RUNS/<setting>/bilm``; then ``scripts/train_run.py CONFIG RUNS/<setting>/ner`` with seed 0 and the project's
patience protocol, the adapted biLM in ``[components.elmo]``. Finished steps are skipped, so an interrupted sweep
resumes. Writes ``OUTPUT.md`` (a table: setting -> fine-tuning steps, dev perplexity, dev score, and the best
setting by dev score) and ``OUTPUT.json``. Judged on dev only: the test split is never read here.

``--smoke`` runs the same steps with tiny budgets (a few adaptation and training steps) to check the plumbing;
its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

from spacy_elmo.util.atomic import write_text

MAX_SETTINGS = 8


def setting_name(epochs: int, mix: float, freeze: str) -> str:
    return f"e{epochs}_mix{mix:g}_{freeze}"


def adapt_command(args: argparse.Namespace, epochs: int, mix: float, freeze: str, output: Path) -> List[str]:
    """``spacy-elmo adapt`` for one setting (resumes from its checkpoint when interrupted)."""
    command = [
        sys.executable,
        "-m",
        "spacy_elmo",
        "adapt",
        args.model,
        str(args.train_text),
        str(output),
        "--heldout",
        str(args.heldout_text),
        "--max-epochs",
        str(epochs),
        "--lr",
        str(args.lr),
        "--freeze",
        freeze,
        "--seed",
        "0",
        "--device",
        args.device,
        "--resume",
    ]
    if mix > 0:
        command += ["--mix-corpus", str(args.mix_corpus), "--mix-ratio", str(mix)]
    if args.smoke:
        command += ["--max-steps", "2", "--batch-tokens", "256", "--eval-every", "1", "--checkpoint-every", "1"]
    else:
        command += [
            "--max-minutes",
            str(args.max_minutes),
            "--eval-every",
            "10",
            "--head-eval-every",
            "25",
            "--checkpoint-every",
            "20",
        ]
    return command


def train_command(args: argparse.Namespace, bilm: Path, output: Path) -> List[str]:
    """``scripts/train_run.py`` for the task, seed 0, over the adapted biLM."""
    command = [
        sys.executable,
        str(Path(__file__).parent / "train_run.py"),
        str(args.config),
        str(output),
        "--system.seed",
        "0",
        "--paths.train",
        str(args.train_spacy),
        "--paths.dev",
        str(args.dev_spacy),
        "--components.elmo.options_file",
        str(bilm / "options.json"),
        "--components.elmo.weight_file",
        str(bilm / "weights.hdf5"),
    ]
    if args.smoke:
        return command + ["--training.max_steps", "4", "--training.eval_frequency", "2", "--training.patience", "2"]
    return command + [
        "--training.max_steps",
        str(args.max_steps),
        "--training.eval_frequency",
        str(args.eval_frequency),
    ]


def dev_score(run: Path, key: str) -> Optional[float]:
    """The dev score ``key`` of ``run``'s model-best (spaCy's meta.json), or None when the run has not finished."""
    meta = run / "model-best" / "meta.json"
    if not (run / "run.json").is_file() or not meta.is_file():
        return None
    return float(json.loads(meta.read_text())["performance"][key])


def run_setting(args: argparse.Namespace, epochs: int, mix: float, freeze: str) -> dict:
    """Adapt, then train, for one setting; their results as one row."""
    root = args.runs / setting_name(epochs, mix, freeze)
    bilm, task = root / "bilm", root / "task"
    if not (bilm / "metrics.json").is_file():
        subprocess.run(adapt_command(args, epochs, mix, freeze, bilm), check=True)
    if not (task / "run.json").is_file():
        subprocess.run(train_command(args, bilm, task), check=True)
    final = json.loads((bilm / "metrics.json").read_text())["final"]
    record = json.loads((task / "run.json").read_text())
    return {
        "setting": setting_name(epochs, mix, freeze),
        "epochs": epochs,
        "mix_ratio": mix,
        "freeze": freeze,
        "fine_tuned_steps": final["fine_tuned_steps"],
        "dev_ppl_before": final.get("start_ppl"),
        "dev_ppl": final["ppl"],
        "dev_score": dev_score(task, args.score),
        "task_steps": record["steps"],
        "task_best_step": record["best_step"],
        "adapt_minutes": round(final["train_minutes"], 1),
        "task_minutes": round(record["wall_seconds"] / 60, 1),
    }


def table(rows: List[dict], baseline: Optional[float], score: str, smoke: bool) -> List[str]:
    lines = [
        f"Adaptation settings for `{score}` on the **dev** split (seed 0, one training run each; "
        "perplexity on the task's dev text, never trained on).",
        "",
    ]
    if smoke:
        lines += ["**Smoke run** (a few steps per stage): the numbers only show that the sweep runs.", ""]
    lines += [
        "| setting | epochs | mix ratio | frozen | fine-tuning steps | dev ppl before -> after | "
        f"dev {score} | task steps (best) | minutes (adapt + task) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    if baseline is not None:
        lines.append(f"| unadapted | | | | 0 | | {100 * baseline:.1f} | | |")
    for row in rows:
        before = f"{row['dev_ppl_before']:.1f}" if row["dev_ppl_before"] is not None else "?"
        value = f"{100 * row['dev_score']:.1f}" if row["dev_score"] is not None else "n/a"
        lines.append(
            f"| {row['setting']} | {row['epochs']} | {row['mix_ratio']:g} | {row['freeze']} | "
            f"{row['fine_tuned_steps']:,} | {before} -> {row['dev_ppl']:.1f} | {value} | "
            f"{row['task_steps']:,} ({row['task_best_step']:,}) | "
            f"{row['adapt_minutes']} + {row['task_minutes']} |"
        )
    scored = [row for row in rows if row["dev_score"] is not None]
    if scored:
        best = max(scored, key=lambda row: row["dev_score"])
        verdict = (
            ""
            if baseline is None
            else f" ({'above' if best['dev_score'] > baseline else 'not above'} the unadapted biLM's "
            f"{100 * baseline:.1f})"
        )
        lines += ["", f"Best by dev {score}: `{best['setting']}`, {100 * best['dev_score']:.1f}{verdict}."]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="the biLM to adapt (spacy-elmo adapt's MODEL)")
    parser.add_argument("--train-text", type=Path, required=True, help="the task's train text (task_text.py)")
    parser.add_argument("--heldout-text", type=Path, required=True, help="the task's dev text, for perplexity")
    parser.add_argument("--mix-corpus", type=Path, help="general text for the mix settings (the pretraining corpus)")
    parser.add_argument("--config", type=Path, required=True, help="the task's spacy train config (an elmo one)")
    parser.add_argument("--train-spacy", type=Path, default=Path("corpus/ner/train.spacy"))
    parser.add_argument("--dev-spacy", type=Path, default=Path("corpus/ner/dev.spacy"))
    parser.add_argument("--score", default="ents_f", help="the dev score in model-best/meta.json's performance")
    parser.add_argument("--runs", type=Path, required=True, help="one folder per setting goes here")
    parser.add_argument("--output", type=Path, required=True, help="writes OUTPUT.md and OUTPUT.json")
    parser.add_argument("--baseline-run", type=Path, help="a train_run.py folder of the unadapted biLM (seed 0)")
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 3], help="fine-tuning epochs")
    parser.add_argument("--mix", type=float, nargs="+", default=[0.0, 0.5], help="mix ratios (0: no mixing)")
    parser.add_argument("--freeze", nargs="+", default=["none", "token"], help="none, token or token+lstm1")
    parser.add_argument("--lr", type=float, default=3e-4, help="the fine-tuning rate")
    parser.add_argument("--max-minutes", type=float, default=60.0, help="cap per adaptation")
    parser.add_argument("--max-steps", type=int, default=6000, help="training.max_steps of each task run")
    parser.add_argument("--eval-frequency", type=int, default=100, help="training.eval_frequency of each task run")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny budgets: check that the sweep runs")
    args = parser.parse_args()
    grid = list(itertools.product(args.epochs, args.mix, args.freeze))
    if len(grid) > MAX_SETTINGS:
        sys.exit(f"error: {len(grid)} settings; the sweep runs at most {MAX_SETTINGS}")
    if any(mix > 0 for _, mix, _ in grid) and (args.mix_corpus is None or not args.mix_corpus.is_file()):
        sys.exit(f"error: a mix ratio above 0 needs --mix-corpus (a file); found {args.mix_corpus}")
    for path in (args.train_text, args.heldout_text, args.config, args.train_spacy, args.dev_spacy):
        if not path.is_file():
            sys.exit(f"error: {path}: no such file")
    rows = [run_setting(args, *setting) for setting in grid]
    baseline = dev_score(args.baseline_run, args.score) if args.baseline_run else None
    write_text(args.output.with_suffix(".json"), json.dumps({"unadapted": baseline, "settings": rows}, indent=1))
    write_text(args.output.with_suffix(".md"), "\n".join(table(rows, baseline, args.score, args.smoke)) + "\n")
    print(f"wrote {args.output.with_suffix('.md')}")


if __name__ == "__main__":
    main()
