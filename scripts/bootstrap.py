"""Paired bootstrap over test documents: which differences between two feature sets are real.

For a pair of feature sets (A, B) of one task, each with one or more training seeds whose per-document test results
(``per_doc.json`` of ``scripts/evaluate_run.py``) were kept: every resample draws N of the N test documents with
replacement, scores **every seed of both rows on the same drawn documents** (so seeds are pooled and the pairing is
kept), and takes mean F1(A) - mean F1(B) over seeds. Reported: the observed difference (all documents once), the
2.5 and 97.5 percentiles of the resampled differences (95% interval), and the share of resamples whose difference
is not of the observed sign (zero counts as a flip). A difference is called real at the 95% level when the
interval excludes 0. The document resampling covers the test set's sampling; the seeds' spread enters through the
mean over the seeds that ran (three seeds are few: a pair whose seeds disagree stays uncertain only as far as the
test documents make it so).

    python scripts/bootstrap.py --runs results/runs [--resamples 10000]

prints the table ``scripts/report.py`` puts in the report.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy

RESAMPLES = 10_000
# (task, A, B): the pairs a claim of the report rests on, A - B
PAIRS: Tuple[Tuple[str, str], ...] = (
    ("elmo", "baseline"),
    ("static", "baseline"),
    ("elmo", "static"),
    ("static_elmo", "static"),
    ("static_elmo", "elmo"),
    ("elmo_adapted", "elmo"),
)
TINY = 1e-100  # spaCy's PRFScore guards its divisions with this


def f1(tp: numpy.ndarray, fp: numpy.ndarray, fn: numpy.ndarray) -> numpy.ndarray:
    """F1 as ``spacy.scorer.PRFScore.fscore`` computes it, elementwise."""
    precision = tp / (tp + fp + TINY)
    recall = tp / (tp + fn + TINY)
    return 2 * precision * recall / (precision + recall + TINY)


def ner_f1(totals: numpy.ndarray) -> numpy.ndarray:
    """Micro F1 of ``(resamples, 3)`` summed (tp, fp, fn) -> ``(resamples,)``."""
    return f1(totals[:, 0], totals[:, 1], totals[:, 2])


def textcat_macro_f1(totals: numpy.ndarray) -> numpy.ndarray:
    """Macro F1 over classes of ``(resamples, 3 * classes)`` summed per-class (tp, fp, fn) -> ``(resamples,)``."""
    per_class = totals.reshape(len(totals), -1, 3)
    return f1(per_class[..., 0], per_class[..., 1], per_class[..., 2]).mean(axis=1)


SCORES: Dict[str, Callable[[numpy.ndarray], numpy.ndarray]] = {"ner": ner_f1, "textcat": textcat_macro_f1}


def counts_of(record: dict) -> numpy.ndarray:
    """Per-document counts ``(documents, columns)`` whose column sums give the test score: NER (tp, fp, fn) over
    all entity types; textcat (tp, fp, fn) of each class, counted as spaCy counts an exclusive prediction."""
    if record["task"] == "ner":
        counts = numpy.zeros((len(record["docs"]), 3))
        for i, doc in enumerate(record["docs"]):
            for _, tp, fp, fn in doc:
                counts[i] += (tp, fp, fn)
        return counts
    gold, pred = numpy.asarray(record["gold"]), numpy.asarray(record["pred"])
    counts = numpy.zeros((len(gold), len(record["labels"]), 3))
    rows = numpy.arange(len(gold))
    right = gold == pred
    counts[rows[right], gold[right], 0] = 1
    counts[rows[~right], pred[~right], 1] = 1
    counts[rows[~right], gold[~right], 2] = 1
    return counts.reshape(len(gold), -1)


def paired_bootstrap(
    a: Sequence[numpy.ndarray],
    b: Sequence[numpy.ndarray],
    score: Callable[[numpy.ndarray], numpy.ndarray],
    resamples: int = RESAMPLES,
    seed: int = 0,
    chunk: int = 500,
) -> dict:
    """Mean score of the seeds ``a`` minus that of the seeds ``b`` (each ``(documents, columns)`` from
    ``counts_of``, all over the same documents), with its bootstrap 95% interval and sign-flip share."""
    n_docs = {len(counts) for counts in (*a, *b)}
    if len(n_docs) != 1:
        raise ValueError(f"runs scored on different numbers of documents: {sorted(n_docs)}")
    n = n_docs.pop()

    def difference(weights: numpy.ndarray) -> numpy.ndarray:
        mean_a = numpy.mean([score(weights @ counts) for counts in a], axis=0)
        mean_b = numpy.mean([score(weights @ counts) for counts in b], axis=0)
        return mean_a - mean_b

    observed = float(difference(numpy.ones((1, n)))[0])
    rng = numpy.random.default_rng(seed)
    diffs = []
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        weights = rng.multinomial(n, numpy.full(n, 1.0 / n), size=size).astype("float64")
        diffs.append(difference(weights))
    resampled = numpy.concatenate(diffs)
    low, high = numpy.percentile(resampled, [2.5, 97.5])
    flips = float(numpy.mean(resampled * numpy.sign(observed) <= 0)) if observed else 1.0
    return {
        "difference": observed,
        "low": float(low),
        "high": float(high),
        "flip_share": flips,
        "resamples": resamples,
        "documents": n,
        "seeds_a": len(a),
        "seeds_b": len(b),
        "real": bool(low > 0 or high < 0),
    }


def read_per_doc(runs_dir: Path) -> Dict[Tuple[str, str], Dict[int, dict]]:
    """``{(task, features): {seed: per_doc record}}`` of ``<runs>/<task>_<features>/seed<n>/per_doc.json``."""
    found: Dict[Tuple[str, str], Dict[int, dict]] = {}
    for path in sorted(runs_dir.glob("*/seed*/per_doc.json")):
        task, _, features = path.parent.parent.name.partition("_")
        seed = int(path.parent.name.removeprefix("seed"))
        found.setdefault((task, features), {})[seed] = json.loads(path.read_text())
    return found


def significance(runs_dir: Path, resamples: int = RESAMPLES) -> List[dict]:
    """One row per (task, A, B) of ``PAIRS`` where both feature sets have per-document results."""
    per_doc = read_per_doc(runs_dir)
    rows = []
    for task in SCORES:
        for features_a, features_b in PAIRS:
            seeds_a, seeds_b = per_doc.get((task, features_a)), per_doc.get((task, features_b))
            if not seeds_a or not seeds_b:
                continue
            tests = {record["test_sha256"] for record in (*seeds_a.values(), *seeds_b.values())}
            if len(tests) != 1:
                raise SystemExit(
                    f"error: {runs_dir}: {task}_{features_a} and {task}_{features_b} were scored on "
                    f"different test files ({len(tests)} checksums); rerun scripts/evaluate_run.py"
                )
            result = paired_bootstrap(
                [counts_of(r) for _, r in sorted(seeds_a.items())],
                [counts_of(r) for _, r in sorted(seeds_b.items())],
                SCORES[task],
                resamples,
            )
            rows.append(
                {
                    "task": task,
                    "a": features_a,
                    "b": features_b,
                    "seeds_a_list": sorted(seeds_a),
                    "seeds_b_list": sorted(seeds_b),
                    **result,
                }
            )
    return rows


def table(rows: List[dict], labels: Dict[str, str]) -> List[str]:
    """Markdown rows of ``significance``'s result (differences in points of F1)."""
    lines = [
        "| task | A | B | seeds A / B | mean F1 A - B | 95% interval | sign flips | real at 95%? |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['task']} | {labels.get(row['a'], row['a'])} | {labels.get(row['b'], row['b'])} | "
            f"{','.join(map(str, row['seeds_a_list']))} / {','.join(map(str, row['seeds_b_list']))} | "
            f"{100 * row['difference']:+.1f} | [{100 * row['low']:+.1f}, {100 * row['high']:+.1f}] | "
            f"{100 * row['flip_share']:.1f}% | {'**yes**' if row['real'] else 'no'} |"
        )
    return lines


