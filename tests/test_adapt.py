"""Domain adaptation (`spacy-elmo adapt`): head warm-up, fine-tuning, resume, vocabularies, bad inputs."""

from __future__ import annotations

import json
import logging
import random
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import typer.main
from typer.testing import CliRunner

from spacy_elmo.bilm import BiLMOptions
from spacy_elmo.bilm.model import DEFAULT_MODEL_DIR, read_vocab
from spacy_elmo.cli import app
from spacy_elmo.training import TrainConfig, train
from spacy_elmo.training.adapt import ADAPT_LR, adapt, model_files, recipe_settings
from spacy_elmo.training.lm import BiLMWithSoftmax

from .helpers import TINY, tiny_sentence

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]  # trains biLMs

PEOPLE = ["nurse", "doctor", "patient", "surgeon"]
ACTS = ["treats", "examines", "calls", "visits"]
PLACES = ["ward", "clinic", "theatre"]


def _domain_sentence(rng: random.Random) -> str:
    """The new domain: other words and another word order than the source model's language."""
    words = ["a", rng.choice(PEOPLE), rng.choice(ACTS), "a", rng.choice(PEOPLE), "at", "the", rng.choice(PLACES)]
    return " ".join(words + (["today"] if rng.random() < 0.5 else []) + ["."])


