"""The token-layer cache: same numbers as without it, a bounded LRU, invalidation, AllenNLP's vocab_to_cache."""

from __future__ import annotations

import os
import pickle
import threading

import numpy as np
import pytest
import spacy
import torch

from spacy_elmo import ElmoEmbedder, load_bilm
from spacy_elmo.bilm import batch_char_ids, kernels, onednn
from spacy_elmo.bilm.token_cache import DEFAULT_TOKEN_CACHE_SIZE, TokenCache

TEXT = [
    "the bank approved the loan and the bank manager smiled .".split(),
    "they fished by the river bank , and the river was cold .".split(),
    "the the the , , .".split(),
    [],
    ["émoji", "🙂", "x" * 80],
]


@pytest.fixture
def pair(parity_files):
    """The parity biLM without a cache and a copy with one."""
    return load_bilm(*parity_files, token_cache_size=0), load_bilm(*parity_files, token_cache_size=100)


def assert_same(got: list[np.ndarray], expected: list[np.ndarray]) -> None:
    """Cached vs computed: the token layer equal up to rounding (products over other row counts), the
    contextual layers within 1e-5 (the fixture's long sentences amplify a rounding difference along the
    recurrence)."""
    for a, b in zip(got, expected, strict=True):
        assert a.shape == b.shape
        assert np.abs(a[0] - b[0]).max(initial=0) <= 1e-6 and np.abs(a - b).max(initial=0) <= 1e-5


def _encoded_tokens(bilm, monkeypatch) -> list[int]:
    """Record how many tokens each call of the character CNN receives."""
    calls: list[int] = []
    forward = bilm.encoder.forward
    monkeypatch.setattr(bilm.encoder, "forward", lambda ids: calls.append(len(ids)) or forward(ids))
    return calls


@pytest.mark.parametrize("mode", ["plain", "auto"])
def test_cached_equals_uncached(pair, mode):
    plain, cached = pair
    with kernels.forced(mode):
        expected = plain.embed_sentences(TEXT)
        for _ in range(2):  # cold cache, then every token cached
            assert_same(cached.embed_sentences(TEXT), expected)
    assert 0 < len(cached.token_cache) <= 100


def test_each_word_type_is_encoded_once(pair, monkeypatch):
    _, cached = pair
    calls = _encoded_tokens(cached, monkeypatch)
    cached.embed_sentences(TEXT[:3])
    # 15 distinct tokens in the three sentences (30 tokens), plus <S> and </S>; nothing the second time
    assert calls == [17]
    cached.embed_sentences(TEXT[:3])
    assert calls == [17]


def test_lru_bound_and_recency(parity_files, monkeypatch):
    bilm = load_bilm(*parity_files, token_cache_size=5)
    calls = _encoded_tokens(bilm, monkeypatch)
    bilm.embed_sentences([[f"w{i}" for i in range(20)]])
    assert len(bilm.token_cache) == 5 and bilm.token_cache._store.shape == (5, 32)
    bilm.embed_sentences([["w19"]])  # w19 and </S> were among the last five in: only <S> is computed again
    assert calls == [22, 1]
    bilm.embed_sentences([["w0"]])  # evicted long ago
    assert calls == [22, 1, 1] and len(bilm.token_cache) == 5


