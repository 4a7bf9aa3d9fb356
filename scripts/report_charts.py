"""The report's PNG charts (``scripts/report.py``): scores per feature set, NER F1 per entity type, the learned
scalar-mix weights. x labels are wrapped or rotated so the charts stay readable at the docs' text width."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Dict, List, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy  # noqa: E402
from report_data import COLORS, FEATURES, METRICS, TASKS, Runs, mean_std, sample_std  # noqa: E402


def wrap(label: str, width: int = 12) -> str:
    """A chart's x label on lines of at most ``width`` characters."""
    return "\n".join(textwrap.wrap(label, width))


def plot_scores(runs: Runs, path: Path) -> None:
    """Bar chart of the main score per task and feature set, error bars = std over seeds."""
    fig, axes = plt.subplots(1, len(TASKS), figsize=(11, 4.6))
    for ax, task in zip(axes, TASKS):
        key, title = METRICS[task][0]
        names, means, stds, colors = [], [], [], []
        for features, label in FEATURES.items():
            if runs.get((task, features)):
                mean, std = mean_std([s[key] * 100 for s in runs[task, features].values()])
                names.append(f"{wrap(label)}\n({len(runs[task, features])} seeds)")
                means.append(mean)
                stds.append(std)
                colors.append(COLORS[features])
        bars = ax.bar(names, means, yerr=stds, capsize=4, color=colors)
        ax.bar_label(
            bars,
            [f"{m:.1f}\n± {s:.1f}" for m, s in zip(means, stds)],
            label_type="center",
            color="white",
            fontsize="small",
        )
        ax.set_title(f"{TASKS[task]}:\n{title}, mean ± std over seeds", fontsize="medium")
        ax.set_ylabel(f"{title} (%)")
        ax.tick_params(axis="x", labelsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_ner_per_type(values: Dict[str, Dict[str, Tuple[float, float]]], path: Path) -> None:
    """Grouped bars of NER F1 per entity type and feature set."""
    labels = sorted({label for per_type in values.values() for label in per_type})
    fig, ax = plt.subplots(figsize=(11, 4.6))
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
            color=COLORS[features],
        )
    ax.set_xticks(x + width * (len(values) - 1) / 2, labels, rotation=30, ha="right")
    ax.set_ylabel("F1 (%)")
    ax.set_title("WNUT-16 NER test F1 per entity type (mean ± std over seeds)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize="small", ncol=len(values), loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_layer_weights(weights: Dict[str, List[dict]], path: Path) -> None:
    """Bars of the learned softmax layer weights s per task (mean ± std over seeds)."""
    fig, ax = plt.subplots(figsize=(8, 4.8))
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
    ax.set_title("Learned ELMo scalar-mix weights (mean ± std over seeds)", fontsize="medium")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, fontsize="small", frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
