"""The AllenNLP-compatible API: ``Elmo``, ``batch_to_ids``, ``ElmoEmbedder``.

The four recipes below are AllenNLP's documented ELMo usage with only the imports changed; the model files
are the tiny parity fixture (64-wide layers instead of 1024), given as local paths and, as AllenNLP users write
them, as the released models' URLs (the host replaced by a local mirror on 127.0.0.1).
"""

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from spacy_elmo import Elmo, ElmoEmbedder, batch_to_ids  # was: from allennlp.modules.elmo / commands.elmo
from spacy_elmo.bilm.model import DEFAULT_MODEL_DIR

from .helpers import PARITY as FIXTURE
from .model_server import SEED_OPTIONS, SEED_WEIGHTS

options_file = str(FIXTURE / "options.json")
weight_file = str(FIXTURE / "weights.hdf5")
ELMO_DIM = 64  # 1024 for the original 2x4096_512_2048cnn model
SENTENCES = json.loads((FIXTURE / "sentences.json").read_text(encoding="utf-8"))
MIX = [0.3, -1.0, 2.0]


@pytest.fixture(scope="module")
def bilm(parity_bilm):
    return parity_bilm


@pytest.fixture(params=["files", "urls"])
def recipe_files(request, monkeypatch) -> Iterator[tuple[str, str]]:
    """The recipes' module-level ``options_file`` / ``weight_file``: local paths, or the seed's URLs served by a
    local mirror (downloaded once into the cache, then read from there)."""
    if request.param == "files":
        yield options_file, weight_file
        return
    mirror, cache = request.getfixturevalue("mirror"), request.getfixturevalue("model_cache")
    urls = mirror.url(SEED_OPTIONS), mirror.url(SEED_WEIGHTS)
    monkeypatch.setitem(globals(), "options_file", urls[0])
    monkeypatch.setitem(globals(), "weight_file", urls[1])
    yield urls
    assert mirror.requests == [SEED_OPTIONS, SEED_WEIGHTS]  # downloaded once, then from the cache
    assert len([p for p in cache.rglob("*") if p.is_file()]) == 4  # the two files and their .sha256 records


@pytest.fixture(scope="module")
def embedder():
    return ElmoEmbedder(options_file, weight_file)


def mixed(layers: np.ndarray, scalars: list[float]) -> np.ndarray:
    """``(n_layers, n, dim)`` -> ``(n, dim)`` with AllenNLP's softmax-normalised weights and gamma = 1."""
    return np.tensordot(torch.softmax(torch.tensor(scalars), 0).numpy(), layers, axes=1)


# ---- the recipes, as written for AllenNLP -------------------------------------------------------