def test_threads_sharing_a_small_cache_get_the_uncached_numbers(parity_files):
    """Four threads through one cache of 8 entries (evicting all the time: slots are reused while other threads
    read theirs) get what the model computes without a cache."""
    plain = load_bilm(*parity_files, token_cache_size=0)
    shared = load_bilm(*parity_files, token_cache_size=8)
    batches = [[[f"t{(k * 7 + i) % 23}" for i in range(5 + k % 4)]] for k in range(24)]
    expected = [plain.embed_sentences(b) for b in batches]
    shared.embed_sentences(batches[0])  # packs the weights before the threads start
    failures: list[str] = []

    def run(worker: int) -> None:
        for _ in range(3):
            for k in range(worker, len(batches), 4):
                got = shared.embed_sentences(batches[k])
                error = float(np.abs(got[0] - expected[k][0]).max())
                if error > 1e-5:
                    failures.append(f"batch {k}: {error:.2e}")

    threads = [threading.Thread(target=run, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert failures == [] and len(shared.token_cache) == 8
    slots = list(shared.token_cache._slots.values())
    assert sorted(slots) == list(range(8))  # every slot held by exactly one key


def test_cache_follows_parameters_and_precision(pair):
    plain, cached = pair
    cached.embed_sentences(TEXT)
    with torch.no_grad():
        for model in pair:
            model.encoder.projection.bias.add_(0.25)
    assert_same(cached.embed_sentences(TEXT), plain.embed_sentences(TEXT))
    with kernels.forced("plain"):  # bf16 products on any CPU: entries of another dtype are not mixed up
        bf16 = cached.embed_sentences(TEXT, precision="bf16")
        assert max(np.abs(a - b).max(initial=0) for a, b in zip(bf16, plain.embed_sentences(TEXT))) > 1e-4
        assert_same(cached.embed_sentences(TEXT), plain.embed_sentences(TEXT))


def test_cache_is_unused_under_autograd_and_not_pickled(pair, monkeypatch):
    _, cached = pair
    calls = _encoded_tokens(cached, monkeypatch)
    ids = batch_char_ids(TEXT[:1])
    cached(ids)
    cached(ids)
    assert calls == [13, 13] and len(cached.token_cache) == 0  # 11 tokens + markers, computed both times
    monkeypatch.undo()
    cached.embed_sentences(TEXT)
    copy = pickle.loads(pickle.dumps(cached))
    assert len(copy.token_cache) == 0 and copy.token_cache_size == 100


def test_cache_settings(parity_files):
    assert load_bilm(*parity_files).token_cache_size == DEFAULT_TOKEN_CACHE_SIZE
    assert load_bilm(*parity_files, token_cache_size=0).token_cache is None
    assert ElmoEmbedder(*map(str, parity_files), token_cache_size=7).bilm.token_cache_size == 7
    for bad in (-1, 2.5, True, "10"):
        with pytest.raises(ValueError, match=f"token_cache_size must be an int >= 0 .*found {bad!r}"):
            load_bilm(*parity_files, token_cache_size=bad)
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="elmo: token_cache_size must be an int >= 0"):
        nlp.add_pipe("elmo", config={"token_cache_size": -5})
    nlp.add_pipe(
        "elmo",
        config={"options_file": str(parity_files[0]), "weight_file": str(parity_files[1]), "token_cache_size": 3},
    )
    nlp("one two three four five")
    assert nlp.get_pipe("elmo").bilm.token_cache_size == 3 and len(nlp.get_pipe("elmo").bilm.token_cache) == 3


@pytest.mark.skipif(not onednn.available(), reason="PyTorch built without oneDNN")
def test_store_is_written_in_and_out_of_inference_mode(parity_files):
    bilm = load_bilm(*parity_files, token_cache_size=10)
    with torch.inference_mode():
        first = bilm.token_layer(batch_char_ids([["a", "b"]]))
    with torch.no_grad():  # Elmo runs under no_grad: the store must not be an inference tensor
        second = bilm.token_layer(batch_char_ids([["a", "c"]]))
    assert torch.equal(first[0, 0], second[0, 0]) and isinstance(bilm.token_cache, TokenCache)


def test_atomic_files_get_the_umask_permissions(parity_files, tmp_path):
    from spacy_elmo.embed import embed_file

    bilm = load_bilm(*parity_files)
    old = os.umask(0o027)
    try:
        embed_file(bilm, iter(["a b"]), tmp_path / "out.hdf5", progress=False)
        bilm.save(tmp_path / "model")
    finally:
        os.umask(old)
    for path in (tmp_path / "out.hdf5", tmp_path / "model" / "weights.hdf5", tmp_path / "model" / "options.json"):
        assert path.stat().st_mode & 0o777 == 0o640, path
