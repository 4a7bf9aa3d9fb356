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
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy
import spacy
from adapt_sweep import table as sweep_table  # noqa: E402  (scripts/, beside this file)
from bootstrap import RESAMPLES, plot_differences, significance  # noqa: E402
from bootstrap import table as significance_table  # noqa: E402
from report_charts import plot_layer_weights, plot_ner_per_type, plot_scores  # noqa: E402
from report_data import FEATURES, METRICS, TASKS, Runs, fmt, mean_std, read_per_seed, sample_std  # noqa: E402

from spacy_elmo.pipeline.architectures import get_scalar_mix_weights  # noqa: E402
from spacy_elmo.util.atomic import write_text  # noqa: E402


def seeds_cell(seeds: Dict[int, dict], records: Dict[int, dict], features: str) -> str:
    """The seeds of a row; for static vectors, which vectors (first 8 hex digits of the table's SHA-256, from
    ``run.json``) each seed trained on, so a row whose seeds used different vectors is marked."""
    if "static" not in features:
        return str(len(seeds))
    groups: Dict[str, List[int]] = defaultdict(list)
    for seed in sorted(seeds):
        sha = records.get(seed, {}).get("vectors_sha256")
        groups[sha[:8] if sha else "unrecorded"].append(seed)
    parts = [
        f"seed{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))}: vectors "
        f"{'`' + sha + '`' if sha != 'unrecorded' else 'unrecorded (2 threads)'}"
        for sha, ids in groups.items()
    ]
    mixed = " **(mixed vectors)**" if len(groups) > 1 else ""
    return f"{len(seeds)} ({'; '.join(parts)}){mixed}"


