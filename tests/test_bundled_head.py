"""The bundled biLM ships its trained softmax (``lm_head.pt``): adapting it starts from that softmax."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from spacy_elmo.bilm.model import DEFAULT_MODEL_DIR
from spacy_elmo.training.adapt import adapt, model_files

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]  # trains biLMs

TEXT = """The committee will meet again next week to discuss the new budget .
She said that the weather had been much colder than usual this year .
Several people were injured when the bus left the road near the town .
He has written three books about the history of the city .
The company reported a loss of two million dollars in the first quarter .
They walked along the river until the sun went down .
Most of the students passed the exam , but a few will take it again .
The government announced plans to build more schools in rural areas .
I think we should leave early to avoid the traffic .
The old house at the end of the street was sold last month ."""


def _step0_perplexity(model_dir: str, tmp_path: Path, name: str) -> tuple[float, str]:
    """Held-out perplexity before any training step, and the phase the run starts in."""
    text = tmp_path / "text.txt"
    text.write_text(TEXT + "\n", encoding="utf-8")
    output = tmp_path / name
    adapt(
        model_dir,
        str(text),
        str(text),
        str(output),
        max_steps=1,
        batch_tokens=200,
        eval_every=1,
        head_eval_every=1,
        checkpoint_every=1,
        max_epochs=1,
    )
    first = json.loads((output / "metrics.json").read_text())["history"][0]
    return first["ppl"], first["phase"]


def test_the_bundled_softmax_is_shipped_trained_and_used(tmp_path: Path, caplog):
    files = model_files("default")
    assert files.head == DEFAULT_MODEL_DIR / "lm_head.pt" and files.head.is_file()
    caplog.set_level(logging.INFO)
    shipped, phase = _step0_perplexity("default", tmp_path, "shipped")
    assert phase == "full" and "no head warm-up" in caplog.text
    headless = tmp_path / "headless"
    headless.mkdir()
    for name in ("options.json", "weights.hdf5", "vocab.txt"):
        (headless / name).symlink_to(DEFAULT_MODEL_DIR / name)
    fresh, phase = _step0_perplexity(str(headless), tmp_path, "fresh")
    assert phase == "head"
    # measured on these ten sentences: 79.8 with the shipped softmax, 813.7 with a new one
    assert shipped < 150 and shipped < 0.2 * fresh
