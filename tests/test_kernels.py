"""Kernel choice per CPU: the switch, the bf16 fallback where oneDNN has no bf16 kernels, ``info``."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import spacy
import torch

from spacy_elmo import ElmoEmbedder
from spacy_elmo.bilm import kernels, onednn

BF16_REASON = f"this CPU has no oneDNN bf16 kernels: {onednn.why_not(torch.bfloat16)}"
SENTENCES = [["The", "bank", "approved", "the", "loan", "."], ["They", "fished", "by", "the", "river"]]


@pytest.fixture
def no_bf16_kernels(monkeypatch):
    """This CPU as one without oneDNN bf16 kernels (AVX2 only), in auto mode (whatever SPACY_ELMO_KERNELS
    says), with the one-time warning not yet given."""
    monkeypatch.setattr(onednn, "_bf16_kernels", lambda: False)
    monkeypatch.setattr(kernels, "_warned", set())
    with kernels.forced("auto"):
        yield


def test_parameter_versions_change_with_in_place_updates():
    # the packed weights, the token cache and the sequence cache rely on the private Tensor._version
    weight = torch.nn.Parameter(torch.zeros(3))
    before = onednn.versions([weight])
    assert before == onednn.versions([weight])
    with torch.no_grad():
        weight.add_(1.0)
    assert onednn.versions([weight]) != before
    assert onednn.versions([torch.nn.Parameter(torch.zeros(3))]) != before  # another storage


def test_onednn_ops_present_on_x86():
    # the fast path relies on private ops: if a torch release drops one, this fails instead of running slower
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512") and torch.backends.mkldnn.is_available():
        assert onednn.available(), f"torch {torch.__version__} lacks one of torch.ops.mkldnn.{onednn.OPS}"
    assert onednn.supports(torch.bfloat16) == (onednn.available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert not onednn.supports(torch.float64)


def test_mode_from_environment_and_context(monkeypatch):
    monkeypatch.delenv(kernels.ENV_VAR, raising=False)
    assert kernels.mode() == "auto"
    monkeypatch.setenv(kernels.ENV_VAR, "plain")
    assert kernels.mode() == "plain"
    with kernels.forced("onednn"):
        assert kernels.mode() == "onednn"
    assert kernels.mode() == "plain"
    monkeypatch.setenv(kernels.ENV_VAR, "fast")
    with pytest.raises(
        ValueError, match=r"SPACY_ELMO_KERNELS must be one of \('auto', 'plain', 'onednn'\), found 'fast'"
    ):
        kernels.mode()
    with pytest.raises(ValueError, match="kernel mode must be one of"):
        with kernels.forced("gpu"):
            pass


def test_plain_mode_never_uses_onednn():
    x = torch.zeros(2, 3)
    with torch.inference_mode():
        with kernels.forced("plain"):
            assert not kernels.use_onednn(x, torch.float32)
        with kernels.forced("auto"):
            assert kernels.use_onednn(x, torch.float32) == onednn.available()
    assert not kernels.use_onednn(x, torch.float32)  # autograd on: the training path


def test_bf16_falls_back_to_fp32_with_one_warning(parity_bilm, no_bf16_kernels):
    fp32 = parity_bilm.embed_sentences(SENTENCES)
    with pytest.warns(RuntimeWarning, match="precision 'bf16' runs as 'fp32' here: oneDNN's bf16 kernels need"):
        bf16 = parity_bilm.embed_sentences(SENTENCES, precision="bf16")
    for a, b in zip(fp32, bf16):
        assert np.array_equal(a, b)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process
        parity_bilm.embed_sentences(SENTENCES, precision="bf16")
    assert kernels.describe()["bf16_runs_as"] == "fp32" and kernels.describe()["onednn_bf16"] is False


def test_bf16_fallback_in_every_entry_point(parity_files, no_bf16_kernels, tmp_path):
    from spacy_elmo.embed import embed_file

    embedder = ElmoEmbedder(*map(str, parity_files))
    expected = embedder.embed_sentence(SENTENCES[0])
    with pytest.warns(RuntimeWarning, match="runs as 'fp32'"):
        embed_file(embedder.bilm, iter([" ".join(SENTENCES[0])]), tmp_path / "out.hdf5", precision="bf16")
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "elmo", config={"options_file": str(parity_files[0]), "weight_file": str(parity_files[1]), "precision": "bf16"}
    )
    doc = nlp(" ".join(SENTENCES[0]))
    assert np.array_equal(doc._.elmo_layers, expected)


def test_onednn_mode_refuses_what_the_cpu_cannot_run(parity_bilm, no_bf16_kernels):
    with kernels.forced("onednn"), pytest.raises(ValueError, match="SPACY_ELMO_KERNELS=onednn, but oneDNN cannot run"):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            parity_bilm(torch.ones(1, 2, 50, dtype=torch.long))


@pytest.mark.parametrize("mode", ["plain", "onednn"])
def test_bf16_runs_in_bf16_where_forced_or_supported(parity_bilm, mode):
    if mode == "onednn" and not onednn.supports(torch.bfloat16):
        pytest.skip(BF16_REASON)
    with kernels.forced(mode):
        fp32 = parity_bilm.embed_sentences(SENTENCES)
        bf16 = parity_bilm.embed_sentences(SENTENCES, precision="bf16")
    diff = max(np.abs(a - b).max() for a, b in zip(fp32, bf16))
    assert 0 < diff < 0.05 * max(np.abs(a).max() for a in fp32)


def test_describe_reports_the_machine():
    info = kernels.describe()
    assert set(info) == {
        "cpu",
        "cpu_capability",
        "cpu_features",
        "kernel_mode",
        "onednn_fp32",
        "onednn_bf16",
        "bf16_runs_as",
        "int8_kernel",
        "int8_runs_as",
        "torch_threads",
        "cuda_devices",
    }
    assert info["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert info["torch_threads"] == torch.get_num_threads() and info["onednn_fp32"] == onednn.available()
    assert set(info["cpu_features"]) <= {"AMX", "AVX512_BF16", "AVX512-VNNI", "AVX-512", "AVX2"}


def test_elmo_under_bf16_autocast_runs_without_bf16_kernels(parity_files, no_bf16_kernels):
    from spacy_elmo import Elmo, batch_to_ids

    elmo = Elmo(*map(str, parity_files), 1, dropout=0.0)
    ids = batch_to_ids(SENTENCES)
    expected = elmo(ids)["elmo_representations"][0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = elmo(ids)["elmo_representations"][0]
    assert (got.float() - expected).abs().max() < 0.05 * expected.abs().max()
