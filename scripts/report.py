"""Write the comparison report (markdown + PNG charts) of the NER / textcat runs and the similarity scores.

Reads the ``spacy evaluate`` test scores ``<runs>/<task>_<features>/seed<n>/test_metrics.json``, the trained
``<runs>/<task>_elmo*/seed<n>/model-best`` pipelines (for the learned scalar-mix weights), the run records
``<runs>/<task>_<features>/seed<n>/run.json`` of ``scripts/train_run.py`` (steps reached, wall time), the
adaptation metrics ``<runs>/adapt_<task>/metrics.json`` (held-out perplexity before and after), the
similarity scores of ``scripts/similarity.py`` and the word-sense scores of ``scripts/word_sense.py``; writes
``<output>/report.md``, ``scores.json`` (all test scores), ``layer_weights.json`` and the charts ``scores.png``,
``ner_per_type.png``, ``layer_weights.png``:

    python scripts/collect_runs.py --runs runs --records results/runs   # the records of this machine's runs
    python scripts/report.py --runs results/runs --similarity results/similarity.json \
        --word-sense results/word_sense.json --adapt-sweep results/adapt_sweep_ner.json --output results

``--runs`` is usually ``results/runs`` (the records kept in git, every seed of every run), or ``runs``.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy  # noqa: E402
import spacy  # noqa: E402
from adapt_sweep import table as sweep_table  # noqa: E402  (scripts/, beside this file)

from spacy_elmo.pipeline.architectures import get_scalar_mix_weights  # noqa: E402
from spacy_elmo.util.atomic import write_text  # noqa: E402

TASKS = {"ner": "WNUT-16 NER (test)", "textcat": "Rotten Tomatoes fresh/rotten (test)"}
FEATURES = {
    "baseline": "baseline (tok2vec)",
    "static": "+ static word2vec",
    "elmo": "+ ELMo",
    "elmo_adapted": "+ ELMo (domain-adapted)",
}
# (metric key in the spacy evaluate JSON, column title); the first one is the main score
METRICS = {
    "ner": [("ents_f", "F1"), ("ents_p", "precision"), ("ents_r", "recall")],
    "textcat": [("cats_macro_f", "macro F1"), ("cats_micro_f", "accuracy"), ("cats_macro_auc", "macro AUC")],
}
RUN_NAME = re.compile(r"(?P<task>ner|textcat)_(?P<features>\w+)$")
Runs = Dict[Tuple[str, str], Dict[int, dict]]


def read_per_seed(runs_dir: Path, filename: str) -> Runs:
    """``{(task, features): {seed: content}}`` of the JSON files ``<task>_<features>/seed<n>/<filename>``: the
    ``spacy evaluate`` test scores (``test_metrics.json``) or the run records of ``train_run.py`` (``run.json``)."""
    runs: Runs = defaultdict(dict)
    for path in sorted(runs_dir.glob(f"*/seed*/{filename}")):
        match = RUN_NAME.match(path.parent.parent.name)
        if match:
            seed = int(path.parent.name.removeprefix("seed"))
            runs[match["task"], match["features"]][seed] = json.loads(path.read_text())
    return runs


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (0.0 for a single value)."""
    array = numpy.asarray(values, dtype="float64")
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def sample_std(array: numpy.ndarray) -> numpy.ndarray:
    """Sample standard deviation over axis 0 (zeros for a single row)."""
    return array.std(axis=0, ddof=1) if len(array) > 1 else numpy.zeros(array.shape[1:])


def fmt(values: Sequence[float], scale: float = 100.0) -> str:
    """``mean ± std`` of ``values * scale`` with one decimal."""
    mean, std = mean_std([v * scale for v in values])
    return f"{mean:.1f} ± {std:.1f}"


def scores_table(runs: Runs, task: str) -> List[str]:
    """Markdown rows: one per feature set, mean ± std over seeds of each metric and test speed."""
    titles = [title for _, title in METRICS[task]]
    lines = ["| features | seeds | " + " | ".join(titles) + " | words/s (test) |", "|---" * (len(titles) + 3) + "|"]
    for features, label in FEATURES.items():
        seeds = runs.get((task, features))
        if not seeds:
            continue
        cells = [fmt([s[key] for s in seeds.values()]) for key, _ in METRICS[task]]
        speed = mean_std([s["speed"] for s in seeds.values()])[0]
        lines.append(f"| {label} | {len(seeds)} | " + " | ".join(cells) + f" | {speed:,.0f} |")
    return lines


