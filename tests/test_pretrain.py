"""biLM pretraining: loss goes down, export round trip, resume after a kill, DDP, the CLI, bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from spacy_elmo import load_bilm
from spacy_elmo.bilm import BiLMOptions
from spacy_elmo.cli import app
from spacy_elmo.training import TrainConfig, train
from spacy_elmo.training.checkpoint import load_checkpoint
from spacy_elmo.training.corpus import EncodedCorpus, read_sentences
from spacy_elmo.training.lm import BiLMWithSoftmax
from spacy_elmo.training.loop import learning_rate
from spacy_elmo.training.vocab import build_vocab

from .helpers import TINY, write_tiny_corpus

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]  # trains biLMs


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    return write_tiny_corpus(tmp_path_factory.mktemp("corpus"))


def _config(corpus: dict[str, Path], output: Path, **overrides) -> TrainConfig:
    settings = dict(
        train_file=str(corpus["train"]),
        heldout_file=str(corpus["heldout"]),
        output_dir=str(output),
        options_file=str(corpus["options"]),
        min_count=1,
        batch_tokens=400,
        lr=1e-2,
        dropout=0.0,
        max_steps=40,
        max_epochs=100,
        eval_every=10,
        checkpoint_every=10,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("run")
    train(_config(corpus, output))
    return output


def test_loss_goes_down(trained):
    final = json.loads((trained / "metrics.json").read_text())["final"]
    assert (final["fine_tuned_steps"], final["head_steps"], final["continues_trained"]) == (40, 0, False)
    history = json.loads((trained / "metrics.json").read_text())["history"]
    assert [h["step"] for h in history] == [10, 20, 30, 40]
    assert history[-1]["ppl"] < 0.7 * history[0]["ppl"]
    # the language has 20 word types; a trained LM is far better than uniform guessing
    assert history[-1]["forward_ppl"] < 10 and history[-1]["backward_ppl"] < 10


def test_bf16_autocast_trains_like_fp32(trained, corpus, tmp_path):
    # the adaptive softmax must stay fp32 under autocast (its index_copy_ rejects bf16 sources)
    train(_config(corpus, tmp_path, precision="bf16"))
    bf16 = json.loads((tmp_path / "metrics.json").read_text())["final"]
    fp32 = json.loads((trained / "metrics.json").read_text())["final"]
    assert bf16["step"] == fp32["step"] == 40
    assert bf16["ppl"] < 10 and abs(bf16["ppl"] - fp32["ppl"]) < 0.2 * fp32["ppl"]


def test_export_matches_trained_model_and_reloads(trained, tmp_path):
    state = load_checkpoint(trained / "checkpoints")
    model = BiLMWithSoftmax(BiLMOptions.from_json(state["options"]), state["vocab"])
    model.load_state_dict(state["model"])
    exported = load_bilm(trained / "options.json", trained / "weights.hdf5")
    sentences = [["the", "old", "dog", "sees", "a", "zebra", "."], ["park"]]
    expected = model.bilm.eval().embed_sentences(sentences)
    for got, want in zip(exported.embed_sentences(sentences), expected):
        np.testing.assert_array_equal(got, want)
    vocab = (trained / "vocab.txt").read_text(encoding="utf-8").split()
    assert vocab[:3] == ["<S>", "</S>", "<UNK>"] and "farmer" in vocab and exported.vocab == vocab
    exported.save(tmp_path)  # saving what was loaded gives the same files' content
    again = load_bilm(tmp_path / "options.json", tmp_path / "weights.hdf5")
    for got, want in zip(again.embed_sentences(sentences), expected):
        np.testing.assert_array_equal(got, want)


def test_checkpoint_loads_without_pickle(trained):
    state = torch.load(trained / "checkpoints" / "checkpoint.pt", weights_only=True)
    assert state["progress"]["step"] == 40 and state["vocab"][:3] == ["<S>", "</S>", "<UNK>"]


def test_resume_after_kill_gives_the_uninterrupted_result(corpus, tmp_path):
    killed = tmp_path / "killed"
    command = [
        sys.executable,
        "-m",
        "spacy_elmo",
        "pretrain",
        str(corpus["train"]),
        str(killed),
        "--heldout",
        str(corpus["heldout"]),
        "--options",
        str(corpus["options"]),
        "--min-count",
        "1",
        "--batch-tokens",
        "400",
        "--lr",
        "0.01",
        "--dropout",
        "0.0",
        "--max-steps",
        "100000",
        "--max-epochs",
        "100000",
        "--eval-every",
        "100000",
        "--checkpoint-every",
        "7",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = killed / "checkpoints" / "checkpoint.pt"
    deadline = time.time() + 120
    while not checkpoint.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "weights.hdf5").exists(), "the killed run must not have exported"
    step = load_checkpoint(killed / "checkpoints")["progress"]["step"]
    assert step > 0 and step % 7 == 0

    resumed = train(_config(corpus, killed, max_steps=step + 12, eval_every=100000, checkpoint_every=7), resume=True)
    straight = train(_config(corpus, tmp_path / "straight", max_steps=step + 12, eval_every=100000, checkpoint_every=7))
    assert resumed["step"] == straight["step"] == step + 12
    with h5py.File(killed / "weights.hdf5") as a, h5py.File(tmp_path / "straight" / "weights.hdf5") as b:
        names = []
        a.visit(lambda name: names.append(name) if isinstance(a[name], h5py.Dataset) else None)
        assert names
        for name in names:
            np.testing.assert_allclose(a[name][...], b[name][...], atol=1e-6, err_msg=name)


def test_two_process_ddp(corpus, tmp_path):
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "spacy_elmo",
        "pretrain",
        str(corpus["train"]),
        str(tmp_path),
        "--heldout",
        str(corpus["heldout"]),
        "--options",
        str(corpus["options"]),
        "--min-count",
        "1",
        "--batch-tokens",
        "200",
        "--max-steps",
        "6",
        "--eval-every",
        "3",
        "--checkpoint-every",
        "3",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    final = json.loads((tmp_path / "metrics.json").read_text())["final"]
    assert final["world_size"] == 2 and final["step"] == 6
    # each rank reads every other line; together they saw the whole corpus's tokens
    whole = EncodedCorpus(read_sentences(corpus["train"], 64), ["<S>", "</S>", "<UNK>"], 50)
    assert final["train_tokens"] == whole.n_tokens
    layers = load_bilm(tmp_path / "options.json", tmp_path / "weights.hdf5").embed_sentences([["the", "cat"]])
    assert layers[0].shape == (3, 2, 16) and np.isfinite(layers[0]).all()


def test_vocab_specials_first_and_ranked():
    vocab = build_vocab([["b", "a", "b"], ["c", "b", "a"], ["<S>"]], max_size=5, min_count=1)
    assert vocab == ["<S>", "</S>", "<UNK>", "b", "a"]


def test_learning_rate_schedules(corpus):
    constant = _config(corpus, Path("out"), lr=1e-3, warmup_steps=4, max_steps=10)
    assert [learning_rate(constant, step) for step in (0, 3, 9)] == pytest.approx([2.5e-4, 1e-3, 1e-3])
    linear = _config(corpus, Path("out"), lr=1e-3, warmup_steps=4, max_steps=10, lr_schedule="linear")
    assert [learning_rate(linear, step) for step in (0, 3, 5, 9)] == pytest.approx([2.5e-4, 7e-4, 5e-4, 1e-4])


def test_bad_input_messages(corpus, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"empty\.txt: no sentences"):
        train(_config(corpus, tmp_path / "out", train_file=str(empty)))
    with pytest.raises(ValueError, match=r"train file not found: .*missing\.txt"):
        train(_config(corpus, tmp_path / "out", train_file=str(tmp_path / "missing.txt")))
    with pytest.raises(ValueError, match=r"optimizer must be one of \('adam', 'adagrad'\), found 'sgd'"):
        train(_config(corpus, tmp_path / "out", optimizer="sgd"))
    with pytest.raises(ValueError, match="lr_schedule 'linear' decays to zero at max_steps"):
        train(_config(corpus, tmp_path / "out", lr_schedule="linear", max_steps=0, max_minutes=1.0))
    bad_options = tmp_path / "options.json"
    bad_options.write_text(
        json.dumps({**TINY.to_json(), "char_cnn": {**TINY.to_json()["char_cnn"], "activation": "gelu"}})
    )
    with pytest.raises(ValueError, match=r"options\.json.*gelu"):
        train(_config(corpus, tmp_path / "out", options_file=str(bad_options)))
    result = CliRunner().invoke(
        app,
        [
            "pretrain",
            str(empty),
            str(tmp_path / "out"),
            "--heldout",
            str(corpus["heldout"]),
            "--options",
            str(corpus["options"]),
        ],
    )
    assert result.exit_code == 1 and "no sentences" in result.output


def test_embed_cli_writes_allennlp_layout(parity_files, tmp_path):
    text = tmp_path / "input.txt"
    text.write_text("He went to the bank .\nHello world\n", encoding="utf-8")
    output = tmp_path / "out.hdf5"
    options, weights = parity_files
    result = CliRunner().invoke(
        app, ["embed", str(text), str(output), "--options", str(options), "--weights", str(weights)]
    )
    assert result.exit_code == 0, result.output
    with h5py.File(output) as f:
        assert f["0"].shape == (3, 6, 64) and f["1"].shape == (3, 2, 64)
        assert json.loads(f["sentence_to_index"][0]) == {"He went to the bank .": "0", "Hello world": "1"}
        expected = load_bilm(options, weights).embed_sentences([["Hello", "world"]])[0]
        np.testing.assert_allclose(f["1"][...], expected, atol=1e-6)
    missing = CliRunner().invoke(
        app, ["embed", str(tmp_path / "nope.txt"), str(output), "--options", str(options), "--weights", str(weights)]
    )
    assert missing.exit_code == 1 and "nope.txt" in missing.output


def test_init_from_continues_an_exported_model(trained, corpus, tmp_path, caplog):
    assert (trained / "lm_head.pt").is_file()
    first = json.loads((trained / "metrics.json").read_text())["history"][0]["ppl"]
    last = json.loads((trained / "metrics.json").read_text())["history"][-1]["ppl"]
    continued = train(_config(corpus, tmp_path, options_file=None, init_from=str(trained), max_steps=10, lr=1e-3))
    assert continued["ppl"] < first and continued["ppl"] < 1.2 * last
    assert "lm_head.pt" not in caplog.text
    assert continued["fine_tuned_steps"] == 10 and continued["continues_trained"]
    assert caplog.records[-1].getMessage().startswith("warning: only 10 steps fine-tuned the biLM (")
    headless = tmp_path / "headless"
    headless.mkdir()
    for name in ("options.json", "weights.hdf5", "vocab.txt"):
        shutil.copy(trained / name, headless / name)
    train(_config(corpus, tmp_path / "again", options_file=None, init_from=str(headless), max_steps=1))
    assert f"{headless} has no lm_head.pt: the softmax starts from scratch" in caplog.text
    with pytest.raises(ValueError, match=r"init_from .*nowhere: options\.json not found"):
        train(_config(corpus, tmp_path, options_file=None, init_from=str(tmp_path / "nowhere")))
    with pytest.raises(ValueError, match="either an options file"):
        train(_config(corpus, tmp_path, init_from=str(trained)))


def test_resume_of_a_finished_run_only_exports(trained, corpus, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    (copy / "weights.hdf5").unlink()
    metrics = train(_config(corpus, copy), resume=True)
    assert metrics["step"] == 40 and (copy / "weights.hdf5").is_file()
