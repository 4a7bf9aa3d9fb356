"""The biLM core: AllenNLP parity, batch invariance, odd tokens, format errors, save/load."""

from __future__ import annotations

import json
import random
import shutil

import h5py
import numpy as np
import pytest
import torch

from spacy_elmo import load_bilm
from spacy_elmo.bilm import BiLM, BiLMOptions, batch_char_ids, kernels, onednn, token_char_ids

from .helpers import PARITY


def test_parity_with_allennlp(parity_bilm, parity_sentences):
    expected = np.load(PARITY / "expected.npz")
    outputs = parity_bilm.embed_sentences(parity_sentences)
    assert len(outputs) == len(parity_sentences) == 13
    worst = 0.0
    for i, (sentence, out) in enumerate(zip(parity_sentences, outputs)):
        ref = expected[f"s{i}"]
        assert out.dtype == np.float32
        assert out.shape == ref.shape == (3, len(sentence), 64)
        worst = max(worst, float(np.abs(out - ref).max()))
    assert worst <= 1e-3
    # A wrong gate order or clip is off by ~1; the float32 implementation is far closer than the bound.
    assert worst < 1e-4


def test_layer_zero_is_duplicated_token_layer(parity_bilm, parity_sentences):
    out = parity_bilm.embed_sentences(parity_sentences[:1])[0]
    np.testing.assert_array_equal(out[0, :, :32], out[0, :, 32:])


def _varied_batch(rng: random.Random, n: int) -> list[list[str]]:
    words = ["the", "bank", "river", "money", "x" * 70, "café", "日本", "😀", "a", "."]
    return [[rng.choice(words) for _ in range(rng.randint(0, 35))] for _ in range(n)]


def test_batch_composition_and_history_do_not_matter(parity_bilm, parity_sentences):
    target = parity_sentences[4]
    alone = parity_bilm.embed_sentences([target])[0]
    batch = _varied_batch(random.Random(0), 31)
    batch.insert(17, target)
    inside = parity_bilm.embed_sentences(batch, batch_size=32)[17]
    assert np.abs(alone - inside).max() <= 5e-4
    # the same call again, after other calls, gives the same numbers (no state carried over)
    parity_bilm.embed_sentences(_varied_batch(random.Random(1), 8))
    again = parity_bilm.embed_sentences([target])[0]
    np.testing.assert_array_equal(alone, again)


def test_padded_forward_matches_embed_sentences(parity_bilm, parity_sentences):
    sentences = parity_sentences[:6]
    layers, mask = parity_bilm(batch_char_ids(sentences))
    assert layers.shape == (3, 6, max(map(len, sentences)), 64)
    assert mask.sum(-1).tolist() == [len(s) for s in sentences]
    for k, (sentence, out) in enumerate(zip(sentences, parity_bilm.embed_sentences(sentences))):
        assert torch.all(layers[:, k, len(sentence) :] == 0)
        assert np.abs(layers[:, k, : len(sentence)].detach().numpy() - out).max() <= 5e-4


def test_empty_sentence_and_empty_batch(parity_bilm):
    empty, one = parity_bilm.embed_sentences([[], ["word"]])
    assert empty.shape == (3, 0, 64) and empty.dtype == np.float32
    assert one.shape == (3, 1, 64)
    assert parity_bilm.embed_sentences([]) == []
    assert parity_bilm.embed_sentences([[]])[0].shape == (3, 0, 64)


def test_char_ids_match_allennlp():
    # AllenNLP: begin-of-word 258, bytes, end-of-word 259, padding 260; everything +1
    assert token_char_ids("a")[:4] == (259, 98, 260, 261)
    assert len(token_char_ids("a")) == 50 and set(token_char_ids("a")[3:]) == {261}
    assert token_char_ids("<S>")[:4] == (259, 257, 260, 261)
    assert token_char_ids("</S>")[:4] == (259, 258, 260, 261)
    assert token_char_ids("é")[:4] == (259, 0xC3 + 1, 0xA9 + 1, 260)
    long = token_char_ids("y" * 70)
    assert long[1:49] == (ord("y") + 1,) * 48 and long[49] == 260
    ids = batch_char_ids([["a", "b"], []])
    assert ids.shape == (2, 2, 50) and ids.dtype == torch.int64
    assert torch.all(ids[1] == 0)