def scores_table(runs: Runs, task: str, records: Runs) -> List[str]:
    """Markdown rows: one per feature set, mean ± std over seeds of each metric and test speed."""
    titles = [title for _, title in METRICS[task]]
    lines = ["| features | seeds | " + " | ".join(titles) + " | words/s (test) |", "|---" * (len(titles) + 3) + "|"]
    for features, label in FEATURES.items():
        seeds = runs.get((task, features))
        if not seeds:
            lines.append(f"| {label} | 0 | " + " | ".join(["not run yet"] * len(titles)) + " | - |")
            continue
        cells = [fmt([s[key] for s in seeds.values()]) for key, _ in METRICS[task]]
        speed = mean_std([s["speed"] for s in seeds.values()])[0]
        seeds_text = seeds_cell(seeds, records.get((task, features), {}), features)
        lines.append(f"| {label} | {seeds_text} | " + " | ".join(cells) + f" | {speed:,.0f} |")
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
        for features, name in (
            ("elmo", task),
            ("static_elmo", f"{task} (+ word2vec)"),
            ("elmo_adapted", f"{task} (adapted)"),
        ):
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
        "| run | seed | steps reached | stopped by | best step | best dev score | wall time | static vectors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (task, features), seeds in sorted(records.items()):
        for seed, record in sorted(seeds.items()):
            vectors = (
                f"`{record['vectors_sha256'][:8]}`"
                if "vectors_sha256" in record
                else "unrecorded"
                if "static" in features
                else "-"
            )
            lines.append(
                f"| {task}_{features} | {seed} | {record['steps']:,} | {record['stopped_by']} | "
                f"{record['best_step']:,} | {record['best_dev_score']:.3f} | "
                f"{record['wall_seconds'] / 60:.1f} min | {vectors} |"
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


def layer_weight_table(weights: Dict[str, List[dict]]) -> List[str]:
    n_layers = max(len(runs[0]["weights"]) for runs in weights.values())
    lines = ["| task | " + " | ".join(f"s{k}" for k in range(n_layers)) + " | gamma |", "|---" * (n_layers + 2) + "|"]
    for task, runs in weights.items():
        array = numpy.asarray([run["weights"] for run in runs])
        cells = [f"{m:.3f} ± {s:.3f}" for m, s in zip(array.mean(axis=0), sample_std(array))]
        gamma = numpy.asarray([run["gamma"] for run in runs])
        lines.append(f"| {task} | " + " | ".join(cells) + f" | {gamma.mean():.3f} ± {float(sample_std(gamma)):.3f} |")
    return lines


def significance_lines(rows: List[dict], runs: Runs, runs_dir: Path, resamples: int, output: Path) -> List[str]:
    """The "which differences are real" section: the bootstrap table, the seeds left out of it, and one sentence
    per task on whether ELMo adds to static vectors."""
    lines = [
        f"Paired bootstrap over the test documents (`scripts/bootstrap.py`, {resamples:,} resamples): each "
        "resample draws the test documents with replacement and scores every seed of both rows on the same "
        "drawn documents; shown is the difference of the mean F1 over seeds (points; NER F1, textcat macro F1), "
        "its 95% interval (2.5th to 97.5th percentile of the resampled differences) and the share of resamples "
        "where the difference does not have the observed sign. Real at 95% = the interval excludes 0. Only "
        "seeds whose per-document results were kept (`per_doc.json`, `scripts/evaluate_run.py`) enter; seeds "
        "scored by `spacy evaluate` alone must be retrained to enter.",
        "",
    ]
    if rows:
        plot_differences(rows, FEATURES, output / "differences.png")
        lines += ["![differences](differences.png)", ""] + significance_table(rows, FEATURES) + [""]
    else:
        lines += ["No pair of rows has per-document results yet.", ""]
    return lines + missing_lines(runs, runs_dir) + verdict_lines(rows)


def missing_lines(runs: Runs, runs_dir: Path) -> List[str]:
    """One line naming the seeds of the score tables that have no per-document results."""
    missing = []
    for (task, features), seeds in sorted(runs.items()):
        without = sorted(set(seeds) - set(per_doc_seeds(runs_dir, task, features)))
        if without:
            missing.append(f"{task}_{features} {', '.join(map(str, without))}")
    if not missing:
        return []
    return [
        "Seeds in the score tables without per-document results (not in the bootstrap): " + "; ".join(missing) + ".",
        "",
    ]


def verdict_lines(rows: List[dict]) -> List[str]:
    """One sentence per task: does ELMo add to static vectors at the 95% level."""
    lines = []
    for task in TASKS:
        row = next((r for r in rows if (r["task"], r["a"], r["b"]) == (task, "static_elmo", "static")), None)
        if row is None:
            lines += [
                f"**{task}: does ELMo add to static vectors?** Not tested yet: `{task}_static_elmo` and "
                f"`{task}_static` need per-document results.",
                "",
            ]
            continue
        verdict = (
            "yes, at the 95% level"
            if row["real"] and row["difference"] > 0
            else "no: it is worse, at the 95% level"
            if row["real"]
            else "not shown at the 95% level (the interval includes 0)"
        )
        lines += [
            f"**{task}: does ELMo add to static vectors?** {verdict}: + word2vec + ELMo minus + static "
            f"word2vec = {100 * row['difference']:+.1f} points, 95% interval [{100 * row['low']:+.1f}, "
            f"{100 * row['high']:+.1f}], seeds {','.join(map(str, row['seeds_a_list']))} vs "
            f"{','.join(map(str, row['seeds_b_list']))}.",
            "",
        ]
    return lines


def summary_table(runs: Runs, records: Runs) -> List[str]:
    """Both tasks' main scores in one markdown table, one row per feature set (seeds per task in the cells); a
    static row whose seeds have no recorded vectors checksum says so."""
    lines = [
        "| features | WNUT-16 NER F1 | NER precision | NER recall | RT macro F1 | RT accuracy |",
        "|---|---|---|---|---|---|",
    ]
    for features, label in FEATURES.items():
        unrecorded = sorted(
            {
                f"{task} {seed}"
                for task in TASKS
                for seed in runs.get((task, features), {})
                if "static" in features and "vectors_sha256" not in records.get((task, features), {}).get(seed, {})
            }
        )
        every = {f"{task} {seed}" for task in TASKS for seed in runs.get((task, features), {})}
        if unrecorded:
            label += (
                " (vectors unrecorded, 2 threads)"
                if set(unrecorded) == every
                else f" (vectors unrecorded, 2 threads: {', '.join(unrecorded)})"
            )
        cells = []
        for task in TASKS:
            seeds = runs.get((task, features), {})
            for number, (key, _) in enumerate(METRICS[task][: 3 if task == "ner" else 2]):
                cell = fmt([s[key] for s in seeds.values()]) if seeds else "not run"
                cells.append(f"{cell} ({len(seeds)})" if seeds and number == 0 else cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def write_summary(
    runs: Runs, records: Runs, rows: List[dict], runs_dir: Path, output: Path, readme: Optional[Path]
) -> None:
    """``<output>/summary.md`` (included by the docs' experiment page) and, with ``readme``, the block of README
    between the results markers: the score table, which differences are real, the seeds left out."""
    body = (
        [
            "Test scores, mean ± sample std over seeds (number of seeds in brackets), every run trained until the "
            "dev score stopped improving; ELMo = the bundled 7M-parameter biLM.",
            "",
        ]
        + summary_table(runs, records)
        + [
            "",
            "Which differences are real (paired bootstrap over the test documents, seeds pooled; difference of "
            "the mean F1 in points with its 95% interval; [the report](results/report.md) has the method):",
            "",
        ]
        + (
            ["![which differences are real](results/differences.png)", ""] + significance_table(rows, FEATURES)
            if rows
            else ["No pair of rows has per-document results yet."]
        )
        + [""]
        + verdict_lines(rows)
        + missing_lines(runs, runs_dir)
    )
    write_text(output / "summary.md", "\n".join(body).replace("](results/", "](") + "\n")
    if readme is None:
        return
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise SystemExit(f"error: {readme}: no {README_START} ... {README_END} block to regenerate")
    block = README_START + "\n" + "\n".join(body).rstrip() + "\n"
    write_text(readme, text[:start] + block + text[end:])


README_START = "<!-- results: written by `spacy project run report` (scripts/report.py); do not edit -->"
README_END = "<!-- /results -->"


def per_doc_seeds(runs_dir: Path, task: str, features: str) -> List[int]:
    return [
        int(path.parent.name.removeprefix("seed")) for path in runs_dir.glob(f"{task}_{features}/seed*/per_doc.json")
    ]


def write_report(
    runs: Runs,
    similarity: Optional[dict],
    word_sense: Optional[dict],
    weights: Dict[str, List[dict]],
    records: Runs,
    adaptation: Dict[str, dict],
    sweep: Optional[dict],
    output: Path,
    runs_dir: Path,
    resamples: int = RESAMPLES,
    readme: Optional[Path] = None,
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
        lines += [f"## {title}", ""] + scores_table(runs, task, records) + [""]
    rows = significance(runs_dir, resamples)
    write_text(output / "significance.json", json.dumps(rows, indent=1) + "\n")
    lines += ["## Which differences are real", ""] + significance_lines(rows, runs, runs_dir, resamples, output)
    write_summary(runs, records, rows, runs_dir, output, readme)
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
    parser.add_argument("--resamples", type=int, default=RESAMPLES, help="bootstrap resamples")
    parser.add_argument(
        "--readme",
        type=Path,
        default=None,
        help="README whose results block is regenerated (the project's report; not the quick run)",
    )
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
        args.runs,
        args.resamples,
        args.readme,
    )
    print(f"wrote {args.output / 'report.md'}")


if __name__ == "__main__":
    main()
