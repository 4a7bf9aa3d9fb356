"""The ``elmo`` component's cache of biLM outputs per sequence (``sequence_cache_mb``)."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import spacy
import torch
from spacy.training import Corpus
from spacy.training.initialize import init_nlp
from spacy.training.loop import train
from spacy.util import load_config, load_model_from_config
from thinc.api import Config

from spacy_elmo.pipeline import ElmoComponent
from spacy_elmo.pipeline.sequence_cache import MB, SequenceCache, key_nbytes, sequence_key

from .helpers import CONFIGS, TEXTS, make_nlp

LONG = "One sentence here . Another one follows ! " * 8


def cached_nlp(parity_files, sequence_cache_mb: float = 8, **config) -> spacy.Language:
    return make_nlp(parity_files, sequence_cache_mb=sequence_cache_mb, **config)


def layers_of(nlp: spacy.Language, texts: list[str], **kwargs) -> list[np.ndarray]:
    return [doc._.elmo_layers for doc in nlp.pipe(texts, **kwargs)]


def record_embed_calls(monkeypatch, elmo) -> list[list[list[str]]]:
    """Record the sentences of every ``embed_sentences`` call of ``elmo``'s biLM."""
    calls = []
    real = elmo.bilm.embed_sentences

    def recording(sentences, **kwargs):
        calls.append([list(s) for s in sentences])
        return real(sentences, **kwargs)

    monkeypatch.setattr(elmo.bilm, "embed_sentences", recording)
    return calls


def test_default_is_off(parity_files):
    assert make_nlp(parity_files).get_pipe("elmo").sequence_cache is None


@pytest.mark.parametrize("with_sentences", [False, True])
def test_cached_results_are_bitwise_the_computed_ones(parity_files, monkeypatch, with_sentences):
    texts = TEXTS + [LONG, TEXTS[0]]
    plain, cached = make_nlp(parity_files, max_length=7), cached_nlp(parity_files, max_length=7)
    if with_sentences:
        for nlp in (plain, cached):
            nlp.add_pipe("sentencizer", first=True)
    expected = layers_of(plain, texts)
    elmo = cached.get_pipe("elmo")
    first = layers_of(cached, texts, batch_size=3)
    calls = record_embed_calls(monkeypatch, elmo)
    second = layers_of(cached, texts[::-1])[::-1]
    assert calls == []  # every sequence came from the cache
    for want, got_first, got_second in zip(expected, first, second):
        assert np.array_equal(got_first, got_second)  # the cache hands out what it computed
        # batch independence: bitwise on the oneDNN path, to rounding on the plain one (SPACY_ELMO_KERNELS=plain)
        np.testing.assert_allclose(got_first, want, rtol=0, atol=1e-5)
    n_sequences = len(elmo.sequence_cache)
    assert elmo.sequence_cache.hits >= n_sequences and elmo.sequence_cache.misses == n_sequences


def test_missing_sequences_are_computed_once(parity_files, monkeypatch):
    nlp = cached_nlp(parity_files)
    elmo = nlp.get_pipe("elmo")
    nlp("Seen before .")
    calls = record_embed_calls(monkeypatch, elmo)
    docs = list(nlp.pipe(["Seen before .", "New one .", "New one .", "Seen before ."]))
    assert calls == [[["New", "one", "."]]]
    assert docs[1]._.elmo_layers is docs[2]._.elmo_layers
    assert not docs[0]._.elmo_layers.flags.writeable  # the cache's array, read-only


def entry_bytes(words: list[str], array: np.ndarray) -> int:
    key = ("fp32", tuple(words))
    return array.nbytes + sys.getsizeof(key) + sys.getsizeof(key[1]) + sum(sys.getsizeof(w) for w in words)


def test_memory_bound_and_lru_order():
    arrays = {name: np.full((3, 40, 64), i, dtype=np.float32) for i, name in enumerate("abcde")}  # 30,720 bytes each
    sizes = {name: entry_bytes([name], array) for name, array in arrays.items()}
    assert sizes["a"] == 30_720 + key_nbytes(sequence_key("fp32", ["a"]))
    cache = SequenceCache(max_bytes=3 * sizes["a"] + 10)
    for name in "abc":
        cache.put(sequence_key("fp32", [name]), arrays[name])
    assert len(cache) == 3 and cache.nbytes == sizes["a"] + sizes["b"] + sizes["c"]
    assert cache.get(sequence_key("fp32", ["a"])) is arrays["a"]  # "a" is now the most recent
    cache.put(sequence_key("fp32", ["d"]), arrays["d"])  # evicts "b", the least recently used
    cache.put(sequence_key("fp32", ["e"]), arrays["e"])  # evicts "c"
    assert cache.get(sequence_key("fp32", ["b"])) is None and cache.get(sequence_key("fp32", ["c"])) is None
    assert [cache.get(sequence_key("fp32", [n])) is arrays[n] for n in "ade"] == [True, True, True]
    assert cache.nbytes == sizes["a"] + sizes["d"] + sizes["e"] <= cache.max_bytes
    too_big = np.zeros((3, 200, 64), dtype=np.float32)  # 153,600 bytes > the whole budget
    cache.put(sequence_key("fp32", ["f"]), too_big)
    assert len(cache) == 3 and cache.get(sequence_key("fp32", ["f"])) is None and cache.too_large == 1
    assert (cache.hits, cache.misses) == (4, 3)