def _write(path: Path, make, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    path.write_text("\n".join(make(rng) for _ in range(n)) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory, one_thread) -> dict[str, Path]:
    """A biLM trained on the source language (exported with its lm_head.pt) and the domain's text."""
    root = tmp_path_factory.mktemp("adapt")
    options = root / "options.json"
    options.write_text(json.dumps(TINY.to_json()), encoding="utf-8")
    source = _write(root / "source.txt", tiny_sentence, 300, 0)
    source_heldout = _write(root / "source_heldout.txt", tiny_sentence, 40, 1)
    train(
        TrainConfig(
            train_file=str(source),
            heldout_file=str(source_heldout),
            output_dir=str(root / "source"),
            options_file=str(options),
            min_count=1,
            batch_tokens=400,
            lr=1e-2,
            dropout=0.0,
            max_steps=60,
            max_epochs=100,
            eval_every=60,
        )
    )
    headless = root / "headless"
    headless.mkdir()
    for name in ("options.json", "weights.hdf5", "vocab.txt"):
        shutil.copy(root / "source" / name, headless / name)
    released = root / "released"  # as the released files: no vocabulary, no softmax
    released.mkdir()
    for name in ("options.json", "weights.hdf5"):
        shutil.copy(root / "source" / name, released / name)
    return {
        "source": root / "source",
        "headless": headless,
        "released": released,
        "source_text": source,
        "source_heldout": source_heldout,
        "train": _write(root / "domain.txt", _domain_sentence, 300, 2),
        "heldout": _write(root / "domain_heldout.txt", _domain_sentence, 40, 3),
    }


def _adapt(data: dict[str, Path], model: Path | str, output: Path, **settings) -> dict:
    defaults = dict(
        min_count=1,
        batch_tokens=400,
        lr=3e-3,
        head_lr=1e-2,
        dropout=0.0,
        max_steps=60,
        max_epochs=100,
        eval_every=20,
        checkpoint_every=10,
        head_eval_every=5,
        head_min_gain=0.05,
        head_max_steps=40,
    )
    return adapt(str(model), str(data["train"]), str(data["heldout"]), str(output), **{**defaults, **settings})


def _datasets(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path) as f:
        names: list[str] = []
        f.visit(lambda name: names.append(name) if isinstance(f[name], h5py.Dataset) else None)
        return {name: f[name][...] for name in names}


def _history(output: Path) -> list[dict]:
    return json.loads((output / "metrics.json").read_text())["history"]


def test_head_only_leaves_the_bilm_bitwise_unchanged_and_lowers_perplexity(data, tmp_path):
    _adapt(data, data["headless"], tmp_path, head_only=True, max_steps=30, eval_every=10)
    original, exported = _datasets(data["headless"] / "weights.hdf5"), _datasets(tmp_path / "weights.hdf5")
    assert original.keys() == exported.keys()
    for name, value in original.items():
        assert np.array_equal(value, exported[name]), name
    history = _history(tmp_path)
    assert [(h["step"], h["phase"]) for h in history] == [(0, "head"), (10, "head"), (20, "head"), (30, "head")]
    assert history[-1]["ppl"] < 0.5 * history[0]["ppl"]
    assert (tmp_path / "lm_head.pt").is_file() and (tmp_path / "vocab.txt").read_text() == (
        data["headless"] / "vocab.txt"
    ).read_text()


def test_warmup_stops_by_its_rule_then_fine_tuning_lowers_perplexity(data, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    metrics = _adapt(data, data["headless"], tmp_path, vocab="corpus", head_min_gain=0.1)
    assert "head warm-up first" in caplog.text and "vocabulary: built from" in caplog.text
    history = _history(tmp_path)
    warmup = [h for h in history if h["phase"] == "head"]
    switch = metrics["phase_start"]
    assert metrics["phase"] == "full" and 0 < switch < 40 and warmup[-1]["step"] == switch
    assert [h["step"] for h in warmup] == list(range(0, switch + 1, 5))
    gains = [(a["ppl"] - b["ppl"]) / a["ppl"] for a, b in zip(warmup, warmup[1:])]
    assert all(g >= 0.1 for g in gains[:-1]) and gains[-1] < 0.1  # the rule: the first gain under 10%
    assert warmup[-1]["ppl"] < 0.5 * warmup[0]["ppl"]  # the head learned with the biLM frozen
    # the warm-up has its own budget: max_steps=60 counts the fine-tuning alone
    assert metrics["step"] == switch + 60 and (metrics["head_steps"], metrics["fine_tuned_steps"]) == (switch, 60)
    assert metrics["ppl"] < 0.9 * warmup[-1]["ppl"]  # fine-tuning on the domain helps
    assert f"head warm-up done at step {switch}" in caplog.text
    epochs = metrics["fine_tuned_epochs"]
    assert epochs == pytest.approx(60 / metrics["batches_per_epoch"])
    assert f"fine-tuned the biLM for 60 steps ({epochs:.2f} epochs) after a {switch}-step head warm-up" in caplog.text
    assert caplog.records[-1].getMessage().startswith("warning: only 60 steps fine-tuned the biLM")


def test_the_rule_can_end_at_the_cap_then_fine_tuning_starts_a_fresh_epoch(data, tmp_path, caplog):
    metrics = _adapt(data, data["headless"], tmp_path, head_min_gain=0.0, head_max_steps=22, max_steps=5)
    assert metrics["phase"] == "full" and metrics["phase_start"] == 22  # ended by the cap
    # 9 batches an epoch: the warm-up ended 4 batches into its third epoch, fine-tuning began the fourth
    assert metrics["batches_per_epoch"] == 9 and metrics["fine_tuned_steps"] == 5
    assert metrics["fine_tuned_epochs"] == pytest.approx(5 / 9) and metrics["epochs"] == pytest.approx(3 + 5 / 9)
    assert caplog.records[-1].levelname == "WARNING" and caplog.records[-1].getMessage() == (
        "warning: only 5 steps fine-tuned the biLM (0.56 epochs of 9 batches): it has barely moved from the "
        "input biLM; raise --max-epochs (or --max-steps), or lower --batch-tokens"
    )


def test_a_run_that_ends_in_the_warmup_says_the_bilm_is_unchanged(data, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    metrics = _adapt(data, data["headless"], tmp_path, max_minutes=1e-9)  # stops after the first step
    assert (metrics["step"], metrics["phase"], metrics["fine_tuned_steps"]) == (1, "head", 0)
    assert json.loads((tmp_path / "metrics.json").read_text())["final"]["fine_tuned_steps"] == 0
    original, exported = _datasets(data["headless"] / "weights.hdf5"), _datasets(tmp_path / "weights.hdf5")
    assert all(np.array_equal(value, exported[name]) for name, value in original.items())
    assert caplog.records[-1].getMessage() == (
        "warning: the biLM was NOT fine-tuned: the run ended in the head warm-up at step 1, so the exported "
        "weights are the input biLM's, unchanged (raise --max-minutes, or resume)"
    )
    assert "the biLM was NOT fine-tuned (the run ended in a 1-step head warm-up)" in caplog.text


def test_one_epoch_is_one_pass_of_fine_tuning_after_the_warmup(data, tmp_path):
    metrics = _adapt(data, data["headless"], tmp_path, max_steps=0, max_epochs=1)
    assert metrics["phase"] == "full" and metrics["head_steps"] == metrics["phase_start"] > 0
    assert metrics["fine_tuned_steps"] == metrics["batches_per_epoch"] == 9 and metrics["fine_tuned_epochs"] == 1.0


def test_model_with_its_softmax_skips_the_warmup(data, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    metrics = _adapt(data, data["source"], tmp_path, max_steps=20)
    assert "no head warm-up" in caplog.text
    history = _history(tmp_path)
    assert history[0]["phase"] == "full" and metrics["phase_start"] == 0
    assert metrics["ppl"] < history[0]["ppl"]  # the source model's words are partly the domain's ("the", ".")


def test_released_weights_without_vocabulary_or_softmax(data, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    metrics = _adapt(data, data["released"], tmp_path, max_steps=45)
    assert "the model has no vocab.txt" in caplog.text
    vocab = (tmp_path / "vocab.txt").read_text(encoding="utf-8").split()
    assert "nurse" in vocab and "farmer" not in vocab
    assert metrics["phase"] == "full" and metrics["ppl"] < 0.5 * _history(tmp_path)[0]["ppl"]


def test_a_released_model_by_name(data, tmp_path, mirror, monkeypatch):
    monkeypatch.setenv("SPACY_ELMO_MIRROR", mirror.base)
    files = model_files("small")
    assert files.vocab is None and files.head is None
    metrics = _adapt(data, "small", tmp_path, max_steps=6, head_max_steps=3)
    assert metrics["step"] == 3 + 6 and metrics["phase"] == "full" and metrics["fine_tuned_steps"] == 6
    assert model_files("default").options.parent.name == "default"


def test_a_softmax_shipped_beside_the_bundled_model_is_used(data, tmp_path, monkeypatch, caplog):
    from spacy_elmo.hub import spec as spec_module

    bundled = tmp_path / "default"
    bundled.mkdir()
    for name in ("options.json", "weights.hdf5", "vocab.txt"):
        (bundled / name).symlink_to(DEFAULT_MODEL_DIR / name)
    model = BiLMWithSoftmax(BiLMOptions.read(bundled / "options.json"), read_vocab(bundled / "vocab.txt"))
    torch.save(model.softmax.state_dict(), bundled / "lm_head.pt")
    monkeypatch.setattr(spec_module, "DEFAULT_MODEL_DIR", bundled)
    files = model_files("default")
    assert files.head == bundled / "lm_head.pt" and files.vocab == bundled / "vocab.txt"
    caplog.set_level(logging.INFO)
    metrics = _adapt(data, "default", tmp_path / "out", max_steps=1, batch_tokens=200)
    assert "no head warm-up" in caplog.text and metrics["phase"] == "full" and metrics["vocab_size"] == 44233


def test_resume_equals_the_uninterrupted_run(data, tmp_path):
    straight = _adapt(data, data["headless"], tmp_path / "straight", max_steps=30)
    assert straight["phase_start"] > 10  # the resumed run crosses the phase change
    stopped = _adapt(data, data["headless"], tmp_path / "resumed", max_steps=30, max_minutes=1e-9)
    assert (stopped["phase"], stopped["step"]) == ("head", 1)  # stopped in the warm-up
    resumed = _adapt(data, data["headless"], tmp_path / "resumed", max_steps=30, resume=True)
    assert resumed["phase_start"] == straight["phase_start"] and resumed["step"] == straight["phase_start"] + 30
    a, b = _datasets(tmp_path / "straight" / "weights.hdf5"), _datasets(tmp_path / "resumed" / "weights.hdf5")
    for name, value in a.items():
        np.testing.assert_allclose(value, b[name], atol=1e-6, err_msg=name)
    head_a = torch.load(tmp_path / "straight" / "lm_head.pt", weights_only=True)
    head_b = torch.load(tmp_path / "resumed" / "lm_head.pt", weights_only=True)
    for name, value in head_a.items():
        torch.testing.assert_close(value, head_b[name], atol=1e-6, rtol=0, msg=name)


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["adapt", *args])
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    return result.exit_code, errors[0] if len(errors) == 1 else result.output


def test_bad_inputs_give_one_clear_line(data, tmp_path):
    corpus = [str(data["train"]), str(tmp_path / "out"), "--heldout", str(data["heldout"])]
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    code, line = _cli(str(data["source"]), str(empty), *corpus[1:])
    assert code == 1 and "empty.txt: no sentences" in line
    code, line = _cli(str(tmp_path / "nowhere"), *corpus)
    assert code == 1 and "nowhere: not a model name or a directory" in line
    code, line = _cli("no-such-model", *corpus)
    assert code == 1 and "unknown ELMo model name 'no-such-model'" in line
    broken = tmp_path / "broken"
    shutil.copytree(data["released"], broken)
    (broken / "weights.hdf5").write_bytes(b"not hdf5")
    code, line = _cli(str(broken), *corpus)
    assert code == 1 and "weights.hdf5: not a readable HDF5 weight file" in line
    mismatched = tmp_path / "mismatched"  # a softmax for another vocabulary beside the model
    shutil.copytree(data["source"], mismatched)
    (mismatched / "vocab.txt").write_text("<S>\n</S>\n<UNK>\nnurse\n", encoding="utf-8")
    code, line = _cli(str(mismatched), *corpus)
    assert code == 1 and "lm_head.pt: this softmax does not fit the 4-word vocabulary" in line
    code, line = _cli(str(data["source"]), *corpus, "--vocab", "mine")
    assert code == 1 and "vocab must be one of" in line
    code, line = _cli(str(data["source"] / "options.json"), *corpus)
    assert code == 1 and "an options file needs --weights" in line


TOKEN_LAYER = ("char_embed", "CNN/", "CNN_high_", "CNN_proj/")


def _changed(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> set[str]:
    return {name for name, value in before.items() if not np.array_equal(value, after[name])}


def test_freezing_keeps_the_frozen_layers_bitwise(data, tmp_path):
    original = _datasets(data["source"] / "weights.hdf5")
    lstm1 = {name for name in original if "/Cell0/" in name}
    lstm2 = {name for name in original if "/Cell1/" in name}
    token = {name for name in original if name.startswith(TOKEN_LAYER)}
    assert token and lstm1 and lstm2 and token | lstm1 | lstm2 == set(original)
    for freeze, frozen in (("none", set()), ("token", token), ("token+lstm1", token | lstm1)):
        metrics = _adapt(data, data["source"], tmp_path / freeze, max_steps=8, freeze=freeze)
        assert metrics["fine_tuned_steps"] == 8 and metrics["freeze"] == freeze
        assert _changed(original, _datasets(tmp_path / freeze / "weights.hdf5")) == set(original) - frozen, freeze


def test_lower_layers_train_at_smaller_rates(data, tmp_path):
    original = _datasets(data["source"] / "weights.hdf5")
    moved = {}
    for factor in (1.0, 0.1):
        output = tmp_path / str(factor)
        _adapt(data, data["source"], output, max_steps=8, lr=3e-3, lower_lr_factor=factor)
        after = _datasets(output / "weights.hdf5")
        moved[factor] = {
            part: max(float(np.abs(after[n] - original[n]).max()) for n in original if n.startswith(prefix))
            for part, prefix in (("token", "CNN_proj/"), ("top", "RNN_0/RNN/MultiRNNCell/Cell1/"))
        }
    groups = torch.load(tmp_path / "0.1" / "checkpoints" / "checkpoint.pt", weights_only=True)["optimizer"]
    # token layer, first and second biLSTM layer, softmax: the rate at the last step times 0.1 ** depth
    assert [g["lr"] for g in groups["param_groups"]] == pytest.approx([3e-5, 3e-4, 3e-3, 3e-3])
    # Adam's steps scale with the rate: the token layer moves about 100 times less, the top layer as before
    assert moved[0.1]["token"] < 0.05 * moved[1.0]["token"]
    assert moved[0.1]["top"] == pytest.approx(moved[1.0]["top"], rel=0.5)


def test_python_and_cli_default_to_the_chosen_recipe(data, tmp_path):
    settings = dict(min_count=1, batch_tokens=400, dropout=0.0, max_steps=2, checkpoint_every=1, eval_every=2)
    adapt(str(data["source"]), str(data["train"]), str(data["heldout"]), str(tmp_path / "out"), **settings)
    groups = torch.load(tmp_path / "out" / "checkpoints" / "checkpoint.pt", weights_only=True)["optimizer"]
    assert [g["lr"] for g in groups["param_groups"]] == [3e-4] * len(groups["param_groups"])
    # the sweep's best with general text: 3 epochs at a mix ratio of 0.5; without: 1 epoch, no mixing
    assert recipe_settings({}) == {"lr": 3e-4, "mix_ratio": 0.0, "max_epochs": 1}
    assert recipe_settings({"mix_file": "general.txt"}) == {
        "mix_file": "general.txt",
        "lr": 3e-4,
        "mix_ratio": 0.5,
        "max_epochs": 3,
    }
    given = {"mix_file": "general.txt", "lr": 1e-4, "mix_ratio": 0.2, "max_epochs": 2}
    assert recipe_settings(given) == given
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())["final"]
    assert metrics["mix_ratio"] == 0.0 and metrics["freeze"] == "none" and metrics["lower_lr_factor"] == 1.0
    options = {param.name: param for param in typer.main.get_command(app).commands["adapt"].params}
    assert options["lr"].default == ADAPT_LR == 3e-4
    assert options["max_epochs"].default is None and options["mix_ratio"].default is None
    assert options["freeze"].default == "none" and options["lower_lr_factor"].default == 1.0


def test_a_mix_corpus_alone_runs_the_recipe(data, tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "adapt",
            str(data["source"]),
            str(data["train"]),
            str(tmp_path / "out"),
            "--heldout",
            str(data["heldout"]),
            "--mix-corpus",
            str(data["source_text"]),
            "--min-count",
            "1",
            "--batch-tokens",
            "400",
            "--max-steps",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output[-2000:]
    final = json.loads((tmp_path / "out" / "metrics.json").read_text())["final"]
    assert final["mix_ratio"] == 0.5 and final["fine_tuned_steps"] == 3
    config = torch.load(tmp_path / "out" / "checkpoints" / "checkpoint.pt", weights_only=False)["config"]
    assert config["max_epochs"] == 3 and config["lr"] == 3e-4


def _source_perplexity(data: dict[str, Path], output: Path) -> float:
    from spacy_elmo.training.checkpoint import load_checkpoint
    from spacy_elmo.training.corpus import EncodedCorpus, read_sentences
    from spacy_elmo.training.evaluation import evaluate

    state = load_checkpoint(output / "checkpoints")
    model = BiLMWithSoftmax(BiLMOptions.from_json(state["options"]), state["vocab"])
    model.load_state_dict(state["model"])
    heldout = EncodedCorpus(read_sentences(data["source_heldout"], 64), state["vocab"], 50)
    return evaluate(model, heldout, 400, torch.device("cpu"))["ppl"]


def test_mixing_general_text_keeps_more_of_the_source_language(data, tmp_path):
    plain = _adapt(data, data["source"], tmp_path / "plain", max_steps=0, max_epochs=3)
    mixed = _adapt(
        data,
        data["source"],
        tmp_path / "mixed",
        max_steps=0,
        max_epochs=3,
        mix_file=str(data["source_text"]),
        mix_ratio=0.5,
    )
    # one epoch is still one pass over the domain text; the mix adds as many general sentences (ratio 0.5)
    assert mixed["train_tokens"] == plain["train_tokens"] and mixed["fine_tuned_epochs"] == 3.0
    assert mixed["batches_per_epoch"] > 1.6 * plain["batches_per_epoch"]
    assert _source_perplexity(data, tmp_path / "mixed") < 0.8 * _source_perplexity(data, tmp_path / "plain")
    assert mixed["ppl"] < mixed["start_ppl"]  # and it still adapts to the domain


def test_bad_protection_settings_give_one_clear_line(data, tmp_path):
    corpus = [str(data["train"]), str(tmp_path / "out"), "--heldout", str(data["heldout"])]
    code, line = _cli(str(data["source"]), *corpus, "--mix-ratio", "0.5")
    assert code == 1 and "needs both a mix corpus (mix_file) and a mix_ratio above 0" in line
    code, line = _cli(str(data["source"]), *corpus, "--mix-corpus", str(tmp_path / "nope.txt"), "--mix-ratio", "0.5")
    assert code == 1 and "mix file not found:" in line and "nope.txt" in line
    code, line = _cli(str(data["source"]), *corpus, "--mix-corpus", str(data["train"]), "--mix-ratio", "1")
    assert code == 1 and "mix_ratio must be in [0, 1), found 1.0" in line
    code, line = _cli(str(data["source"]), *corpus, "--freeze", "lstm")
    assert code == 1 and "freeze must be one of ('none', 'token', 'token+lstm1'), found 'lstm'" in line
    code, line = _cli(str(data["source"]), *corpus, "--lower-lr-factor", "0")
    assert code == 1 and "lower_lr_factor must be in (0, 1], found 0.0" in line


def test_layer_parameters_hold_every_parameter_once(data):
    from spacy_elmo.training.build import layer_parameters

    model = BiLMWithSoftmax(TINY, ["<S>", "</S>", "<UNK>", "a", "b"])
    layers = layer_parameters(model)
    assert len(layers) == 4 and sorted(map(id, sum(layers, []))) == sorted(map(id, model.parameters()))


def test_a_step_budget_counts_fine_tuning_steps_not_the_head_warm_up(data, tmp_path, parity_files, caplog):
    # a model without softmax, --max-steps 30 and the default --max-epochs 1: the head warm-up has its own budget,
    # so the biLM is still fine-tuned for a whole epoch and changes. (--head-max-steps keeps the warm-up short.)
    caplog.set_level(logging.INFO)
    output = tmp_path / "out"
    options, weights = parity_files
    code, text = _cli(
        str(options.parent),
        str(data["train"]),
        str(output),
        "--heldout",
        str(data["heldout"]),
        "--max-steps",
        "30",
        "--head-max-steps",
        "20",
    )
    assert code == 0, text
    final = json.loads((output / "metrics.json").read_text())["final"]
    assert final["phase"] == "full" and final["head_steps"] == 20
    assert final["fine_tuned_steps"] == final["batches_per_epoch"] > 0  # one epoch of fine-tuning
    assert _changed(_datasets(weights), _datasets(output / "weights.hdf5")) == set(_datasets(weights))
    steps = final["fine_tuned_steps"]
    assert f"fine-tuned the biLM for {steps} steps (1.00 epochs) after a 20-step head warm-up" in caplog.text
    assert caplog.records[-1].getMessage().startswith(f"warning: only {steps} steps fine-tuned the biLM")