def ner_per_type(runs: Runs) -> Tuple[List[str], Dict[str, Dict[str, Tuple[float, float]]]]:
    """Markdown rows of F1 per entity type (mean ± std), and ``{features: {label: (mean, std)}}``."""
    labels = sorted(
        {
            label
            for seeds in (runs.get(("ner", f), {}) for f in FEATURES)
            for s in seeds.values()
            for label in (s.get("ents_per_type") or {})
        }
    )
    present = [f for f in FEATURES if runs.get(("ner", f))]
    lines = ["| type | " + " | ".join(FEATURES[f] for f in present) + " |", "|---" * (len(present) + 1) + "|"]
    values: Dict[str, Dict[str, Tuple[float, float]]] = {f: {} for f in present}
    for label in labels:
        cells = []
        for features in present:
            f1 = [(s.get("ents_per_type") or {}).get(label, {}).get("f", 0.0) for s in runs["ner", features].values()]
            values[features][label] = tuple(v * 100 for v in mean_std(f1))
            cells.append(fmt(f1))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines, values


def similarity_tables(similarity: dict) -> List[str]:
    """Markdown tables of the Lee (Pearson) and word-similarity (Spearman) scores."""
    lee = similarity["lee"]
    lines = [
        f"Lee et al. (2005), {lee['documents']} news documents, {lee['pairs']} off-diagonal pairs: Pearson r "
        "between the mean human rating and the cosine of mean vectors.",
        "",
        "| method | Pearson r |",
        "|---|---|",
    ]
    lines += [f"| {name} | {r:.3f} |" for name, r in lee["pearson"].items()]
    lines += [
        "",
        "Word similarity: Spearman rho between the human score and the cosine of the two words' vectors "
        "(ELMo: layer 0, the context-free character-CNN layer, of the word embedded alone; static: the "
        "word2vec vector, so only pairs with both words in its vocabulary).",
        "",
        "| method | "
        + " | ".join(
            f"{name} ({data['covered_pairs']}/{data['pairs']} pairs covered)" for name, data in _word_sets(similarity)
        )
        + " |",
        "|---" * (1 + len(_word_sets(similarity))) + "|",
    ]
    methods = list(_word_sets(similarity)[0][1]["spearman"])
    for method in methods:
        lines.append(
            f"| {method} | " + " | ".join(f"{d['spearman'][method]:.3f}" for _, d in _word_sets(similarity)) + " |"
        )
    return lines


def _word_sets(similarity: dict) -> List[Tuple[str, dict]]:
    return [(name, data) for name, data in similarity.items() if name != "lee"]


def word_sense_table(word_sense: dict) -> List[str]:
    """Markdown lines: WordNet triplet separation per layer and the "bank" check's cosines."""
    wordnet, bank = word_sense["wordnet"], word_sense["bank"]
    lines = [
        f"WordNet examples: {wordnet['triplets']:,} triplets (anchor, same-sense example, other-sense example) "
        f"over {wordnet['words']:,} words; share where the word's vector is closer to the same-sense example "
        "(chance 0.5; a static vector never separates).",
        "",
        "| vector | micro | macro (mean over words) |",
        "|---|---|---|",
    ]
    for name in [k for k in wordnet if k.startswith("layer")] + ["average"]:
        lines.append(f"| {name} | {wordnet[name]['micro']:.3f} | {wordnet[name]['macro']:.3f} |")
    lines += [
        "",
        f'The "bank" check: cosine of money-"bank" to loan-"bank" {bank["loan"]:.3f}, to river-"bank" '
        f"{bank['river']:.3f} (average mix): the check {'passes' if bank['passes'] else 'fails'}.",
    ]
    return lines