def test_component_never_holds_more_than_the_budget(parity_files):
    nlp = cached_nlp(parity_files, sequence_cache_mb=0.05)  # 52,428 bytes: a few sequences of 3 x 64 floats
    cache = nlp.get_pipe("elmo").sequence_cache
    assert cache.max_bytes == int(0.05 * MB) == 52_428
    texts = [f"word{i} " * (5 + i % 7) for i in range(40)]  # 40 distinct sequences, ~1 MB of layers in all
    docs = list(nlp.pipe(texts))
    held = [doc._.elmo_layers for doc in docs[-len(cache) :]]
    assert 0 < len(cache) < 40
    assert cache.nbytes == sum(entry_bytes(text.split(), layers) for text, layers in zip(texts[-len(cache) :], held))
    assert cache.nbytes <= 52_428


def test_changed_weights_are_never_served_stale(parity_files, monkeypatch):
    plain, cached = make_nlp(parity_files), cached_nlp(parity_files)
    before = cached(TEXTS[0])._.elmo_layers.copy()
    for nlp in (plain, cached):
        with torch.no_grad():
            nlp.get_pipe("elmo").bilm.encoder.projection.weight.mul_(0.5)
    after = cached(TEXTS[0])._.elmo_layers
    assert not np.array_equal(before, after)
    assert np.array_equal(after, plain(TEXTS[0])._.elmo_layers)
    assert len(cached.get_pipe("elmo").sequence_cache) == 1  # the stale entry was dropped


def test_from_bytes_and_from_disk_empty_the_cache(parity_files, tmp_path):
    nlp = cached_nlp(parity_files)
    elmo = nlp.get_pipe("elmo")
    nlp(TEXTS[0])
    elmo.from_bytes(elmo.to_bytes())
    assert len(elmo.sequence_cache) == 0 and elmo.sequence_cache.nbytes == 0
    nlp(TEXTS[0])
    elmo.to_disk(tmp_path / "elmo")
    assert sorted(p.name for p in (tmp_path / "elmo").iterdir()) == ["options.json", "weights.hdf5"]
    elmo.from_disk(tmp_path / "elmo")
    assert len(elmo.sequence_cache) == 0


def test_precision_is_part_of_the_key(parity_files, monkeypatch):
    nlp = cached_nlp(parity_files)
    elmo = nlp.get_pipe("elmo")
    real = elmo.bilm.embed_sentences
    precisions = []

    def fake(sentences, batch_size, precision):  # bf16 kernels are not available on every CPU
        precisions.append(precision)
        scale = 2.0 if precision == "bf16" else 1.0
        return [layers * scale for layers in real(sentences, batch_size=batch_size, precision="fp32")]

    monkeypatch.setattr(elmo.bilm, "embed_sentences", fake)
    fp32 = nlp(TEXTS[0])._.elmo_layers
    elmo.precision = "bf16"
    bf16 = nlp(TEXTS[0])._.elmo_layers
    elmo.precision = "fp32"
    again = nlp(TEXTS[0])._.elmo_layers
    assert precisions == ["fp32", "bf16"]
    assert np.array_equal(bf16, 2 * fp32) and again is fp32


def test_not_used_while_the_bilm_is_in_train_mode(parity_files, monkeypatch):
    nlp = cached_nlp(parity_files)
    elmo = nlp.get_pipe("elmo")
    nlp(TEXTS[0])
    elmo.bilm.train()
    calls = record_embed_calls(monkeypatch, elmo)
    nlp(TEXTS[0])
    assert len(calls) == 1 and elmo.sequence_cache.hits == 0


def test_pickled_cache_is_empty():
    cache = SequenceCache(max_bytes=1000)
    cache.put(sequence_key("fp32", ["a"]), np.zeros((1, 1, 4), dtype=np.float32))
    copy = pickle.loads(pickle.dumps(cache))
    assert (copy.max_bytes, len(copy), copy.nbytes, len(cache)) == (1000, 0, 0, 1)