def plot_differences(rows: List[dict], labels: Dict[str, str], path: Path) -> None:
    """Horizontal chart: one line per pair, the observed difference (points) with its 95% interval; pairs whose
    interval excludes 0 drawn solid, the others hollow."""
    import matplotlib  # noqa: PLC0415  (only the report draws)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    names = [f"{row['task']}: {labels.get(row['a'], row['a'])}\nminus {labels.get(row['b'], row['b'])}" for row in rows]
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(rows) + 1.4))
    for i, row in enumerate(rows):
        diff, low, high = (100 * row[key] for key in ("difference", "low", "high"))
        color = "#4c72b0" if row["task"] == "ner" else "#dd8452"
        ax.errorbar(
            diff,
            i,
            xerr=[[diff - low], [high - diff]],
            fmt="o",
            color=color,
            capsize=4,
            markerfacecolor=color if row["real"] else "white",
        )
        ax.annotate(
            f"{diff:+.1f} [{low:+.1f}, {high:+.1f}]",
            (high, i),
            xytext=(6, 0),
            textcoords="offset points",
            va="center",
            fontsize="small",
        )
    ax.axvline(0, color="grey", linestyle=":")
    ax.set_yticks(range(len(rows)), names, fontsize="small")
    ax.invert_yaxis()
    left, right = ax.get_xlim()
    ax.set_xlim(left, right + 0.35 * (right - left))
    ax.set_xlabel("difference of mean F1 over seeds (points), 95% paired-bootstrap interval")
    ax.set_title("Which differences are real (filled: interval excludes 0)", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("results/runs"), help="run records with per_doc.json")
    parser.add_argument("--resamples", type=int, default=RESAMPLES, help="bootstrap resamples")
    args = parser.parse_args(argv)
    if not args.runs.is_dir():
        sys.exit(f"error: {args.runs}: no such folder")
    print("\n".join(table(significance(args.runs, args.resamples), {})))


if __name__ == "__main__":
    main()