def layer_weights(runs_dir: Path) -> Dict[str, List[dict]]:
    """``{task: [{"seed", "weights" (n_layers,), "gamma"}]}``: the recorded ``mix.json`` of each ELMo run (see
    ``scripts/collect_runs.py``), else read from its trained ``model-best`` pipeline."""
    found: Dict[str, List[dict]] = {}
    for task in TASKS:
        for features, name in (("elmo", task), ("elmo_adapted", f"{task} (adapted)")):
            for run in sorted(runs_dir.glob(f"{task}_{features}/seed*")):
                seed = int(run.name.removeprefix("seed"))
                if (run / "mix.json").is_file():
                    mix = json.loads((run / "mix.json").read_text())
                    found.setdefault(name, []).append({"seed": seed, **mix})
                elif (run / "model-best").is_dir():
                    nlp = spacy.load(run / "model-best", exclude=["elmo"])
                    weights = get_scalar_mix_weights(nlp.get_pipe(task).model)
                    if weights is not None:
                        entry = {"seed": seed, "weights": weights[0].tolist(), "gamma": weights[1]}
                        found.setdefault(name, []).append(entry)
    return found


def protocol_lines(records: Runs) -> List[str]:
    """The training protocol and one markdown row per run: steps reached, why it stopped, best step, wall time."""
    first = next(record for seeds in records.values() for record in seeds.values())
    lines = [
        f"Every run trains until the dev score has not improved for `patience` = {first['patience']} steps "
        f"or `max_steps` = {first['max_steps']} (spaCy's stopping rule); the pipeline kept is model-best. "
        f"One thread per run (`OMP_NUM_THREADS=1`, {first['cpu']}); two runs at a time on the 2-core machine, "
        "so wall times include that sharing.",
        "",
        "| run | seed | steps reached | stopped by | best step | best dev score | wall time |",
        "|---|---|---|---|---|---|---|",
    ]
    for (task, features), seeds in sorted(records.items()):
        for seed, record in sorted(seeds.items()):
            lines.append(
                f"| {task}_{features} | {seed} | {record['steps']:,} | {record['stopped_by']} | "
                f"{record['best_step']:,} | {record['best_dev_score']:.3f} | "
                f"{record['wall_seconds'] / 60:.1f} min |"
            )
    return lines


def read_adaptation(runs_dir: Path) -> Dict[str, dict]:
    """``{task: {"before", "after", ...}}`` from ``<runs>/adapt_<task>/metrics.json``: held-out perplexity of the
    unadapted biLM (the best evaluation of the head warm-up, where the biLM is frozen; step 0 without a warm-up)
    and of the adapted one (the final evaluation)."""
    found = {}
    for task in TASKS:
        path = runs_dir / f"adapt_{task}" / "metrics.json"
        if not path.is_file():
            continue
        metrics = json.loads(path.read_text())
        history, final = metrics["history"], metrics["final"]
        head = [entry for entry in history if entry["phase"] == "head"]
        before = min(head, key=lambda entry: entry["ppl"]) if head else history[0]
        found[task] = {"before": before, "after": final, "head_steps": before["step"] if head else 0}
    return found


