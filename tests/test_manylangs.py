"""ELMoForManyLangs model directories and NLPL bilm-tf directories: parity with the reference, the
token mapping's quirks, bad directories, and every entry point (load_bilm, Elmo, ElmoEmbedder, the component)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import spacy
import torch
from typer.testing import CliRunner

from spacy_elmo import Elmo, ElmoEmbedder, load_bilm
from spacy_elmo.bilm import kernels
from spacy_elmo.bilm.manylangs_format import SHIPPED_CONFIGS, parse_architecture, read_architecture, read_dic
from spacy_elmo.bilm.model_dir import directory_kind, load_directory, save_directory
from spacy_elmo.bilm.token_cache import TokenCache
from spacy_elmo.cli import app

MANYLANGS = Path(__file__).parent / "data" / "manylangs"
MODELS = ("words", "chars")  # word embedding + characters (as released), characters only
SENTENCES = json.loads((MANYLANGS / "sentences.json").read_text(encoding="utf-8"))


def reference(name: str) -> list[np.ndarray]:
    arrays = np.load(MANYLANGS / f"reference_{name}.npz")
    return [arrays[str(i)] for i in range(len(SENTENCES))]


def max_diff(got: list[np.ndarray], expected: list[np.ndarray]) -> float:
    assert [g.shape for g in got] == [e.shape for e in expected]
    return max(float(np.abs(g - e).max(initial=0)) for g, e in zip(got, expected))


@pytest.fixture
def model_dir(tmp_path) -> Path:
    """A writable copy of the word + character fixture model."""
    return Path(shutil.copytree(MANYLANGS / "words", tmp_path / "model"))


def test_fixture_is_not_trivial():
    ref = reference("words")
    assert [r.shape[1] for r in ref] == [len(s) for s in SENTENCES]
    assert all(r.shape[0] == 3 and r.shape[2] == 16 for r in ref)
    assert max(float(np.abs(r).max(initial=0)) for r in ref) > 1.0
    assert sum(f.stat().st_size for f in MANYLANGS.rglob("*") if f.is_file()) < 2_000_000


@pytest.mark.parametrize("mode", ["plain", "auto"])
@pytest.mark.parametrize("token_cache_size", [0, 1000])
@pytest.mark.parametrize("name", MODELS)
def test_parity_with_the_reference(name, mode, token_cache_size):
    bilm = load_directory(MANYLANGS / name, token_cache_size=token_cache_size)
    with kernels.forced(mode):
        assert max_diff(bilm.embed_sentences(SENTENCES, batch_size=4), reference(name)) <= 1e-5
        # the sentences one at a time: the result does not depend on the batch
        alone = [bilm.embed_sentences([s])[0] for s in SENTENCES]
    assert max_diff(alone, reference(name)) <= 1e-5


@pytest.mark.parametrize("mode", ["plain", "auto"])
def test_bf16_on_a_manylangs_model(mode):
    bilm = load_directory(MANYLANGS / "words")
    with kernels.forced(mode), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # bf16 may run as fp32 on a CPU without bf16 kernels
        got = bilm.embed_sentences(SENTENCES, precision="bf16")
    assert max_diff(got, reference("words")) <= 0.1


def test_embed_command_with_a_model_directory(tmp_path):
    (tmp_path / "in.txt").write_text("我们 喜欢 语言 。\nDie Größe des Hauses !\n", encoding="utf-8")
    args = ["embed", str(tmp_path / "in.txt"), str(tmp_path / "out.hdf5"), "--model", str(MANYLANGS / "words")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    bilm = load_directory(MANYLANGS / "words")
    with h5py.File(tmp_path / "out.hdf5") as f:
        for key, sentence in (("0", "我们 喜欢 语言 。"), ("1", "Die Größe des Hauses !")):
            np.testing.assert_allclose(f[key][...], bilm.embed_sentences([sentence.split()])[0], atol=1e-6, rtol=0)


def test_token_ids_follow_the_reference_quirks():
    bilm = load_directory(MANYLANGS / "words")
    chars = read_dic(MANYLANGS / "words" / "char.dic")
    words = read_dic(MANYLANGS / "words" / "word.dic")
    ids = bilm.token_ids
    assert ids.width == 1 + 12
    row = ids.token("fox")
    # word id, then <eow>'s id first and <bow>'s id last (the reference's order), then <pad>; all shifted by +1
    expected = [words["fox"], chars["<eow>"], chars["f"], chars["o"], chars["x"], chars["<bow>"]]
    expected += [chars["<pad>"]] * 7
    assert row == tuple(i + 1 for i in expected)
    # cut to 10 characters; the word id is the cut token's
    assert ids.token("international")[0] == words["internatio"] + 1
    assert ids.token("international")[1:] == ids.token("internatio")[1:]
    assert ids.token("internationalisation") == ids.token("international")
    # unknown word and characters
    assert ids.token("🙂")[:3] == (words["<oov>"] + 1, chars["<eow>"] + 1, chars["<oov>"] + 1)
    # a dictionary line holding an id alone is the ideographic space U+3000
    assert "\u3000" in chars and ids.token("\u3000")[2] == chars["\u3000"] + 1
    assert ids.bos()[:4] == tuple(i + 1 for i in (words["<bos>"], chars["<eow>"], chars["<bos>"], chars["<bow>"]))
    assert ids.token("<eos>") == ids.eos()
    batch = ids.batch([["fox", "die"], []])
    assert batch.shape == (2, 2, 13) and not batch[1].any()


def test_shipped_configs_are_used_when_the_directory_lacks_the_file(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"config_path": "../configs/cnn_50_100_512_4096_sample.json"}))
    config, source = read_architecture(tmp_path)
    assert config is SHIPPED_CONFIGS["cnn_50_100_512_4096_sample.json"] and "configs/cnn_50_100" in source
    options, word_dim = parse_architecture(config, source)
    assert (options.projection_dim, options.lstm_dim, options.n_layers, word_dim) == (512, 4096, 2, 100)
    assert options.n_filters == 2048 and options.max_chars == 50 and options.cell_clip == 3.0
    # an absolute config_path elsewhere: its file name in the directory
    (tmp_path / "mine.json").write_text(json.dumps({**config, "dropout": 0.5}))
    (tmp_path / "config.json").write_text(json.dumps({"config_path": "/elsewhere/mine.json"}))
    assert read_architecture(tmp_path) == ({**config, "dropout": 0.5}, str(tmp_path / "mine.json"))


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "char.dic").unlink(), r"char\.dic: not found"),
        (lambda d: (d / "word.dic").unlink(), r"word\.dic: not found"),
        (lambda d: (d / "encoder.pkl").unlink(), r"encoder\.pkl: not found"),
        (lambda d: (d / "cnn_tiny.json").unlink(), r"config\.json: config_path 'cnn_tiny.json' is neither"),
        (lambda d: (d / "config.json").write_text("{"), r"config\.json: not a readable JSON file"),
        (
            lambda d: (d / "char.dic").write_text("<bow>\t0\n<eow>\t1\n"),
            r"char\.dic: the reserved entries \['<bos>', '<eos>', '<oov>', '<pad>'\] are missing",
        ),
        (lambda d: (d / "word.dic").write_text("<oov>\t0\n<pad>\t1\nx y\t2\t3\n"), r"word\.dic: line 3 is"),
        (lambda d: (d / "word.dic").write_text("<oov>\t0\n<pad>\t7\n"), r"word\.dic: ids must lie in \[0, 1\]"),
        (
            lambda d: (d / "word.dic").write_text((d / "word.dic").read_text() + "extra\t20\n"),
            r"token_embedder\.pkl: tensor 'word_emb_layer\.embedding\.weight' has shape \(20, 6\), expected "
            r"\(21, 6\) \(.*word\.dic has 21\)",
        ),
        (
            lambda d: _edit_json(d / "cnn_tiny.json", lambda c: c["encoder"].update(dim=32)),
            r"encoder\.pkl: tensor 'forward_layer_0\.input_linearity\.weight' has shape \(64, 8\), expected "
            r"\(128, 8\) from the architecture in .*cnn_tiny\.json",
        ),
        (
            lambda d: _edit_json(d / "cnn_tiny.json", lambda c: c["token_embedder"].update(n_highway=1)),
            r"token_embedder\.pkl: tensors \['highways\._layers\.1\.bias', 'highways\._layers\.1\.weight'\] are not",
        ),
        (
            lambda d: torch.save(torch.nn.Linear(2, 2), d / "encoder.pkl"),
            r"encoder\.pkl: refused: this pickle needs more than plain tensors to load \(it could run code\), and only "
            r"a plain PyTorch state dict is read$",
        ),
        (lambda d: (d / "token_embedder.pkl").write_bytes(b"junk"), r"token_embedder\.pkl: not a plain PyTorch"),
        (
            lambda d: torch.save({"a": 1}, d / "token_embedder.pkl"),
            r"token_embedder\.pkl: not a plain PyTorch state dict of tensors",
        ),
        (
            lambda d: _edit_json(d / "cnn_tiny.json", lambda c: c["token_embedder"].update(name="lstm")),
            r"cnn_tiny\.json: unsupported token_embedder 'lstm'",
        ),
        (
            lambda d: _edit_json(d / "cnn_tiny.json", lambda c: c["encoder"].update(name="lstm")),
            r"cnn_tiny\.json: unsupported encoder 'lstm'",
        ),
        (
            lambda d: _edit_json(d / "cnn_tiny.json", lambda c: c["token_embedder"].update(char_dim=0)),
            r"cnn_tiny\.json: unsupported token_embedder\.char_dim 0",
        ),
    ],
)
def test_bad_directories_fail_naming_the_file(model_dir, damage, message):
    damage(model_dir)
    with pytest.raises(ValueError, match=message) as info:
        load_directory(model_dir)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=message):
        load_bilm(model_dir)


def test_not_a_model_directory(tmp_path):
    with pytest.raises(ValueError, match=r"not a model directory: expected options\.json \+ weights\.hdf5"):
        directory_kind(tmp_path)
    (tmp_path / "options.json").write_text("{}")
    with pytest.raises(ValueError, match=r"weights\.hdf5: not found \(nor model\.hdf5\) beside options\.json"):
        load_directory(tmp_path)


def test_token_cache_keys_include_the_word_id():
    bilm = load_directory(MANYLANGS / "words", token_cache_size=0)
    row = torch.tensor(bilm.token_ids.token("fox"))
    other = row.clone()
    other[0] = bilm.token_ids.token("the")[0]  # the same characters under another word id
    ids = torch.stack([row, other, row])
    cache = TokenCache(10)
    with torch.inference_mode():
        expected = bilm.encoder(ids)
        cached = cache(bilm.encoder, ids)
        again = cache(bilm.encoder, ids)
    assert len(cache) == 2
    assert not torch.allclose(expected[0], expected[1])
    torch.testing.assert_close(cached, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(again, expected, rtol=0, atol=1e-6)


def test_nlpl_directory_with_model_hdf5(tmp_path, parity_files, parity_bilm, parity_sentences):
    options, weights = parity_files
    shutil.copy(options, tmp_path / "options.json")
    shutil.copy(weights, tmp_path / "model.hdf5")
    assert directory_kind(tmp_path) == "bilm-tf"
    expected = parity_bilm.embed_sentences(parity_sentences)
    for bilm in (load_directory(tmp_path), load_bilm(tmp_path), load_bilm(str(tmp_path))):
        assert bilm.vocab is None
        assert max_diff(bilm.embed_sentences(parity_sentences), expected) == 0.0
    (tmp_path / "vocab.txt").write_text("<S>\n</S>\n<UNK>\nthe\n")
    assert load_directory(tmp_path).vocab == ["<S>", "</S>", "<UNK>", "the"]


def test_allennlp_api_on_a_manylangs_directory():
    expected = reference("words")
    embedder = ElmoEmbedder(str(MANYLANGS / "words"))
    assert max_diff(list(embedder.embed_sentences(SENTENCES)), expected) <= 1e-5
    assert max_diff([embedder.embed_sentence(SENTENCES[2])], [expected[2]]) <= 1e-5

    elmo = Elmo(MANYLANGS / "words", num_output_representations=1, dropout=0.0, scalar_mix_parameters=[0, 0, 0])
    ids = elmo.bilm.token_ids.batch(SENTENCES[:4])
    out = elmo(ids)
    for i in range(4):
        n = len(SENTENCES[i])
        mixed = out["elmo_representations"][0][i, :n].detach().numpy()
        assert np.abs(mixed - expected[i].mean(axis=0)).max() <= 1e-5
        assert out["mask"][i].sum() == n
    with pytest.raises(ValueError, match=r"shape \(batch, tokens, 13\).*build them with elmo.bilm.token_ids.batch"):
        elmo(torch.ones(1, 2, 12, dtype=torch.long))

    words = ["fox", "我们", "international"]
    cached = Elmo(MANYLANGS / "words", dropout=0.0, vocab_to_cache=["<pad>", *words], scalar_mix_parameters=[0, 0, 0])
    sentence = [["fox", "international"]]
    with_words = cached(cached.bilm.token_ids.batch(sentence), torch.tensor([[1, 3]]))
    without = cached(cached.bilm.token_ids.batch(sentence))
    torch.testing.assert_close(
        with_words["elmo_representations"][0], without["elmo_representations"][0], atol=1e-6, rtol=0
    )


@pytest.mark.parametrize(
    "lang, text",
    [
        ("zh", "我们喜欢自然语言处理。"),
        ("de", "Die Größe des Hauses überrascht Zoë!"),
        ("ja", "東京都に住んでいます。"),
    ],
)
def test_spacy_pipeline_of_another_language(lang, text):
    if lang == "ja":
        pytest.importorskip("sudachipy", reason="spaCy's Japanese tokenizer needs sudachipy + sudachidict_core")
    nlp = spacy.blank(lang)
    nlp.add_pipe("elmo", config={"model": str(MANYLANGS / "words")})
    doc = nlp(text)
    assert len(doc) > 3
    bilm = load_directory(MANYLANGS / "words")
    expected = bilm.embed_sentences([[t.text for t in doc]])[0]
    assert doc._.elmo_layers.shape == (3, len(doc), 16)
    np.testing.assert_allclose(doc._.elmo_layers, expected, atol=1e-6, rtol=0)
    for token in doc:
        assert token._.elmo.shape == (16,)
        np.testing.assert_allclose(token.vector, expected[:, token.i].mean(axis=0), atol=1e-6, rtol=0)
    assert doc[0].similarity(doc[1]) == pytest.approx(
        float(np.dot(doc[0].vector, doc[1].vector) / (np.linalg.norm(doc[0].vector) * np.linalg.norm(doc[1].vector))),
        abs=1e-5,
    )


@pytest.mark.parametrize("name", MODELS)
def test_save_directory_round_trip(tmp_path, name):
    bilm = load_directory(MANYLANGS / name)
    save_directory(bilm, tmp_path / "saved")
    expected = {"config.json", "architecture.json", "char.dic", "token_embedder.pkl", "encoder.pkl"}
    assert {f.name for f in (tmp_path / "saved").iterdir()} == expected | ({"word.dic"} if name == "words" else set())
    assert read_dic(tmp_path / "saved" / "char.dic") == read_dic(MANYLANGS / name / "char.dic")
    again = load_directory(tmp_path / "saved")
    assert max_diff(again.embed_sentences(SENTENCES), bilm.embed_sentences(SENTENCES)) == 0.0
    assert max_diff(again.embed_sentences(SENTENCES), reference(name)) <= 1e-5
    with pytest.raises(ValueError, match="the bilm-tf format holds only biLMs over UTF-8 byte characters"):
        bilm.save(tmp_path / "as-bilm-tf")


def test_pipeline_with_a_manylangs_model_saves_and_loads(tmp_path):
    nlp = spacy.blank("zh")
    nlp.add_pipe("elmo", config={"model": str(MANYLANGS / "words")})
    text = "我们喜欢自然语言处理。"
    expected = nlp(text)._.elmo_layers
    nlp.to_disk(tmp_path / "pipeline")
    assert (tmp_path / "pipeline" / "elmo" / "word.dic").is_file()
    loaded = spacy.load(tmp_path / "pipeline", config={"components": {"elmo": {"model": None}}})
    np.testing.assert_array_equal(loaded(text)._.elmo_layers, expected)
    from_bytes = spacy.blank("zh")
    from_bytes.add_pipe("elmo")
    from_bytes.get_pipe("elmo").from_bytes(nlp.get_pipe("elmo").to_bytes())
    np.testing.assert_array_equal(from_bytes(text)._.elmo_layers, expected)


MULTIPROCESS_SCRIPT = """
import sys, numpy, spacy
nlp = spacy.blank("de")
nlp.add_pipe("elmo", config={"model": sys.argv[1]})
texts = ["Die Größe des Hauses überrascht Zoë !", "the quick brown fox .", "我们 喜欢 语言 。", "x"] * 3
single = [d._.elmo_layers for d in nlp.pipe(texts)]
multi = [d._.elmo_layers for d in nlp.pipe(texts, n_process=2, batch_size=2)]
numpy.savez(sys.argv[2], *single, *multi)
"""


@pytest.mark.slow
def test_n_process_2_on_a_manylangs_model(tmp_path):
    out = tmp_path / "out.npz"
    command = [sys.executable, "-W", "ignore", "-c", MULTIPROCESS_SCRIPT, str(MANYLANGS / "words"), str(out)]
    subprocess.run(command, check=True, timeout=120)
    arrays = np.load(out)
    n = len(arrays.files) // 2
    assert n == 12
    for i in range(n):
        single, multi = arrays[f"arr_{i}"], arrays[f"arr_{i + n}"]
        assert single.shape[0] == 3 and single.shape[1] > 0 and single.shape == multi.shape
        assert np.abs(single - multi).max() <= 1e-5


def test_sequence_cache_on_a_manylangs_model():
    texts = ["Die Größe des Hauses überrascht Zoë!", "我们喜欢自然语言处理。", "Die Größe des Hauses überrascht Zoë!"]
    plain, cached = spacy.blank("de"), spacy.blank("de")
    plain.add_pipe("elmo", config={"model": str(MANYLANGS / "words")})
    cached.add_pipe("elmo", config={"model": str(MANYLANGS / "words"), "sequence_cache_mb": 4})
    expected = [doc._.elmo_layers for doc in plain.pipe(texts)]
    found = [doc._.elmo_layers for doc in cached.pipe(texts)]
    cache = cached.get_pipe("elmo").sequence_cache
    assert cache is not None and len(cache) == 2  # the repeated text is served from the cache
    for a, b in zip(found, expected):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