def test_long_tokens_are_truncated_like_allennlp(parity_bilm):
    (a,) = parity_bilm.embed_sentences([["x" * 48 + "A" * 30]])
    (b,) = parity_bilm.embed_sentences([["x" * 48 + "B" * 5]])
    (c,) = parity_bilm.embed_sentences([["x" * 47 + "B" * 5]])
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


@pytest.mark.parametrize(
    "tokens",
    [[" ", "\t", "word"], ["😀", "👍🏽"], ["日本語", "中文"], ["e\u0301", "n\u0303o"], ["\x00", "\x07", "ok"], [""]],
)
def test_unusual_tokens(parity_bilm, tokens):
    out = parity_bilm.embed_sentences([tokens])[0]
    assert out.shape == (3, len(tokens), 64)
    assert np.isfinite(out).all() and np.abs(out).sum() > 0


def test_rejects_non_token_lists(parity_bilm):
    with pytest.raises(TypeError, match="list of token strings"):
        parity_bilm.embed_sentences(["a sentence as a string"])
    with pytest.raises(TypeError, match=r"sentences\[0\]\[1\] must be a str token, found int"):
        parity_bilm.embed_sentences([["ok", 3]])


def test_save_load_round_trip_is_bit_identical(parity_bilm, parity_sentences, tmp_path):
    parity_bilm.save(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["options.json", "weights.hdf5"]
    reloaded = load_bilm(tmp_path / "model" / "options.json", tmp_path / "model" / "weights.hdf5")
    for a, b in zip(parity_bilm.embed_sentences(parity_sentences), reloaded.embed_sentences(parity_sentences)):
        np.testing.assert_array_equal(a, b)
    with h5py.File(PARITY / "weights.hdf5") as original, h5py.File(tmp_path / "model" / "weights.hdf5") as saved:
        names: list[str] = []
        original.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        assert len(names) == 27
        for name in names:
            np.testing.assert_array_equal(original[name][...], saved[name][...], err_msg=name)
    assert json.loads((tmp_path / "model" / "options.json").read_text()) == json.loads(
        (PARITY / "options.json").read_text()
    )


def test_save_writes_vocab(tmp_path):
    options = BiLMOptions(filters=((1, 4), (2, 4)), n_highway=1, char_dim=4, projection_dim=8, lstm_dim=16, n_layers=1)
    BiLM(options, vocab=["<S>", "</S>", "<UNK>", "the"]).save(tmp_path)
    assert (tmp_path / "vocab.txt").read_text() == "<S>\n</S>\n<UNK>\nthe\n"
    assert load_bilm(tmp_path / "options.json", tmp_path / "weights.hdf5").vocab == ["<S>", "</S>", "<UNK>", "the"]


def _copy_fixture(tmp_path):
    for name in ("options.json", "weights.hdf5"):
        shutil.copy(PARITY / name, tmp_path / name)
    return tmp_path / "options.json", tmp_path / "weights.hdf5"


def test_missing_files_are_named(tmp_path, parity_files):
    with pytest.raises(ValueError, match=r"options file not found: .*nope\.json"):
        load_bilm(tmp_path / "nope.json", parity_files[1])
    with pytest.raises(ValueError, match=r"weight file not found: .*nope\.hdf5"):
        load_bilm(parity_files[0], tmp_path / "nope.hdf5")
    with pytest.raises(ValueError, match="give both options_file and weight_file"):
        load_bilm(parity_files[0], None)


def test_not_hdf5_or_not_json(tmp_path, parity_files):
    (tmp_path / "weights.hdf5").write_text("not hdf5")
    with pytest.raises(ValueError, match=r"weights\.hdf5: not a readable HDF5 weight file"):
        load_bilm(parity_files[0], tmp_path / "weights.hdf5")
    (tmp_path / "options.json").write_text("{oops")
    with pytest.raises(ValueError, match=r"options\.json: not a valid JSON options file"):
        load_bilm(tmp_path / "options.json", parity_files[1])


def test_missing_dataset_is_named(tmp_path):
    options, weights = _copy_fixture(tmp_path)
    with h5py.File(weights, "a") as f:
        del f["RNN_1/RNN/MultiRNNCell/Cell1/LSTMCell/W_P_0"]
    with pytest.raises(ValueError) as err:
        load_bilm(options, weights)
    message = str(err.value)
    assert str(weights) in message
    assert "'RNN_1/RNN/MultiRNNCell/Cell1/LSTMCell/W_P_0' is missing (expected shape (128, 32))" in message


def test_shape_mismatch_names_dataset_expected_and_found(tmp_path):
    options, weights = _copy_fixture(tmp_path)
    data = json.loads(options.read_text())
    data["lstm"]["dim"] = 256
    options.write_text(json.dumps(data))
    with pytest.raises(ValueError) as err:
        load_bilm(options, weights)
    message = str(err.value)
    assert "dataset 'RNN_0/RNN/MultiRNNCell/Cell0/LSTMCell/W_0' has shape (64, 512), expected (64, 1024)" in message
    assert str(options) in message and str(weights) in message


def test_weights_with_more_layers_than_options(tmp_path):
    options, weights = _copy_fixture(tmp_path)
    data = json.loads(options.read_text())
    data["lstm"]["n_layers"] = 1
    options.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"has 'RNN_0/RNN/MultiRNNCell/Cell1'.*options and weights do not match"):
        load_bilm(options, weights)


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        ("char_cnn", "activation", "sigmoid", "unsupported char_cnn.activation 'sigmoid'"),
        ("char_cnn", "n_characters", 300, "unsupported char_cnn.n_characters 300"),
        ("lstm", "n_layers", 0, r"lstm.n_layers must be an integer in \[1, 32\], found 0"),
        ("lstm", "peepholes", True, r"unsupported option\(s\) \['peepholes'\] in 'lstm'"),
        ("char_cnn", "filters", [[1, 0]], "char_cnn.filters must be a non-empty list"),
        ("lstm", "cell_clip", "3", "lstm.cell_clip must be a finite non-negative number"),
    ],
)
def test_bad_options(tmp_path, section, key, value, message):
    options, weights = _copy_fixture(tmp_path)
    data = json.loads(options.read_text())
    data[section][key] = value
    options.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message) as err:
        load_bilm(options, weights)
    assert str(options) in str(err.value)