class ELMoTextClassifier(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.elmo = Elmo(options_file, weight_file, num_output_representations=1, dropout=0)
        self.lstm = nn.LSTM(input_size=ELMO_DIM, hidden_size=256, batch_first=True)
        self.classifier = nn.Linear(256, num_classes)

    def forward(self, sentences):
        character_ids = batch_to_ids(sentences)
        elmo_emb = self.elmo(character_ids)["elmo_representations"][0]  # (batch, seq_len, 1024)
        lstm_out, _ = self.lstm(elmo_emb)
        logits = self.classifier(lstm_out[:, -1, :])
        return logits


class ELMoForNER(nn.Module):
    def __init__(self, num_tags):
        super().__init__()
        self.elmo = Elmo(options_file, weight_file, num_output_representations=1, dropout=0)
        self.lstm = nn.LSTM(input_size=ELMO_DIM, hidden_size=256, batch_first=True, bidirectional=True)
        self.classifier = nn.Linear(512, num_tags)

    def forward(self, sentences):
        character_ids = batch_to_ids(sentences)
        elmo_emb = self.elmo(character_ids)["elmo_representations"][0]  # (batch, seq_len, 1024)
        lstm_out, _ = self.lstm(elmo_emb)  # (batch, seq_len, 512)
        tag_logits = self.classifier(lstm_out)  # (batch, seq_len, num_tags)
        return tag_logits


def elmo_sentence_similarity(sentence1, sentence2):
    elmo = Elmo(options_file, weight_file, num_output_representations=1, dropout=0)
    char_ids = batch_to_ids([sentence1, sentence2])
    embeddings = elmo(char_ids)["elmo_representations"][0]  # (2, seq_len, 1024)
    sent1_emb = torch.mean(embeddings[0], dim=0)  # (1024,)
    sent2_emb = torch.mean(embeddings[1], dim=0)  # (1024,)
    similarity = F.cosine_similarity(sent1_emb.unsqueeze(0), sent2_emb.unsqueeze(0), dim=1)
    return similarity.item()


def disambiguate_word_sense(word, context):
    elmo = ElmoEmbedder(options_file, weight_file)  # the recipe's ElmoEmbedder() needs the bundled model
    embeddings = elmo.embed_sentence(context)  # (3 layers, seq_len, 1024)
    word_index = context.index(word)
    word_embedding = torch.cat([torch.tensor(embeddings[i][word_index]) for i in range(3)], dim=0)  # 3072
    return word_embedding


# ---- recipes ------------------------------------------------------------------------------------


def test_text_classifier_recipe(recipe_files):
    model = ELMoTextClassifier(num_classes=2)
    output = model([["I", "love", "this", "movie"], ["This", "is", "terrible"]])
    assert output.shape == (2, 2)
    assert torch.isfinite(output).all()


def test_ner_recipe(recipe_files):
    model = ELMoForNER(num_tags=5)
    output = model([["Apple", "is", "based", "in", "Cupertino"]])
    assert output.shape == (1, 5, 5)
    assert torch.isfinite(output).all()


@pytest.mark.parametrize("recipe", ["classifier", "ner"])
def test_training_step_updates_the_scalar_mix_and_leaves_the_frozen_bilm(recipe, recipe_files):
    torch.manual_seed(0)
    sentences = [["Apple", "is", "based", "in", "Cupertino"], ["I", "love", "it"]]
    if recipe == "classifier":
        model = ELMoTextClassifier(num_classes=2)
        loss_of = lambda out: F.cross_entropy(out, torch.tensor([0, 1]))  # noqa: E731
    else:
        model = ELMoForNER(num_tags=5)
        tags = torch.tensor([[1, 0, 0, 0, 2], [0, 0, 0, -100, -100]])
        loss_of = lambda out: F.cross_entropy(out.reshape(-1, 5), tags.reshape(-1))  # noqa: E731
    bilm_before = {k: v.clone() for k, v in model.elmo.bilm.state_dict().items()}
    mix = model.elmo.scalar_mix_0
    scalars_before, gamma_before = mix.scalar_parameters.detach().clone(), mix.gamma.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)

    loss = loss_of(model(sentences))
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()

    assert not torch.allclose(mix.scalar_parameters, scalars_before)
    assert not torch.allclose(mix.gamma, gamma_before)
    assert all(not p.requires_grad and p.grad is None for p in model.elmo.bilm.parameters())
    after = model.elmo.bilm.state_dict()
    assert all(torch.equal(after[k], v) for k, v in bilm_before.items())


def test_sentence_similarity_recipe(embedder, recipe_files):
    sentence1 = ["The", "cat", "sat", "on", "the", "mat"]
    sentence2 = ["A", "feline", "is", "sitting", "on", "a", "rug"]
    similarity = elmo_sentence_similarity(sentence1, sentence2)
    # Untrained mixes weigh the three layers equally (gamma 1): sentence vector = mean over tokens and layers.
    v1, v2 = (layers.mean(axis=(0, 1)) for layers in embedder.embed_batch([sentence1, sentence2]))
    expected = float(v1 @ v2 / np.linalg.norm(v1) / np.linalg.norm(v2))
    assert -1.0 < similarity < 0.9999
    assert similarity == pytest.approx(expected, abs=1e-5)
    assert elmo_sentence_similarity(sentence1, sentence1) == pytest.approx(1.0, abs=1e-6)