def adaptation_lines(adaptation: Dict[str, dict]) -> List[str]:
    """Markdown rows: held-out (task dev text) perplexity before and after ``spacy-elmo adapt``."""
    lines = [
        "`spacy-elmo adapt default <task train text>` (`spacy project run adapt-ner` / `adapt-textcat`): "
        "everything is fine-tuned, starting from the bundled softmax (`lm_head.pt`; a model without one first "
        "trains a softmax with the biLM frozen, and the unadapted perplexity is then the best of that "
        "warm-up). Perplexity (mean of the forward and backward LM, `</S>` included) on the task's **dev** "
        "text, never trained on.",
        "",
        "| task | train tokens | held-out tokens | fine-tuning epochs | mix ratio | ppl unadapted (step) | "
        "ppl adapted (step) | change | training minutes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for task, data in adaptation.items():
        before, after = data["before"], data["after"]
        change = 100 * (after["ppl"] / before["ppl"] - 1)
        epochs = f"{after['fine_tuned_epochs']:g}" if "fine_tuned_epochs" in after else "?"
        mix = f"{after['mix_ratio']:g}" if "mix_ratio" in after else "?"
        lines.append(
            f"| {task} | {after['train_tokens']:,} | {after['heldout_tokens']:,} | {epochs} | {mix} | "
            f"{before['ppl']:.1f} ({before['step']}) | {after['ppl']:.1f} ({after['step']}) | "
            f"{change:+.1f}% | {after['train_minutes']:.0f} |"
        )
    return lines


def plot_scores(runs: Runs, path: Path) -> None:
    """Bar chart of the main score per task and feature set, error bars = std over seeds."""
    fig, axes = plt.subplots(1, len(TASKS), figsize=(10, 4))
    for ax, task in zip(axes, TASKS):
        key, title = METRICS[task][0]
        names, means, stds = [], [], []
        for features, label in FEATURES.items():
            if runs.get((task, features)):
                mean, std = mean_std([s[key] * 100 for s in runs[task, features].values()])
                names.append(label)
                means.append(mean)
                stds.append(std)
        bars = ax.bar(
            names, means, yerr=stds, capsize=4, color=["#999999", "#4c72b0", "#dd8452", "#55a868"][: len(names)]
        )
        ax.bar_label(bars, [f"{m:.1f} ± {s:.1f}" for m, s in zip(means, stds)], label_type="center", color="white")
        ax.set_title(f"{TASKS[task]}: {title}")
        ax.set_ylabel(f"{title} (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_ner_per_type(values: Dict[str, Dict[str, Tuple[float, float]]], path: Path) -> None:
    """Grouped bars of NER F1 per entity type and feature set."""
    labels = sorted({label for per_type in values.values() for label in per_type})
    fig, ax = plt.subplots(figsize=(11, 4))
    width = 0.8 / max(len(values), 1)
    x = numpy.arange(len(labels))
    for i, (features, per_type) in enumerate(values.items()):
        ax.bar(
            x + i * width,
            [per_type[label][0] for label in labels],
            width,
            yerr=[per_type[label][1] for label in labels],
            capsize=2,
            label=FEATURES[features],
        )
    ax.set_xticks(x + width * (len(values) - 1) / 2, labels, rotation=30, ha="right")
    ax.set_ylabel("F1 (%)")
    ax.set_title("WNUT-16 NER test F1 per entity type (mean ± std over seeds)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_layer_weights(weights: Dict[str, List[dict]], path: Path) -> None:
    """Bars of the learned softmax layer weights s per task (mean ± std over seeds)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    width = 0.8 / max(len(weights), 1)
    for i, (task, runs) in enumerate(weights.items()):
        array = numpy.asarray([run["weights"] for run in runs])
        x = numpy.arange(array.shape[1])
        gamma = numpy.mean([run["gamma"] for run in runs])
        ax.bar(
            x + i * width,
            array.mean(axis=0),
            width,
            yerr=sample_std(array),
            capsize=3,
            label=f"{task} (gamma {gamma:.2f})",
        )
    n_layers = max(len(runs[0]["weights"]) for runs in weights.values())
    ax.axhline(1 / n_layers, color="grey", linestyle=":", label="uniform (initial)")
    ax.set_xticks(
        numpy.arange(n_layers) + width * (len(weights) - 1) / 2,
        ["0: char CNN"] + [f"{k}: biLSTM {k}" for k in range(1, n_layers)],
    )
    ax.set_ylabel("softmax(s)")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.3)
    ax.set_title("Learned ELMo scalar-mix weights (mean ± std over seeds)")
    ax.legend(loc="upper center", ncol=3, fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def layer_weight_table(weights: Dict[str, List[dict]]) -> List[str]:
    n_layers = max(len(runs[0]["weights"]) for runs in weights.values())
    lines = ["| task | " + " | ".join(f"s{k}" for k in range(n_layers)) + " | gamma |", "|---" * (n_layers + 2) + "|"]
    for task, runs in weights.items():
        array = numpy.asarray([run["weights"] for run in runs])
        cells = [f"{m:.3f} ± {s:.3f}" for m, s in zip(array.mean(axis=0), sample_std(array))]
        gamma = numpy.asarray([run["gamma"] for run in runs])
        lines.append(f"| {task} | " + " | ".join(cells) + f" | {gamma.mean():.3f} ± {float(sample_std(gamma)):.3f} |")
    return lines


def write_report(
    runs: Runs,
    similarity: Optional[dict],
    word_sense: Optional[dict],
    weights: Dict[str, List[dict]],
    records: Runs,
    adaptation: Dict[str, dict],
    sweep: Optional[dict],
    output: Path,
) -> None:
    output.mkdir(parents=True, exist_ok=True)
    lines = [
        "# ELMo features for spaCy NER and textcat: results",
        "",
        "Generated by `spacy project run report` (`scripts/report.py`). Scores on the held-out **test** splits, "
        "mean ± sample std over training seeds; model-best (by dev score) of each run.",
        "",
    ]
    lines += ["![scores](scores.png)", ""]
    for task, title in TASKS.items():
        lines += [f"## {title}", ""] + scores_table(runs, task) + [""]
    if runs.get(("ner", "baseline")):
        per_type, values = ner_per_type(runs)
        plot_ner_per_type(values, output / "ner_per_type.png")
        lines += ["## NER F1 per entity type", "", "![ner per type](ner_per_type.png)", ""] + per_type + [""]
    if weights:
        plot_layer_weights(weights, output / "layer_weights.png")
        write_text(output / "layer_weights.json", json.dumps(weights, indent=2) + "\n")
        lines += (
            [
                "## Learned scalar mix",
                "",
                "softmax-normalised layer weights s and scale gamma of the listener's task-specific scalar mix "
                "(mean ± std over seeds; layer 0 = character CNN, then the biLSTM layers).",
                "",
                "![layer weights](layer_weights.png)",
                "",
            ]
            + layer_weight_table(weights)
            + [""]
        )
    if adaptation:
        lines += ["## Domain adaptation of the biLM", ""] + adaptation_lines(adaptation) + [""]
    if sweep:
        lines += [
            "Choosing the recipe: `spacy project run adapt-sweep-ner` (`scripts/adapt_sweep.py`) adapts the bundled "
            "biLM to the WNUT-16 train tweets under each setting, then trains `ner_elmo` once. The table above "
            "gives the epochs and mix ratio each adapted row was trained with.",
            "",
        ]
        lines += sweep_table(sweep["settings"], sweep.get("unadapted"), "ents_f", False) + [""]
    if records:
        lines += ["## Training runs", ""] + protocol_lines(records) + [""]
    if similarity:
        lines += ["## Similarity", ""] + similarity_tables(similarity) + [""]
    if word_sense:
        lines += ["## Word sense", ""] + word_sense_table(word_sense) + [""]
    plot_scores(runs, output / "scores.png")
    scores = {
        f"{task}_{features}": {f"seed{seed}": s for seed, s in sorted(seeds.items())}
        for (task, features), seeds in sorted(runs.items())
    }
    write_text(output / "scores.json", json.dumps(scores, indent=2) + "\n")
    if (output / "ANALYSIS.md").is_file():
        lines += [
            "## Analysis",
            "",
            "Written by hand after the runs (kept when this report is regenerated): [ANALYSIS.md](ANALYSIS.md).",
            "",
        ]
    write_text(output / "report.md", "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--similarity", type=Path, default=Path("results/similarity.json"), help="similarity scores")
    parser.add_argument("--word-sense", type=Path, default=Path("results/word_sense.json"), help="word-sense scores")
    parser.add_argument(
        "--adapt-sweep",
        type=Path,
        default=Path("results/adapt_sweep_ner.json"),
        help="scripts/adapt_sweep.py's JSON (the adaptation recipe sweep)",
    )
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="trained pipelines")
    parser.add_argument("--output", type=Path, default=Path("results"), help="report folder")
    args = parser.parse_args()
    runs = read_per_seed(args.runs, "test_metrics.json")
    if not runs:
        raise SystemExit(f"error: no <task>_<features>/seed<n>/test_metrics.json in {args.runs}")
    similarity = json.loads(args.similarity.read_text()) if args.similarity.is_file() else None
    word_sense = json.loads(args.word_sense.read_text()) if args.word_sense.is_file() else None
    sweep = json.loads(args.adapt_sweep.read_text()) if args.adapt_sweep.is_file() else None
    write_report(
        runs,
        similarity,
        word_sense,
        layer_weights(args.runs),
        read_per_seed(args.runs, "run.json"),
        read_adaptation(args.runs),
        sweep,
        args.output,
    )
    print(f"wrote {args.output / 'report.md'}")


if __name__ == "__main__":
    main()