def test_unknown_device_and_missing_cuda(parity_files):
    with pytest.raises(ValueError, match="unknown device 'tpu7'"):
        load_bilm(*parity_files, device="tpu7")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            load_bilm(*parity_files, device="cuda")


@pytest.mark.parametrize("mode", ["plain", "onednn"])
def test_bf16_is_close_to_fp32(parity_bilm, parity_sentences, mode):
    if mode == "onednn" and not onednn.supports(torch.bfloat16):
        pytest.skip(f"no oneDNN bf16 kernels: {onednn.why_not(torch.bfloat16)}")
    with kernels.forced(mode):
        fp32 = parity_bilm.embed_sentences(parity_sentences)
        bf16 = parity_bilm.embed_sentences(parity_sentences, precision="bf16")
    for layer in range(3):
        diff = np.concatenate([np.abs(a[layer] - b[layer]).ravel() for a, b in zip(fp32, bf16)])
        scale = np.concatenate([np.abs(a[layer]).ravel() for a in fp32]).mean()
        # bf16 keeps 8 bits of mantissa: ~0.5% per product, compounding through the recurrence
        assert 0 < diff.mean() / scale < 0.06, layer
    assert all(b.dtype == np.float32 for b in bf16)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_parity(parity_files, parity_sentences):
    expected = np.load(PARITY / "expected.npz")
    bilm = load_bilm(*parity_files, device="cuda")
    assert bilm.device.type == "cuda"
    for i, out in enumerate(bilm.embed_sentences(parity_sentences)):
        assert np.abs(out - expected[f"s{i}"]).max() <= 1e-3
