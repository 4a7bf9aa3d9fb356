"""spacy-elmo.ElmoListener.v1: shapes, unannotated docs, the learned scalar mix, serialization."""

from __future__ import annotations

from pathlib import Path

import numpy
import pytest
import spacy
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import load_config, load_model_from_config
from thinc.api import Adam, fix_random_seed

from spacy_elmo.pipeline.architectures import elmo_listener_v1, elmo_scalar_mix, get_scalar_mix_weights

CONFIGS = Path(__file__).parent.parent / "configs"
TEXTS = ["Barack Obama visited Paris yesterday .", "Hello", ""]
N_LAYERS, ELMO_DIM = 3, 64  # the parity biLM


@pytest.fixture(scope="module")
def elmo_nlp(parity_files):
    nlp = spacy.blank("en")
    nlp.add_pipe("elmo", config={"options_file": str(parity_files[0]), "weight_file": str(parity_files[1])})
    return nlp


@pytest.fixture
def docs(elmo_nlp) -> list[Doc]:
    return list(elmo_nlp.pipe(TEXTS))


def make_tok2vec(width: int = 16):
    config = {
        "@architectures": "spacy.Tok2Vec.v2",
        "embed": {
            "@architectures": "spacy.MultiHashEmbed.v2",
            "width": width,
            "attrs": ["NORM", "SHAPE"],
            "rows": [500, 50],
            "include_static_vectors": False,
        },
        "encode": {
            "@architectures": "spacy.MaxoutWindowEncoder.v2",
            "width": width,
            "depth": 1,
            "window_size": 1,
            "maxout_pieces": 2,
        },
    }
    return spacy.registry.resolve({"tok2vec": config})["tok2vec"]


@pytest.mark.parametrize("with_tok2vec", [False, True])
def test_output_shapes(docs, with_tok2vec):
    model = elmo_listener_v1(width=8, tok2vec=make_tok2vec() if with_tok2vec else None)
    model.initialize(X=docs)
    outputs = model.predict(docs)
    assert [y.shape for y in outputs] == [(len(doc), 8) for doc in docs]
    assert all(y.dtype == numpy.float32 for y in outputs)
    assert model.get_dim("nE") == ELMO_DIM and model.layers[0].get_dim("n_layers") == N_LAYERS


def test_unannotated_docs_contribute_zeros(elmo_nlp, docs):
    """At nlp.initialize() the docs are not annotated: zeros of the right width, dims read later."""
    raw = [elmo_nlp.make_doc(text) for text in TEXTS]
    model = elmo_listener_v1(width=8, tok2vec=make_tok2vec())
    model.initialize(X=raw)
    assert not model.has_dim("nE")
    mix_out, _ = model.layers[0](raw, is_train=False)
    assert mix_out.shape == (sum(len(d) for d in raw), 0)
    assert [y.shape for y in model.predict(raw)] == [(len(doc), 8) for doc in raw]
    model.predict(docs)
    assert model.get_dim("nE") == ELMO_DIM
    mix_out, _ = model.layers[0](raw, is_train=False)
    assert mix_out.shape == (sum(len(d) for d in raw), ELMO_DIM) and not mix_out.any()
    mixed_batch = model.predict([docs[0], raw[0]])
    assert not numpy.allclose(mixed_batch[0], mixed_batch[1])
    numpy.testing.assert_allclose(mixed_batch[1], model.predict([raw[0]])[0], atol=1e-6)


def test_elmo_only_listener_unannotated_is_zero(elmo_nlp):
    model = elmo_listener_v1(width=8, n_layers=N_LAYERS, elmo_dim=ELMO_DIM)
    raw = [elmo_nlp.make_doc(text) for text in TEXTS]
    model.initialize(X=raw)
    assert model.layers[0].has_param("s") and model.has_param("W_e")
    assert all(not y.any() for y in model.predict(raw))


def test_wrong_dims_fail_clearly(docs):
    model = elmo_listener_v1(width=8, n_layers=2, elmo_dim=ELMO_DIM)
    with pytest.raises(ValueError, match="set n_layers = 3 or null"):
        model.initialize(X=docs)


