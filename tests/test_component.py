"""The spaCy component "elmo": attributes, mixes, hooks, sequences, serialization, multiprocessing, errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import spacy
import srsly
from spacy.tokens import Doc, DocBin

from spacy_elmo.bilm import kernels
from spacy_elmo.bilm.model import DEFAULT_MODEL_DIR
from spacy_elmo.pipeline import install_extensions, set_vector_hooks
from spacy_elmo.pipeline.sequences import sequence_ranges, split_windows

from .helpers import TEXT, TEXTS, make_nlp

HAS_DEFAULT_MODEL = (DEFAULT_MODEL_DIR / "weights.hdf5").is_file()


@pytest.fixture(scope="module")
def nlp(parity_files) -> spacy.Language:
    return make_nlp(parity_files)


@pytest.fixture(scope="module")
def bilm(nlp):
    return nlp.get_pipe("elmo").bilm


@pytest.fixture
def model_copy(parity_files, tmp_path) -> tuple[Path, Path]:
    """The parity model files copied to a folder the test may delete."""
    folder = tmp_path / "model"
    folder.mkdir()
    return tuple(Path(shutil.copy(path, folder)) for path in parity_files)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def words(doc_or_span) -> list[str]:
    return [token.text for token in doc_or_span]


def test_shapes_and_dtypes(nlp, bilm):
    elmo = nlp.get_pipe("elmo")
    assert (elmo.n_layers, elmo.dim) == (3, 64)
    np.testing.assert_array_equal(elmo.mix_weights, np.full(3, 1 / 3, dtype=np.float32))
    doc = nlp(TEXT)
    layers = doc._.elmo_layers
    assert layers.shape == (3, len(doc), 64) and layers.dtype == np.float32
    assert np.isfinite(layers).all()
    for obj in (doc[1], doc[0:5], doc):
        assert obj._.elmo.shape == (64,) and obj._.elmo.dtype == np.float32
    # no sentence boundaries: the whole Doc is one biLM sequence
    np.testing.assert_allclose(layers, bilm.embed_sentences([words(doc)])[0], atol=5e-4)


@pytest.mark.parametrize(
    "mix, weights",
    [
        ("average", [1 / 3] * 3),
        ("top", [0, 0, 1]),
        (0, [1, 0, 0]),
        (-2, [0, 1, 0]),
        ([0.2, -0.3, 1.5], [0.2, -0.3, 1.5]),
    ],
)
def test_mix_variants(parity_files, nlp, mix, weights):
    layers = nlp(TEXT)._.elmo_layers
    expected = np.tensordot(np.array(weights, dtype=np.float32), layers, axes=1)  # (n_tokens, dim)
    for store_layers in (True, False):
        doc = make_nlp(parity_files, mix=mix, store_layers=store_layers)(TEXT)
        assert (doc._.elmo_layers is not None) == store_layers
        assert (doc._.elmo_token_vectors is not None) != store_layers
        for i in (0, 4, len(doc) - 1):
            np.testing.assert_allclose(doc[i]._.elmo, expected[i], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(doc[2:7]._.elmo, expected[2:7].mean(axis=0), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(doc._.elmo, expected.mean(axis=0), rtol=1e-5, atol=1e-5)


def test_span_and_doc_are_token_means(nlp):
    doc = nlp(TEXT)
    tokens = np.stack([token._.elmo for token in doc])
    np.testing.assert_allclose(doc[3:9]._.elmo, tokens[3:9].mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(doc._.elmo, tokens.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(doc[4:4]._.elmo, np.zeros(64, dtype=np.float32))


def test_vector_hooks(nlp):
    doc, other = nlp(TEXT), nlp("The bank was closed on Sunday.")
    bank, river_bank, other_bank = doc[1], doc[11], other[1]
    assert doc[11].text == "bank"
    np.testing.assert_array_equal(bank.vector, bank._.elmo)
    np.testing.assert_array_equal(doc[0:5].vector, doc[0:5]._.elmo)
    np.testing.assert_array_equal(doc.vector, doc._.elmo)
    assert bank.has_vector and doc[0:5].has_vector and doc.has_vector
    assert bank.vector_norm == pytest.approx(np.linalg.norm(bank._.elmo), rel=1e-5)
    assert doc[0:5].vector_norm == pytest.approx(np.linalg.norm(doc[0:5]._.elmo), rel=1e-5)
    assert doc.vector_norm == pytest.approx(np.linalg.norm(doc._.elmo), rel=1e-5)
    assert bank.similarity(river_bank) == pytest.approx(cosine(bank._.elmo, river_bank._.elmo), abs=1e-5)
    assert bank.similarity(other_bank) == pytest.approx(cosine(bank._.elmo, other_bank._.elmo), abs=1e-5)
    assert doc[0:5].similarity(other) == pytest.approx(cosine(doc[0:5]._.elmo, other._.elmo), abs=1e-5)
    assert doc.similarity(other[0:3]) == pytest.approx(cosine(doc._.elmo, other[0:3]._.elmo), abs=1e-5)
    assert doc.similarity(doc) == pytest.approx(1.0, abs=1e-5)


def test_without_vector_hooks(parity_files):
    doc = make_nlp(parity_files, set_vector_hooks=False)(TEXT)
    assert not doc.user_hooks and not doc.user_token_hooks and not doc.user_span_hooks
    assert doc[1].vector.shape != (64,)  # spaCy's own (empty) vectors
    assert doc[1]._.elmo.shape == (64,)
    set_vector_hooks(doc)
    np.testing.assert_array_equal(doc[1].vector, doc[1]._.elmo)


def test_sentences_are_separate_sequences(parity_files, bilm):
    nlp = make_nlp(parity_files)
    nlp.add_pipe("sentencizer", first=True)
    doc = nlp(TEXT)
    sentences = list(doc.sents)
    assert len(sentences) == 3
    expected = bilm.embed_sentences([words(sent) for sent in sentences])
    for sent, sent_layers in zip(sentences, expected):
        np.testing.assert_allclose(doc._.elmo_layers[:, sent.start : sent.end], sent_layers, atol=5e-4)
    whole = bilm.embed_sentences([words(doc)])[0]
    assert np.abs(doc._.elmo_layers[1:, sentences[1].start :] - whole[1:, sentences[1].start :]).max() > 1e-2


def test_split_windows():
    assert split_windows(0, 10, 4) == [(0, 4), (4, 7), (7, 10)]
    assert split_windows(5, 9, 4) == [(5, 9)]
    assert split_windows(0, 9, 3) == [(0, 3), (3, 6), (6, 9)]
    assert split_windows(2, 3, 1) == [(2, 3)]
    assert split_windows(3, 3, 5) == []


def test_max_length_windows(parity_files, bilm):
    nlp = make_nlp(parity_files, max_length=7)
    doc = nlp(TEXT)  # 20 tokens, no sentences: windows of 7, 7, 6
    ranges = sequence_ranges(doc, 7)
    assert ranges == [(0, 7), (7, 14), (14, 20)] and len(doc) == 20
    expected = bilm.embed_sentences([words(doc[start:end]) for start, end in ranges])
    np.testing.assert_allclose(doc._.elmo_layers, np.concatenate(expected, axis=1), atol=5e-4)
    # sentences longer than max_length are windowed inside the sentence
    nlp.add_pipe("sentencizer", first=True)
    doc = nlp(TEXT)
    assert sequence_ranges(doc, 7) == [(0, 6), (6, 11), (11, 16), (16, 20)]
    expected = bilm.embed_sentences([words(doc[s:e]) for s, e in sequence_ranges(doc, 7)])
    np.testing.assert_allclose(doc._.elmo_layers, np.concatenate(expected, axis=1), atol=5e-4)


def test_empty_doc_and_whitespace_tokens(nlp, bilm):
    empty = nlp("")
    assert empty._.elmo_layers.shape == (3, 0, 64) and empty._.elmo_layers.dtype == np.float32
    np.testing.assert_array_equal(empty._.elmo, np.zeros(64, dtype=np.float32))
    doc = nlp(Doc(nlp.vocab, words=["a", " ", "\n\n", "b", "\t"], spaces=[False] * 5))
    assert doc._.elmo_layers.shape == (3, 5, 64) and np.isfinite(doc._.elmo_layers).all()
    np.testing.assert_allclose(doc._.elmo_layers, bilm.embed_sentences([["a", " ", "\n\n", "b", "\t"]])[0], atol=5e-4)
    assert doc[1].similarity(doc[3]) == pytest.approx(cosine(doc[1]._.elmo, doc[3]._.elmo), abs=1e-5)


def test_call_and_pipe_agree(nlp):
    single = [nlp(text)._.elmo_layers for text in TEXTS]
    piped = [doc._.elmo_layers for doc in nlp.pipe(TEXTS * 2, batch_size=3)]
    for a, b in zip(single * 2, piped):
        assert a.shape == b.shape
        assert a.size == 0 or np.abs(a - b).max() <= 5e-4


def test_to_disk_and_load_without_original_files(model_copy, tmp_path):
    options, weights = model_copy
    nlp = spacy.blank("en")
    nlp.add_pipe("elmo", config={"options_file": str(options), "weight_file": str(weights), "mix": "top"})
    expected = [nlp(text) for text in TEXTS]
    nlp.to_disk(tmp_path / "pipeline")
    saved = sorted(p.name for p in (tmp_path / "pipeline" / "elmo").iterdir())
    assert saved == ["checksums.sha256", "options.json", "weights.hdf5"]
    shutil.rmtree(options.parent)
    loaded = spacy.load(tmp_path / "pipeline")
    assert loaded.get_pipe("elmo").mix == "top"
    for text, doc in zip(TEXTS, expected):
        new = loaded(text)
        np.testing.assert_array_equal(new._.elmo_layers, doc._.elmo_layers)
        np.testing.assert_array_equal(new._.elmo, doc._.elmo)


def test_to_bytes_and_from_bytes(model_copy):
    options, weights = model_copy
    nlp = spacy.blank("en")
    nlp.add_pipe("elmo", config={"options_file": str(options), "weight_file": str(weights)})
    expected = nlp(TEXT)._.elmo_layers
    data = nlp.to_bytes()
    shutil.rmtree(options.parent)
    fresh = spacy.blank("en").from_config(nlp.config)
    fresh.from_bytes(data)
    np.testing.assert_array_equal(fresh(TEXT)._.elmo_layers, expected)
    config = {key: value for key, value in nlp.config["components"]["elmo"].items() if key != "factory"}
    component_copy = spacy.blank("en").add_pipe("elmo", config=config)
    component_copy.from_bytes(nlp.get_pipe("elmo").to_bytes())
    np.testing.assert_array_equal(component_copy(nlp.make_doc(TEXT))._.elmo_layers, expected)


def test_serialization_honours_exclude(model_copy, tmp_path):
    options, weights = model_copy
    component = make_nlp((options, weights)).get_pipe("elmo")
    expected = component(spacy.blank("en").make_doc(TEXT))._.elmo_layers
    # "model" is the component's one part: excluded, nothing is written or read
    component.to_disk(tmp_path / "without", exclude=["model"])
    assert list((tmp_path / "without").iterdir()) == []
    bilm = component.bilm
    assert component.from_disk(tmp_path / "without", exclude=["model"]).bilm is bilm
    assert srsly.msgpack_loads(component.to_bytes(exclude=["model"])) == {}
    assert component.from_bytes(component.to_bytes(exclude=["model"])).bilm is bilm
    assert component.from_bytes(component.to_bytes(), exclude=["model"]).bilm is bilm
    # other names (spaCy passes exclude=["vocab"]) leave the model in
    component.to_disk(tmp_path / "with", exclude=["vocab", "cfg"])
    assert sorted(p.name for p in (tmp_path / "with").iterdir()) == ["checksums.sha256", "options.json", "weights.hdf5"]
    shutil.rmtree(options.parent)
    fresh = make_nlp((options, weights)).get_pipe("elmo")  # configured files gone: only from_* can load it
    fresh.from_bytes(component.to_bytes(exclude=["vocab"]), exclude=["vocab"])
    assert fresh.bilm is not bilm
    np.testing.assert_array_equal(fresh(spacy.blank("en").make_doc(TEXT))._.elmo_layers, expected)
    fresh.from_disk(tmp_path / "with", exclude=["cfg"])
    np.testing.assert_array_equal(fresh(spacy.blank("en").make_doc(TEXT))._.elmo_layers, expected)


def test_docbin_round_trip(nlp):
    docs = list(nlp.pipe(TEXTS))
    data = DocBin(store_user_data=True, docs=docs).to_bytes()
    restored = list(DocBin().from_bytes(data).get_docs(spacy.blank("en").vocab))
    install_extensions()
    for doc, new in zip(docs, restored):
        np.testing.assert_array_equal(new._.elmo_layers, doc._.elmo_layers)
        np.testing.assert_array_equal(new._.elmo, doc._.elmo)
    new = restored[0]
    assert not new.user_token_hooks  # hooks are not serialized; the extension values are
    np.testing.assert_array_equal(new[1]._.elmo, docs[0][1]._.elmo)
    set_vector_hooks(new)
    assert new[1].similarity(new[11]) == pytest.approx(docs[0][1].similarity(docs[0][11]), abs=1e-6)


MULTIPROCESS_SCRIPT = """
import sys, numpy, spacy, torch
torch.set_num_threads(2)  # a parent with a multi-threaded OpenMP pool can hang forked workers
nlp = spacy.blank("en")
config = {"options_file": sys.argv[1], "weight_file": sys.argv[2], "sequence_cache_mb": float(sys.argv[4])}
nlp.add_pipe("elmo", config=config)
texts = [t for t in %r] * 4
single = [d._.elmo_layers for d in nlp.pipe(texts)]
multi = [d._.elmo_layers for d in nlp.pipe(texts, n_process=2, batch_size=3)]
numpy.savez(sys.argv[3], *single, *multi)
"""


@pytest.mark.parametrize("sequence_cache_mb", [0, 4])  # with a cache: one per process
@pytest.mark.slow
def test_n_process_2(parity_files, tmp_path, sequence_cache_mb):
    out = tmp_path / "out.npz"
    script = MULTIPROCESS_SCRIPT % (TEXTS,)
    command = [sys.executable, "-W", "ignore", "-c", script, *map(str, parity_files), str(out), str(sequence_cache_mb)]
    subprocess.run(command, check=True, timeout=120)
    arrays = np.load(out)
    n = len(TEXTS) * 4
    for i in range(n):
        single, multi = arrays[f"arr_{i}"], arrays[f"arr_{i + n}"]
        assert single.shape == multi.shape and single.shape[0] == 3
        assert single.size == 0 or np.abs(single - multi).max() <= 5e-4


def test_lazy_load_without_initialize(model_copy, tmp_path):
    """Frozen components are never initialized: the model loads on first use."""
    options, weights = model_copy
    nlp = spacy.blank("en")
    elmo = nlp.add_pipe("elmo", config={"options_file": str(options), "weight_file": str(weights)})
    assert elmo._bilm is None
    assert nlp("Hello world")._.elmo_layers.shape == (3, 2, 64)


@pytest.mark.parametrize(
    "config, message",
    [
        ({"mix": "foo"}, "mix must be 'average', 'top', a layer index or a list"),
        ({"mix": 7}, "mix=7 is not a layer of the biLM of .*options.json, which has 3 layers"),
        ({"mix": -4}, "mix=-4 is not a layer"),
        ({"mix": [0.5, 0.5]}, "mix has 2 weights, but the biLM .* has 3 layers"),
        ({"mix": []}, "mix weights must be a non-empty list"),
        ({"mix": 1.5}, "mix"),
        ({"max_length": -3}, "max_length must be an integer >= 1, found -3"),
        ({"max_length": 0}, "max_length must be an integer >= 1"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"max_length": 2.5}, "max_length"),
        ({"precision": "fp16"}, r"precision must be one of \('fp32', 'bf16', 'int8'\), found 'fp16'"),
        ({"store_layers": "yes"}, "store_layers"),
        ({"weight_file": None}, r"elmo: give both options_file and weight_file \(paths or URLs\), or neither"),
        ({"model": "small", "options_file": "o.json"}, "elmo: give either model .* not both; found model='small'"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_invalid_settings(parity_files, config, message):
    with pytest.raises(ValueError, match=message):
        make_nlp(parity_files, **config)


def test_mix_checked_at_first_load(model_copy, tmp_path):
    """Without a readable options file at add_pipe time, the mix is checked when the model loads."""
    options, weights = model_copy
    later = tmp_path / "later"
    nlp = spacy.blank("en")
    config = {"options_file": str(later / "options.json"), "weight_file": str(later / "weights.hdf5"), "mix": 3}
    nlp.add_pipe("elmo", config=config)
    shutil.copytree(options.parent, later)
    with pytest.raises(ValueError, match="mix=3 is not a layer of the biLM, which has 3 layers"):
        nlp("text")


def test_missing_files_name_the_path(parity_files, tmp_path):
    missing = tmp_path / "nowhere" / "weights.hdf5"
    nlp = make_nlp(parity_files, weight_file=str(missing))  # loads lazily: no error yet
    with pytest.raises(ValueError, match=f"weight file not found: {missing}"):
        nlp.initialize()
    with pytest.raises(ValueError, match=f"weight file not found: {missing}"):
        nlp("text")
    bad = tmp_path / "bad.hdf5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match=f"{bad}: not a readable HDF5"):
        make_nlp(parity_files, weight_file=str(bad)).initialize()
    with pytest.raises(ValueError, match=f"{tmp_path / 'empty'}: not a model directory"):
        make_nlp(parity_files).get_pipe("elmo").from_disk(tmp_path / "empty")


@pytest.mark.skipif(HAS_DEFAULT_MODEL, reason="the bundled default model is installed")
def test_missing_default_model_is_reported():
    nlp = spacy.blank("en")
    nlp.add_pipe("elmo")
    with pytest.raises(ValueError, match="bundled default ELMo model is not installed"):
        nlp("text")


def test_bf16_precision(parity_files, nlp):
    expected = nlp(TEXT)._.elmo_layers
    with kernels.forced("plain"):  # bf16 products on any CPU (auto mode runs fp32 where oneDNN lacks bf16)
        doc = make_nlp(parity_files, precision="bf16")(TEXT)
    assert doc._.elmo_layers.dtype == np.float32 and doc._.elmo_layers.shape == expected.shape
    assert 0 < np.abs(doc._.elmo_layers - expected).max() < 0.1 * np.abs(expected).max()


def _bank_tokens():
    nlp = spacy.blank("en")
    nlp.add_pipe("elmo")
    money, loan, river = (
        nlp(text)
        for text in (
            "He went to the bank to deposit money",
            "The bank approved the loan",
            "They fished by the bank of the river",
        )
    )
    return money[4], loan[1], river[4]


@pytest.mark.skipif(not HAS_DEFAULT_MODEL, reason="the bundled default model is not installed")
def test_default_model_bank_vectors_and_similarity_hook():
    bank, loan_bank, river_bank = _bank_tokens()
    assert bank.text == loan_bank.text == river_bank.text == "bank"
    assert bank._.elmo.shape == (256,)
    assert bank.similarity(loan_bank) == pytest.approx(cosine(bank._.elmo, loan_bank._.elmo), abs=1e-5)
    assert bank.similarity(river_bank) == pytest.approx(cosine(bank._.elmo, river_bank._.elmo), abs=1e-5)
    # contextual: the same word gets different vectors in different sentences
    assert bank.similarity(loan_bank) < 0.999 and bank.similarity(river_bank) < 0.999


@pytest.mark.skipif(not HAS_DEFAULT_MODEL, reason="the bundled default model is not installed")
@pytest.mark.xfail(
    strict=True,
    reason="the bundled 7M-parameter biLM (held-out perplexity 128 after 6.3 GPU-minutes) does not yet separate "
    "the senses: cosine money-bank/loan-bank 0.971 < money-bank/river-bank 0.986 (mix average); see MODEL_CARD.md",
)
def test_word_sense_with_default_model():
    bank, loan_bank, river_bank = _bank_tokens()
    assert bank.similarity(loan_bank) > bank.similarity(river_bank)


def test_factory_declares_what_it_assigns():
    nlp = spacy.blank("en")
    nlp.add_pipe("elmo")
    assert nlp.get_pipe_meta("elmo").assigns == [
        "doc._.elmo_layers",
        "doc._.elmo_mix_weights",
        "doc._.elmo_token_vectors",
        "token._.elmo",
    ]
