"""Training options out of range are refused before any work, and a run whose loss, gradients or weights become
NaN or infinite stops with one line and exports nothing."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spacy_elmo.cli import app
from spacy_elmo.training import TrainConfig

from .helpers import write_tiny_corpus

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    return write_tiny_corpus(tmp_path_factory.mktemp("corpus"))


def run_cli(*args: object) -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, [line for line in result.output.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize(
    "setting, value, message",
    [
        ("lr", 1e30, "lr must be in (0, 10], found 1e+30"),
        ("lr", math.nan, "lr must be in (0, 10], found nan"),
        ("head_lr", -1.0, "head_lr must be in (0, 10], found -1.0"),
        ("clip", -1.0, "clip must be in (0, 1e+06], found -1.0"),
        ("clip", math.inf, "clip must be in (0, 1e+06], found inf"),
        ("warmup_steps", -1, "warmup_steps must be >= 0, found -1"),
        ("max_steps", -5, "max_steps must be >= 0, found -5"),
        ("max_minutes", math.inf, "max_minutes must be a finite number >= 0, found inf"),
        ("dropout", math.nan, "dropout must be in [0, 1), found nan"),
    ],
)
def test_numeric_options_out_of_range_are_refused(corpus, tmp_path, setting, value, message):
    config = TrainConfig(
        train_file=str(corpus["train"]),
        heldout_file=str(corpus["heldout"]),
        output_dir=str(tmp_path / "out"),
        options_file=str(corpus["options"]),
        **{setting: value},
    )
    with pytest.raises(ValueError) as error:
        config.validate()
    assert str(error.value) == message


def test_the_cli_refuses_a_negative_clip_and_head_lr_before_training(corpus, tmp_path):
    code, errors = run_cli(
        "pretrain", corpus["train"], tmp_path / "p", "--heldout", corpus["heldout"], "--options", corpus["options"],
        "--clip", "-1",
    )  # fmt: skip
    assert (code, errors) == (1, ["error: clip must be in (0, 1e+06], found -1.0"])
    code, errors = run_cli("adapt", "default", corpus["train"], tmp_path / "a", "--heldout", corpus["heldout"],
                           "--head-lr", "-1")  # fmt: skip
    assert (code, errors) == (1, ["error: head_lr must be in (0, 10], found -1.0"])
    assert not (tmp_path / "p").exists() or not any((tmp_path / "p").iterdir())
    assert not (tmp_path / "a" / "weights.hdf5").exists()


@pytest.mark.slow
def test_a_run_that_diverges_stops_with_one_line_and_exports_nothing(corpus, tmp_path):
    out = tmp_path / "out"
    code, errors = run_cli(
        "pretrain", corpus["train"], out, "--heldout", corpus["heldout"], "--options", corpus["options"],
        "--lr", "10", "--clip", "1000000", "--min-count", "1", "--batch-tokens", "400", "--dropout", "0",
        "--max-steps", "40", "--max-epochs", "100", "--eval-every", "10", "--checkpoint-every", "10",
    )  # fmt: skip
    assert code == 1 and len(errors) == 1, errors
    assert errors[0].startswith("error: training diverged at step ")
    assert errors[0].endswith(
        "; nothing was exported: lower the learning rate (lr 10, head_lr 0.001) or the clip (1e+06)"
    )
    for name in ("options.json", "weights.hdf5", "vocab.txt", "lm_head.pt", "metrics.json"):
        assert not (out / name).exists()