def test_word_sense_recipe(recipe_files):
    context1 = ["He", "went", "to", "the", "bank", "to", "deposit", "money"]
    context2 = ["They", "fished", "by", "the", "bank", "of", "the", "river"]
    embedding1 = disambiguate_word_sense("bank", context1)
    embedding2 = disambiguate_word_sense("bank", context2)
    assert embedding1.shape == embedding2.shape == (3 * ELMO_DIM,)
    # Layer 0 is the context-free character layer; the biLSTM layers see the context.
    torch.testing.assert_close(embedding1[:ELMO_DIM], embedding2[:ELMO_DIM], rtol=0, atol=0)
    assert (embedding1[ELMO_DIM:] - embedding2[ELMO_DIM:]).abs().max() > 1e-3
    similarity = F.cosine_similarity(embedding1.unsqueeze(0), embedding2.unsqueeze(0), dim=1)
    assert 0.0 < similarity.item() < 0.9999


# ---- batch_to_ids -------------------------------------------------------------------------------


def test_batch_to_ids_matches_allennlp_character_ids():
    ids = batch_to_ids([["a", "é", "x" * 60], [], ["<S>"]])
    assert ids.dtype == torch.int64 and ids.shape == (3, 3, 50)
    assert ids[0, 0].tolist() == [259, 98, 260] + [261] * 47
    assert ids[0, 1].tolist() == [259, 196, 170, 260] + [261] * 46  # UTF-8 bytes 0xC3 0xA9, +1
    assert ids[0, 2].tolist() == [259] + [121] * 48 + [260]  # 60 chars truncated to 48 bytes
    assert ids[1].eq(0).all()  # the empty sentence is all padding
    assert ids[2, 0].tolist() == [259, 257, 260] + [261] * 47  # AllenNLP's <S> marker ids
    assert ids[2, 1:].eq(0).all()
    assert batch_to_ids([]).shape == (0, 0, 50)


# ---- Elmo ---------------------------------------------------------------------------------------


def test_elmo_equals_embed_sentences_mixed_with_fixed_weights(bilm):
    elmo = Elmo(options_file, weight_file, num_output_representations=2, dropout=0.0, scalar_mix_parameters=MIX)
    assert not any(p.requires_grad for p in elmo.parameters())
    out = elmo(batch_to_ids(SENTENCES))
    lengths = [len(s) for s in SENTENCES]
    assert len(out["elmo_representations"]) == 2 and elmo.get_output_dim() == ELMO_DIM
    assert out["mask"].dtype == torch.bool and out["mask"].sum(1).tolist() == lengths
    expected_npz = np.load(FIXTURE / "expected.npz")
    for representation in out["elmo_representations"]:
        assert representation.shape == (13, 40, ELMO_DIM)
        for i, (layers, n) in enumerate(zip(bilm.embed_sentences(SENTENCES), lengths)):
            got = representation[i].numpy()
            assert np.abs(got[:n] - mixed(layers, MIX)).max() <= 1e-5
            assert np.abs(got[:n] - mixed(expected_npz[f"s{i}"], MIX)).max() <= 1e-4  # AllenNLP 2.10.1
            assert not got[n:].any()


def test_each_representation_has_its_own_trainable_mix():
    elmo = Elmo(options_file, weight_file, num_output_representations=2, dropout=0.0)
    assert [n for n, p in elmo.named_parameters() if p.requires_grad] == [
        "scalar_mix_0.scalar_parameters",
        "scalar_mix_0.gamma",
        "scalar_mix_1.scalar_parameters",
        "scalar_mix_1.gamma",
    ]
    out = elmo(batch_to_ids([["a", "b", "c"]]))["elmo_representations"]
    out[0].pow(2).sum().backward()
    assert elmo.scalar_mix_0.scalar_parameters.grad.abs().sum() > 0
    assert elmo.scalar_mix_1.scalar_parameters.grad is None


def test_requires_grad_trains_the_bilm():
    elmo = Elmo(options_file, weight_file, requires_grad=True, dropout=0.0)
    projection = elmo.bilm.encoder.projection.weight
    before = projection.detach().clone()
    optimizer = torch.optim.SGD(elmo.parameters(), lr=0.1)
    elmo(batch_to_ids([["The", "bank"]]))["elmo_representations"][0].pow(2).sum().backward()
    optimizer.step()
    assert projection.requires_grad and projection.grad.abs().sum() > 0
    assert not torch.equal(projection, before)