def test_store_layers_false_fails_clearly(parity_files):
    nlp = spacy.blank("en")
    config = {"options_file": str(parity_files[0]), "weight_file": str(parity_files[1]), "store_layers": False}
    nlp.add_pipe("elmo", config=config)
    model = elmo_listener_v1(width=8)
    with pytest.raises(ValueError, match="store_layers = true"):
        model.initialize(X=[nlp("Hello world")])


def test_scalar_mix_gradient(docs):
    mix = elmo_scalar_mix()
    mix.initialize(X=docs)
    mix.set_param("s", numpy.asarray([0.3, -0.2, 0.5], dtype="float32"))
    mix.set_param("gamma", numpy.asarray([1.3], dtype="float32"))
    Y, backprop = mix(docs, is_train=False)
    dY = numpy.random.RandomState(0).randn(*Y.shape).astype("float32")
    backprop(dY)

    def loss() -> float:
        return float((mix(docs, is_train=False)[0].astype("float64") * dY).sum())

    eps = 1e-2
    for name, size in (("s", N_LAYERS), ("gamma", 1)):
        analytic = mix.get_grad(name).copy()
        for k in range(size):
            param = mix.get_param(name).copy()
            param[k] += eps
            mix.set_param(name, param)
            up = loss()
            param[k] -= 2 * eps
            mix.set_param(name, param)
            down = loss()
            param[k] += eps
            mix.set_param(name, param)
            assert analytic[k] == pytest.approx((up - down) / (2 * eps), rel=1e-2, abs=1e-2)


def test_scalar_mix_weights_change_after_update(docs):
    fix_random_seed(0)
    model = elmo_listener_v1(width=8, tok2vec=make_tok2vec(), dropout=0.1)
    model.initialize(X=docs)
    weights, gamma = get_scalar_mix_weights(model)
    numpy.testing.assert_allclose(weights, 1 / N_LAYERS)
    assert gamma == 1.0
    optimizer = Adam(0.05)
    for _ in range(3):
        outputs, backprop = model(docs, is_train=True)
        backprop([y - 1.0 for y in outputs])
        model.finish_update(optimizer)
    weights, gamma = get_scalar_mix_weights(model)
    assert weights.sum() == pytest.approx(1.0, abs=1e-6)
    assert not numpy.allclose(weights, 1 / N_LAYERS) and gamma != 1.0


def _trained_ner_pipeline(parity_files):
    overrides = {
        "components.elmo.options_file": str(parity_files[0]),
        "components.elmo.weight_file": str(parity_files[1]),
    }
    nlp = load_model_from_config(load_config(CONFIGS / "ner_elmo.cfg", overrides=overrides), auto_fill=True)
    doc = nlp.make_doc("Barack Obama visited Paris")
    examples = [Example.from_dict(doc, {"entities": [(0, 12, "person"), (21, 26, "geo-loc")]})]
    fix_random_seed(0)
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(3):
        nlp.update(examples, sgd=optimizer, exclude=["elmo"], annotates=["elmo"])
    return nlp


def test_trained_pipeline_round_trip(parity_files, tmp_path):
    nlp = _trained_ner_pipeline(parity_files)
    weights, gamma = get_scalar_mix_weights(nlp.get_pipe("ner").model)
    assert not numpy.allclose(weights, 1 / N_LAYERS)
    text = "Taylor Swift was in London"
    expected = nlp.get_pipe("ner").model.get_ref("tok2vec").predict([nlp(text)])[0]
    nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    loaded_weights, loaded_gamma = get_scalar_mix_weights(loaded.get_pipe("ner").model)
    numpy.testing.assert_allclose(loaded_weights, weights)
    assert loaded_gamma == gamma
    doc = loaded(text)
    numpy.testing.assert_allclose(
        loaded.get_pipe("ner").model.get_ref("tok2vec").predict([doc])[0], expected, atol=1e-5
    )
    assert [(e.text, e.label_) for e in doc.ents] == [(e.text, e.label_) for e in nlp(text).ents]
    from_bytes = load_model_from_config(nlp.config, auto_fill=True).from_bytes(nlp.to_bytes())
    numpy.testing.assert_allclose(get_scalar_mix_weights(from_bytes.get_pipe("ner").model)[0], weights)