@pytest.mark.parametrize(
    "value, message",
    [
        (-1, r"sequence_cache_mb must be a number of megabytes >= 0 \(0 turns the cache off\), found -1"),
        ("lots", "sequence_cache_mb"),
    ],
)
def test_invalid_budget(parity_files, value, message):
    with pytest.raises(ValueError, match=message):
        cached_nlp(parity_files, sequence_cache_mb=value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -0.5, "8"])
def test_invalid_budget_in_python(value):
    with pytest.raises(
        ValueError, match=f"elmo: sequence_cache_mb must be a number of megabytes >= 0 .*found {value!r}"
    ):
        ElmoComponent(spacy.blank("en").vocab, sequence_cache_mb=value)


def ner_config(workspace: Path, parity_files, sequence_cache_mb: float) -> Config:
    return load_config(
        CONFIGS / "ner_elmo.cfg",
        overrides={
            "paths.train": str(workspace / "ner" / "train.spacy"),
            "paths.dev": str(workspace / "ner" / "dev.spacy"),
            "training.max_steps": 12,
            "training.eval_frequency": 4,
            "components.elmo.options_file": str(parity_files[0]),
            "components.elmo.weight_file": str(parity_files[1]),
            "components.elmo.sequence_cache_mb": sequence_cache_mb,
        },
        interpolate=False,
    )


def test_warm_up_fills_the_cache_from_the_corpora(workspace, parity_files):
    """The configs' after_init callback embeds train + dev (here the same 6 Docs) before the first step."""
    cache = init_nlp(ner_config(workspace, parity_files, 16)).get_pipe("elmo").sequence_cache
    assert (len(cache), cache.misses, cache.hits, cache.evictions) == (6, 6, 6, 0)
    assert init_nlp(ner_config(workspace, parity_files, 0)).get_pipe("elmo").sequence_cache is None


def test_warm_up_stops_when_the_budget_is_too_small(workspace, parity_files, caplog):
    with caplog.at_level("WARNING", logger="spacy"):
        cache = init_nlp(ner_config(workspace, parity_files, 0.005)).get_pipe("elmo").sequence_cache
    assert cache.evictions > 0 and cache.nbytes <= cache.max_bytes == 5242
    assert "sequence_cache_mb = 0.005 is too small to hold the training and dev corpora" in caplog.text


def test_warm_up_warns_when_not_even_one_sequence_fits(workspace, parity_files, caplog):
    # 0.0001 MB = 104 bytes: less than any sequence's layers, so nothing is stored and nothing evicted
    with caplog.at_level("WARNING", logger="spacy"):
        cache = init_nlp(ner_config(workspace, parity_files, 0.0001)).get_pipe("elmo").sequence_cache
    assert (len(cache), cache.evictions, cache.too_large) == (0, 0, 6)
    assert (
        "sequence_cache_mb = 0.0001 is too small to hold the training and dev corpora; stopped filling the cache "
        "at 0 sequences (6 larger than the whole budget)"
    ) in caplog.text


def test_warm_up_without_the_corpus_files_warns_and_leaves_the_cache_empty(workspace, parity_files, caplog):
    # a config initialized from code with other examples (the corpora's files absent): nothing to warm from
    config = ner_config(workspace, parity_files, 16)
    config["paths"]["train"] = str(workspace / "missing" / "train.spacy")
    nlp = load_model_from_config(config, auto_fill=True)
    dev = Corpus(workspace / "ner" / "dev.spacy")
    with caplog.at_level("WARNING", logger="spacy"):
        nlp.initialize(lambda: dev(nlp))
    assert "missing/train.spacy (corpora.train) not found" in caplog.text
    assert len(nlp.get_pipe("elmo").sequence_cache) == 6  # the dev corpus is still there


def train_ner(workspace: Path, parity_files, output: Path, sequence_cache_mb: float) -> spacy.Language:
    output.mkdir()
    nlp, _ = train(init_nlp(ner_config(workspace, parity_files, sequence_cache_mb)), output)
    return nlp


@pytest.mark.slow
def test_spacy_train_is_identical_with_and_without_the_cache(workspace, parity_files, tmp_path):
    plain = train_ner(workspace, parity_files, tmp_path / "plain", 0)
    cached = train_ner(workspace, parity_files, tmp_path / "cached", 16)
    assert plain.get_pipe("elmo").sequence_cache is None
    cache = cached.get_pipe("elmo").sequence_cache
    # 6 distinct Docs (train = dev), computed once by the warm-up, then found at 12 steps and 4 evaluations
    assert cache.misses == 6 and cache.hits >= 6 + 12 * 6 + 4 * 6
    assert plain.get_pipe("ner").to_bytes() == cached.get_pipe("ner").to_bytes()
    for name in ("model-best", "model-last"):
        plain_meta = spacy.load(tmp_path / "plain" / name).meta["performance"]
        assert plain_meta == spacy.load(tmp_path / "cached" / name).meta["performance"]