def test_keep_sentence_boundaries(bilm):
    sentences = [["The", "bank", "of", "the", "river"], ["Hello"]]
    ids = batch_to_ids(sentences)
    kept = Elmo(options_file, weight_file, dropout=0.0, keep_sentence_boundaries=True, scalar_mix_parameters=MIX)
    stripped = Elmo(options_file, weight_file, dropout=0.0, scalar_mix_parameters=MIX)
    out, plain = kept(ids), stripped(ids)["elmo_representations"][0]
    rep = out["elmo_representations"][0]
    assert rep.shape == (2, 7, ELMO_DIM)
    assert out["mask"].tolist() == [[True] * 7, [True] * 3 + [False] * 4]
    with_markers = bilm.add_boundaries(ids, torch.tensor([5, 1]))
    with torch.no_grad():
        layers = torch.stack(bilm.layers_with_markers(with_markers, torch.tensor([7, 3])))
    torch.testing.assert_close(rep, torch.tensor(mixed(layers.numpy(), MIX)), rtol=0, atol=1e-5)
    torch.testing.assert_close(rep[:, 1:-1] * out["mask"][:, 2:, None], plain, rtol=0, atol=1e-5)
    assert rep[1, 2].abs().sum() > 0 and not rep[1, 3:].any()  # </S> of "Hello" kept, padding zero


def test_layer_norm_uses_the_mask_with_sentence_boundaries(bilm):
    sentences = [["The", "bank", "of", "the", "river"], ["Hello"]]
    ids = batch_to_ids(sentences)
    out = Elmo(options_file, weight_file, dropout=0.0, do_layer_norm=True, scalar_mix_parameters=MIX)(ids)
    with torch.no_grad():
        layers = bilm.layers_with_markers(bilm.add_boundaries(ids, torch.tensor([5, 1])), torch.tensor([7, 3]))
    real = np.array([[1] * 7, [1] * 3 + [0] * 4], dtype=bool)  # AllenNLP normalises over tokens + markers
    normed = [(x - x[real].mean()) / x[real].std() for x in (layer.numpy() for layer in layers)]
    expected = mixed(np.stack(normed), MIX)[:, 1:-1] * np.array([[1] * 5, [1] + [0] * 4])[..., None]
    np.testing.assert_allclose(out["elmo_representations"][0].numpy(), expected, rtol=0, atol=1e-5)


def test_dropout_after_mixing():
    ids = batch_to_ids(SENTENCES)
    elmo = Elmo(options_file, weight_file, dropout=0.5, scalar_mix_parameters=MIX)
    reference = Elmo(options_file, weight_file, dropout=0.0, scalar_mix_parameters=MIX)(ids)
    reference, mask = reference["elmo_representations"][0], reference["mask"]
    torch.manual_seed(0)
    dropped = elmo(ids)["elmo_representations"][0][mask]
    kept = dropped != 0
    assert 0.45 < 1 - kept.float().mean().item() < 0.55
    torch.testing.assert_close(dropped[kept], 2 * reference[mask][kept])
    elmo.eval()
    torch.testing.assert_close(elmo(ids)["elmo_representations"][0], reference, rtol=0, atol=0)


def test_extra_leading_dimensions_and_empty_batches():
    elmo = Elmo(options_file, weight_file, dropout=0.0)
    ids = batch_to_ids(SENTENCES[:4])  # (4, 10, 50)
    flat = elmo(ids)
    nested = elmo(ids.reshape(2, 2, 10, 50))
    assert nested["elmo_representations"][0].shape == (2, 2, 10, ELMO_DIM) and nested["mask"].shape == (2, 2, 10)
    torch.testing.assert_close(nested["elmo_representations"][0].reshape(4, 10, -1), flat["elmo_representations"][0])
    empty = elmo(batch_to_ids([]))
    assert empty["elmo_representations"][0].shape == (0, 0, ELMO_DIM) and empty["mask"].shape == (0, 0)
    one_empty = elmo(batch_to_ids([[]]))
    assert one_empty["elmo_representations"][0].shape == (1, 0, ELMO_DIM)


def test_module_shares_a_loaded_bilm(bilm):
    elmo = Elmo(module=bilm, dropout=0.0)
    assert elmo.bilm is bilm
    assert elmo(batch_to_ids([["a"]]))["elmo_representations"][0].shape == (1, 1, ELMO_DIM)


# ---- ElmoEmbedder -------------------------------------------------------------------------------


