"""Checkpoints: one written by the code before `Progress` resumes bitwise; broken ones give one clear line."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from spacy_elmo.training import TrainConfig, train
from spacy_elmo.training.progress import Progress

OLD = Path(__file__).parent / "data" / "old_checkpoint"


@pytest.fixture
def old_run(tmp_path, monkeypatch) -> Path:
    """A copy of the old checkpoint's folder as the working directory (the checkpoint names relative paths)."""
    for name in ("train.txt", "heldout.txt", "options.json"):
        shutil.copy(OLD / name, tmp_path / name)
    shutil.copytree(OLD / "checkpoints", tmp_path / "run" / "checkpoints")
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path
    torch.set_num_threads(threads)


def _config(output: str, **overrides) -> TrainConfig:
    settings = dict(
        train_file="train.txt",
        heldout_file="heldout.txt",
        output_dir=output,
        options_file="options.json",
        min_count=1,
        batch_tokens=200,
        lr=1e-2,
        dropout=0.1,
        max_steps=9,
        max_epochs=100,
        eval_every=3,
        checkpoint_every=3,
    )
    return TrainConfig(**{**settings, **overrides})


def _datasets(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path) as f:
        names: list[str] = []
        f.visit(lambda name: names.append(name) if isinstance(f[name], h5py.Dataset) else None)
        return {name: f[name][...] for name in names}


@pytest.mark.slow
def test_an_old_checkpoint_resumes_like_an_uninterrupted_run(old_run):
    """The old checkpoint's six steps were computed on another CPU (AVX-512 kernels), so an uninterrupted run here
    matches its weights to float rounding, not bit for bit (test_pretrain resumes a checkpoint of this machine's
    and checks that bitwise); the metrics, rounded as recorded, agree exactly."""
    old = torch.load(old_run / "run" / "checkpoints" / "checkpoint.pt", weights_only=True)
    assert old["progress"]["step"] == 6 and old["config"]["init_from"] == ""  # the old format
    resumed = train(_config("run"), resume=True)
    straight = train(_config("straight"))
    assert resumed == {**straight, "train_minutes": resumed["train_minutes"]}
    a, b = _datasets(old_run / "run" / "weights.hdf5"), _datasets(old_run / "straight" / "weights.hdf5")
    assert a.keys() == b.keys()
    for name, value in a.items():
        np.testing.assert_allclose(value, b[name], rtol=0, atol=2e-5, err_msg=name)
    new = torch.load(old_run / "run" / "checkpoints" / "checkpoint.pt", weights_only=True)
    assert new["progress"]["step"] == 9 and new["progress"]["history"][:2] == old["progress"]["history"]


def _broken(old_run: Path, change) -> str:
    path = old_run / "run" / "checkpoints" / "checkpoint.pt"
    state = torch.load(OLD / "checkpoints" / "checkpoint.pt", weights_only=True)
    change(state)
    torch.save(state, path)
    with pytest.raises(ValueError) as error:
        train(_config("run"), resume=True)
    return str(error.value)


def test_a_checkpoint_without_an_entry_names_the_file_and_the_entry(old_run):
    path = Path("run") / "checkpoints" / "checkpoint.pt"
    message = _broken(old_run, lambda state: state["progress"].pop("epoch"))
    assert message == f"{path}: cannot resume: the checkpoint's progress lacks epoch"
    message = _broken(old_run, lambda state: state.pop("optimizer"))
    assert message == f"{path}: cannot resume: the checkpoint lacks optimizer"
    message = _broken(old_run, lambda state: state["progress"].update(phase="warmup"))
    assert message == f"{path}: cannot resume: unknown phase 'warmup' (expected one of ('head', 'full'))"
    message = _broken(old_run, lambda state: state["config"].update(train_file="other.txt"))
    assert message == f"{path.parent}: the checkpoint was trained on other.txt, not train.txt"


def test_progress_round_trip_and_checkpoints_from_before_the_phases():
    progress = Progress(phase="head", step=7, epoch=1, batch=2, tokens=90, seconds=1.5, phase_start=0, head_ppl=3.0)
    progress.history.append({"step": 5, "ppl": 3.0})
    assert Progress.from_checkpoint(progress.to_checkpoint(), "full", Path("c.pt")) == progress
    before_phases = {"step": 4, "epoch": 0, "batch": 4, "tokens": 40, "seconds": 0.5, "history": []}
    restored = Progress.from_checkpoint(before_phases, "full", Path("c.pt"))
    assert (restored.phase, restored.phase_start, restored.head_ppl, restored.step) == ("full", 0, 0.0, 4)
    with pytest.raises(ValueError, match=r"^c\.pt: cannot resume: the checkpoint's progress has unknown stage$"):
        Progress.from_checkpoint({**before_phases, "stage": 1}, "full", Path("c.pt"))