def test_elmo_embedder_recipe(embedder, bilm):
    vectors = embedder.embed_sentence(["I", "ate", "an", "apple"])
    assert vectors.shape == (3, 4, ELMO_DIM) and vectors.dtype == np.float32
    # equal up to rounding: the two objects' token caches hold different words (other row counts in the products)
    np.testing.assert_allclose(vectors, bilm.embed_sentences([["I", "ate", "an", "apple"]])[0], rtol=0, atol=1e-5)
    batch = [["Hello", "world"], ["ELMo", "is", "awesome"], []]
    batch_vectors = embedder.embed_batch(batch)
    assert [v.shape for v in batch_vectors] == [(3, 2, ELMO_DIM), (3, 3, ELMO_DIM), (3, 0, ELMO_DIM)]
    activations, mask = embedder.batch_to_embeddings(batch)
    assert activations.shape == (3, 3, 3, ELMO_DIM) and mask.sum(1).tolist() == [2, 3, 0]
    np.testing.assert_allclose(activations[1].numpy(), batch_vectors[1], rtol=0, atol=1e-5)


def test_embed_sentences_is_lazy(embedder):
    consumed = []

    def sentences():
        for i in range(5):
            consumed.append(i)
            yield ["w"] * (i + 1)

    result = embedder.embed_sentences(sentences(), batch_size=2)
    assert isinstance(result, Iterator) and consumed == []
    first = next(result)
    assert first.shape == (3, 1, ELMO_DIM) and consumed == [0, 1]
    assert [v.shape[1] for v in result] == [2, 3, 4, 5]


def test_default_model(tmp_path):
    if (DEFAULT_MODEL_DIR / "weights.hdf5").is_file():
        assert ElmoEmbedder().embed_sentence(["I", "ate"]).shape[1] == 2
    else:
        with pytest.raises(ValueError, match="bundled default ELMo model is not installed"):
            ElmoEmbedder()
        with pytest.raises(ValueError, match="bundled default ELMo model is not installed"):
            Elmo()


# ---- embed_file ---------------------------------------------------------------------------------

LINES = ["The bank of the river .", "Hello", "The bank of the river .", "  café  naïve ", "a b c"]


def read_h5(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        return {k: f[k].asstr()[0] if k == "sentence_to_index" else f[k][()] for k in f}


def test_embed_file_layouts(embedder, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    expected = embedder.embed_batch([line.split() for line in LINES])
    index = {"The bank of the river .": "2", "Hello": "1", "café  naïve": "3", "a b c": "4"}
    for output_format, select in [("all", lambda x: x), ("top", lambda x: x[-1]), ("average", lambda x: x.mean(0))]:
        out = tmp_path / f"{output_format}.hdf5"
        embedder.embed_file(str(source), out, output_format=output_format, batch_size=2)
        data = read_h5(out)
        assert sorted(data) == ["0", "1", "2", "3", "4", "sentence_to_index"]
        assert json.loads(data["sentence_to_index"]) == index
        for i, layers in enumerate(expected):
            assert data[str(i)].dtype == np.float32
            np.testing.assert_allclose(data[str(i)], select(layers), rtol=0, atol=1e-5)
    assert read_h5(tmp_path / "all.hdf5")["1"].shape == (3, 1, ELMO_DIM)
    assert read_h5(tmp_path / "top.hdf5")["0"].shape == read_h5(tmp_path / "average.hdf5")["0"].shape == (6, ELMO_DIM)


def test_embed_file_keys_and_forgetting(embedder, tmp_path):
    out = tmp_path / "out.hdf5"
    embedder.embed_file(io.StringIO("b a\nHello\n"), out, output_format="top", forget_sentences=True)
    assert sorted(read_h5(out)) == ["0", "1"]
    embedder.embed_file(io.StringIO("b a\nHello\n"), out, output_format="top", use_sentence_keys=True)
    data = read_h5(out)
    assert sorted(data) == ["Hello", "b a"]
    np.testing.assert_allclose(data["b a"], embedder.embed_sentence(["b", "a"])[-1], rtol=0, atol=1e-5)


class Stream:
    """A non-seekable line stream (like stdin) that counts the lines read."""

    def __init__(self, lines: list[str]) -> None:
        self.lines, self.read = lines, 0

    def seekable(self) -> bool:
        return False

    def __iter__(self):
        for line in self.lines:
            self.read += 1
            yield line + "\n"


def test_embed_file_streams_batch_by_batch(parity_bilm, tmp_path, monkeypatch):
    bilm = parity_bilm
    stream, calls = Stream(LINES), []
    embed = bilm.embed_sentences
    monkeypatch.setattr(bilm, "embed_sentences", lambda s, *a: calls.append((len(s), stream.read)) or embed(s, *a))
    from spacy_elmo.embed import embed_file

    embed_file(bilm, stream, tmp_path / "out.hdf5", batch_size=2, progress=False)
    assert calls == [(2, 2), (2, 4), (1, 5)]  # each batch is embedded before the next lines are read


def test_embed_file_failures_leave_no_output(embedder, tmp_path, monkeypatch):
    out = tmp_path / "out.hdf5"
    out.write_text("old")
    source = tmp_path / "in.txt"
    source.write_text("a b\n\nc\n", encoding="utf-8")
    calls = []
    monkeypatch.setattr(embedder.bilm, "embed_sentences", lambda *a: calls.append(a) or [])
    with pytest.raises(ValueError, match=r"in\.txt: line 2 is blank"):
        embedder.embed_file(source, out, batch_size=1)
    assert calls == []  # a file is checked before anything is embedded
    monkeypatch.undo()
    with pytest.raises(ValueError, match="input: line 2 is blank"):  # a stream fails once it gets there
        embedder.embed_file(Stream(["a b", "  ", "c"]), out, batch_size=1)
    assert out.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.hdf5"]


# ---- errors -------------------------------------------------------------------------------------


def test_elmo_argument_errors(bilm, monkeypatch):
    with pytest.raises(ValueError, match="num_output_representations must be an int >= 1, found 0"):
        Elmo(options_file, weight_file, num_output_representations=0)
    with pytest.raises(TypeError, match="vocab_to_cache must be a list of strings"):
        Elmo(options_file, weight_file, 1, vocab_to_cache="the bank")
    with pytest.raises(ValueError, match="token_cache_size must be an int >= 0 .*found -1"):
        ElmoEmbedder(options_file, weight_file, token_cache_size=-1)
    with pytest.raises(ValueError, match="scalar_mix_parameters has 2 values; this biLM has 3 layers"):
        Elmo(options_file, weight_file, scalar_mix_parameters=[1.0, 2.0])
    with pytest.raises(ValueError, match="give both options_file and weight_file"):
        Elmo(options_file)
    monkeypatch.setenv("SPACY_ELMO_OFFLINE", "1")
    with pytest.raises(ValueError, match="options.json is not in the cache .* SPACY_ELMO_OFFLINE=1"):
        Elmo("https://allennlp.s3.amazonaws.com/models/elmo/2x4096_512_2048cnn/options.json", weight_file)
    with pytest.raises(ValueError, match="not both"):
        Elmo(options_file, weight_file, module=bilm)
    with pytest.raises(ValueError, match="ELMo options file not found: .*missing.json"):
        ElmoEmbedder(str(FIXTURE / "missing.json"), weight_file)


def test_elmo_input_errors():
    elmo = Elmo(options_file, weight_file, dropout=0.0)
    input_ids = torch.randn(2, 10, 50)  # AllenNLP's documented "pretend these are character ids"
    with pytest.raises(ValueError, match=r"integer tensor of shape \(batch, tokens, 50\), found float32 \(2, 10, 50\)"):
        elmo(input_ids)
    with pytest.raises(ValueError, match=r"found int64 \(2, 10, 49\)"):
        elmo(torch.ones(2, 10, 49, dtype=torch.long))
    with pytest.raises(ValueError, match=r"found int64 \(10, 50\)"):
        elmo(torch.ones(10, 50, dtype=torch.long))
    with pytest.raises(ValueError, match=r"must lie in \[0, 261\], found values in \[0, 300\]"):
        elmo(torch.tensor([[[300] + [0] * 49]]))
    with pytest.raises(TypeError, match="torch tensor .* found list"):
        elmo([["I", "ate"]])


def test_token_input_errors(embedder, tmp_path):
    with pytest.raises(TypeError, match="must be a list of token lists .* found str"):
        batch_to_ids("I ate an apple")
    with pytest.raises(TypeError, match=r"sentences\[0\] must be a list of token strings, found str .*split it"):
        batch_to_ids(["I", "ate"])
    with pytest.raises(TypeError, match=r"sentences\[0\]\[1\] must be a str token, found int"):
        batch_to_ids([["I", 3]])
    with pytest.raises(TypeError, match="expected a list of token strings, found str: split it into tokens"):
        embedder.embed_sentence("I ate an apple")
    with pytest.raises(TypeError, match="must be a list of token lists"):
        embedder.embed_batch("I ate")


def test_embed_file_errors(embedder, tmp_path):
    out = tmp_path / "out.hdf5"
    with pytest.raises(ValueError, match=r"output_format must be one of \('all', 'top', 'average'\), found 'mean'"):
        embedder.embed_file(io.StringIO("a\n"), out, output_format="mean")
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, found 0"):
        embedder.embed_file(io.StringIO("a\n"), out, batch_size=0)
    with pytest.raises(ValueError, match="input file not found: .*nope.txt"):
        embedder.embed_file(tmp_path / "nope.txt", out)
    with pytest.raises(ValueError, match="line 3 repeats an earlier line"):
        embedder.embed_file(io.StringIO("a b\nc\na b\n"), out, use_sentence_keys=True)
    with pytest.raises(ValueError, match="line 1 contains '/'"):
        embedder.embed_file(io.StringIO("and/or\n"), out, use_sentence_keys=True)
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_device_without_cuda():
    with pytest.raises(ValueError, match="CUDA is not available"):
        ElmoEmbedder(options_file, weight_file, cuda_device=0)


@pytest.mark.slow
def test_import_does_not_import_spacy():
    code = "import sys; from spacy_elmo import Elmo, ElmoEmbedder, batch_to_ids; print('spacy' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout == "False\n"


# ---- vocab_to_cache (AllenNLP's cached token layer) -----------------------------------------------


def test_vocab_to_cache_word_inputs_equal_character_inputs():
    sentences = [["The", "bank", "approved", "the", "loan", "."], ["A", "river", "bank"], []]
    vocab = ["@@PADDING@@", "The", "the", "bank", "approved", "loan", ".", "A", "river"]
    plain = Elmo(options_file, weight_file, 2, dropout=0.0, scalar_mix_parameters=MIX)
    cached = Elmo(options_file, weight_file, 2, dropout=0.0, scalar_mix_parameters=MIX, vocab_to_cache=vocab)
    char_ids = batch_to_ids(sentences)
    word_ids = torch.zeros(char_ids.shape[:2], dtype=torch.long)
    for i, sentence in enumerate(sentences):
        word_ids[i, : len(sentence)] = torch.tensor([vocab.index(w) for w in sentence], dtype=torch.long)
    expected = plain(char_ids)
    with torch.no_grad():
        got = cached(char_ids, word_ids)
    assert torch.equal(got["mask"], expected["mask"])
    for a, b in zip(got["elmo_representations"], expected["elmo_representations"]):
        assert (a - b).abs().max() < 1e-5 and a.abs().max() > 0.1
    assert cached.word_embedding.shape == (2 + len(vocab), 32)  # <S>, </S>, then the vocabulary


def test_vocab_to_cache_falls_back_to_characters_and_warns_without_cache():
    sentences = [["unseen", "words"]]
    char_ids = batch_to_ids(sentences)
    cached = Elmo(options_file, weight_file, 1, dropout=0.0, vocab_to_cache=["@@PADDING@@", "words"])
    plain = Elmo(options_file, weight_file, 1, dropout=0.0)
    expected = plain(char_ids)["elmo_representations"][0]
    out_of_range = torch.tensor([[5, 1]])  # id 5 is not in the two-word cache: AllenNLP backs off to characters
    assert torch.allclose(cached(char_ids, out_of_range)["elmo_representations"][0], expected, atol=1e-6)
    with pytest.warns(UserWarning, match="no vocab_to_cache"):
        got = plain(char_ids, torch.tensor([[1, 1]]))["elmo_representations"][0]
    assert torch.allclose(got, expected)
    with pytest.raises(ValueError, match=r"word_inputs \(1, 3\) do not match .* \(1, 2\)"):
        cached(char_ids, torch.tensor([[1, 1, 1]]))
