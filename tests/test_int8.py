"""``precision="int8"``: accuracy against fp32 on running text, every entry point, the fallback, the caches."""

from __future__ import annotations

import asyncio
import warnings
from dataclasses import replace

import numpy as np
import pytest
import spacy
import torch

from spacy_elmo import load_bilm
from spacy_elmo._compat import has_ray
from spacy_elmo.bilm import int8, kernels, onednn
from spacy_elmo.bilm.model import DEFAULT_MODEL_DIR
from spacy_elmo.bilm.token_cache import TokenCache
from spacy_elmo.embed import embed_file
from spacy_elmo.embed.shards import EmbedSettings
from spacy_elmo.training.loop import TrainConfig

from .helpers import MEAN_COSINE, P1_COSINE, PARITY, SETTINGS, cosines, read_h5, running_text

SENTENCES = [["The", "bank", "approved", "the", "loan", "."], ["They", "fished", "by", "the", "river"]]
NO_INT8 = f"this CPU has no oneDNN int8 kernels: {int8.why_not()}"
#: int8 through the model: under SPACY_ELMO_KERNELS=plain it runs as fp32 (tested by the fallback tests below)
needs_int8 = pytest.mark.skipif(
    not onednn.supports(torch.int8) or kernels.mode() == "plain",
    reason=NO_INT8 if not onednn.supports(torch.int8) else "SPACY_ELMO_KERNELS=plain: int8 runs as fp32",
)


def assert_within_budget(bilm, sentences: list[list[str]]) -> None:
    fp32 = bilm.embed_sentences(sentences, batch_size=32)
    found = bilm.embed_sentences(sentences, batch_size=32, precision="int8")
    assert all(f.dtype == np.float32 and f.shape == e.shape for f, e in zip(found, fp32))
    for name, cos in cosines(fp32, found).items():
        assert cos.mean() >= MEAN_COSINE and np.percentile(cos, 1) >= P1_COSINE, (name, cos.mean(), cos.min())
        assert cos.mean() < 1.0  # int8 really ran (fp32 would give exactly 1)


@pytest.fixture
def every_size(monkeypatch):
    """int8 for every product, however small: the parity fixture's products are all below the sizes where int8
    pays (:func:`int8.pays`), so by default it would run them in float32."""
    monkeypatch.setattr(int8, "MIN_IN", 0)
    monkeypatch.setattr(int8, "MIN_WEIGHT", 0)
    monkeypatch.setattr(int8, "MIN_STEP_WEIGHT", 0)


@pytest.fixture
def no_warning_yet(monkeypatch):
    monkeypatch.setattr(kernels, "_warned", set())


@pytest.fixture(scope="module")
def bundled_bilm():
    return load_bilm(DEFAULT_MODEL_DIR / "options.json", DEFAULT_MODEL_DIR / "weights.hdf5", token_cache_size=0)


@needs_int8
def test_bundled_model_within_the_budget_on_a_page_of_text(bundled_bilm):
    assert_within_budget(bundled_bilm, running_text(1_000))


@needs_int8
@pytest.mark.slow
def test_bundled_model_within_the_budget_on_running_text(bundled_bilm):
    sentences = running_text(10_000)
    assert sum(map(len, sentences)) >= 10_000
    assert_within_budget(bundled_bilm, sentences)


def test_int8_ops_present_on_x86():
    # the int8 path relies on private oneDNN ops: if a torch release drops one, this fails instead of falling back
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512") and torch.backends.mkldnn.is_available():
        assert int8.available(), f"torch {torch.__version__} lacks one of torch.ops.onednn.{int8.OPS}"
        assert int8.kernel() is not None


@needs_int8
def test_quantized_product_matches_the_float_product():
    torch.manual_seed(0)
    x, weight, bias = torch.randn(40, 96), torch.randn(24, 96), torch.randn(24)
    quantized = int8.quantize_weight(weight)
    # the kernel's integer products are exact (no int16 saturation on AVX2: 7-bit weights there)
    q, row_scale = int8.quantize_rows(x)
    limit = int8.weight_range()
    q_weight = torch.round(weight / quantized.scale.unsqueeze(1)).clamp(-limit, limit)
    exact = (q.double() - int8.ZERO_POINT) @ q_weight.double().T * quantized.scale.double()
    assert torch.allclose(int8.product(q, quantized).double(), exact, rtol=1e-6, atol=1e-3)
    expected = x @ weight.T + bias
    found = int8.linear(x, quantized, bias)
    # per-row / per-channel symmetric int8: relative error about 1%
    assert float((found - expected).norm() / expected.norm()) < 0.02
    assert torch.equal(int8.linear(torch.zeros(3, 96), quantized), torch.zeros(3, 24))  # zero rows stay zero
    clipped = int8.linear(x, quantized, bias, clip=0.5)
    assert float(clipped.abs().max()) == 0.5
    assert torch.allclose(int8.linear_add(x, quantized, bias.expand(40, 24)), found, atol=1e-5)


@needs_int8
def test_every_entry_point_accepts_int8(every_size, parity_bilm, parity_files, tmp_path):
    expected = parity_bilm.embed_sentences(SENTENCES, precision="int8")
    # embed (the writer behind `spacy-elmo embed` / `embed-dir` shards)
    embed_file(parity_bilm, iter(" ".join(s) for s in SENTENCES), tmp_path / "out.hdf5", precision="int8")
    written = read_h5(tmp_path / "out.hdf5")
    np.testing.assert_allclose(written["0"], expected[0], rtol=0, atol=1e-6)
    # the component
    nlp = spacy.blank("en")
    config = {"options_file": str(parity_files[0]), "weight_file": str(parity_files[1]), "precision": "int8"}
    nlp.add_pipe("elmo", config=config)
    np.testing.assert_allclose(nlp(" ".join(SENTENCES[0]))._.elmo_layers, expected[0], rtol=0, atol=1e-6)
    # embed / embed-dir settings, and what decides the outputs records it
    settings = replace(SETTINGS, precision="int8")
    assert settings.record()["precision"] == "int8"
    # the service (its extra installed)
    pytest.importorskip("starlette", reason='needs the serve extra: pip install "spacy-elmo[serve]"')
    from spacy_elmo.serve.app import create_app

    from .serving import serving, values

    app = create_app(parity_bilm, precision="int8")

    async def main():
        async with serving(app) as client:
            return await client.post("/v1/embed", json={"sentences": SENTENCES}), await client.get("/info")

    response, info = asyncio.run(main())
    for got, layers in zip(values(response), expected):
        np.testing.assert_allclose(got, layers, rtol=0, atol=1e-5)
    assert info.json()["serving"]["precision"] == "int8"


@needs_int8
@pytest.mark.skipif(not has_ray, reason='needs Ray: pip install "spacy-elmo[ray]"')
def test_ray_dataset_workers_run_int8(every_size, parity_bilm):
    import pyarrow as pa

    from spacy_elmo.embed.ray_actors import _BatchEmbedder

    settings = replace(SETTINGS, output_format="top", precision="int8")
    batch = _BatchEmbedder(settings, None, "text", "vectors")(pa.table({"text": [" ".join(SENTENCES[1])]}))
    found = batch.column("vectors").chunk(0).to_numpy()[0]
    expected = parity_bilm.embed_sentences(SENTENCES[1:], precision="int8")[0][-1]
    np.testing.assert_allclose(found, expected, rtol=0, atol=1e-5)
    assert not np.allclose(found, parity_bilm.embed_sentences(SENTENCES[1:])[0][-1], rtol=0, atol=1e-6)


def test_bad_precisions_and_training_get_one_line():
    with pytest.raises(ValueError, match=r"^precision must be one of \('fp32', 'bf16', 'int8'\), found 'int4'$"):
        EmbedSettings(precision="int4")
    config = TrainConfig(train_file="t.txt", heldout_file="h.txt", output_dir="out", precision="int8")
    with pytest.raises(
        ValueError, match=r"^precision must be one of \('fp32', 'bf16'\), found 'int8' \(int8 is for inference only\)$"
    ):
        config.validate()


def test_plain_kernels_run_int8_as_the_float_result_with_one_warning(parity_bilm, no_warning_yet):
    with kernels.forced("plain"):
        fallback = kernels.runs_as("int8", torch.device("cpu"))
        expected = parity_bilm.embed_sentences(SENTENCES, precision=fallback)
        with pytest.warns(RuntimeWarning, match=r"precision 'int8' runs as '(fp32|bf16)' here: int8 products run"):
            found = parity_bilm.embed_sentences(SENTENCES, precision="int8")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # once per process
            parity_bilm.embed_sentences(SENTENCES, precision="int8")
    assert all(np.array_equal(f, e) for f, e in zip(found, expected))


def test_a_cpu_without_int8_kernels_runs_the_best_other_precision(parity_bilm, no_warning_yet, monkeypatch):
    monkeypatch.setattr(int8, "kernel", lambda: None)
    with kernels.forced("auto"):
        assert kernels.describe()["int8_runs_as"] == kernels.runs_as("bf16", torch.device("cpu"))
        with pytest.warns(RuntimeWarning, match="oneDNN's int8 kernels need AVX2, AVX512-VNNI or AMX"):
            found = parity_bilm.embed_sentences(SENTENCES, precision="int8")
        expected = parity_bilm.embed_sentences(SENTENCES, precision=kernels.runs_as("bf16", torch.device("cpu")))
    assert all(np.array_equal(f, e) for f, e in zip(found, expected))
    with kernels.forced("onednn"), pytest.raises(ValueError, match="SPACY_ELMO_KERNELS=onednn, but oneDNN cannot run"):
        parity_bilm.embed_sentences(SENTENCES, precision="int8")
    assert kernels.runs_as("int8", torch.device("cuda")) == "bf16"  # a GPU: its bf16, no CPU int8 kernels


@needs_int8
def test_quantized_weights_follow_a_weight_change_and_are_never_saved(every_size, parity_files, tmp_path):
    import pickle

    bilm = load_bilm(*parity_files, token_cache_size=0)
    before = bilm.embed_sentences(SENTENCES, precision="int8")
    with torch.no_grad():
        for parameter in bilm.parameters():
            parameter.mul_(0.9)
    after = bilm.embed_sentences(SENTENCES, precision="int8")
    fp32 = bilm.embed_sentences(SENTENCES)
    assert not np.allclose(after[0], before[0], atol=1e-4)
    for name, cos in cosines(fp32, after).items():
        assert cos.mean() >= MEAN_COSINE, name  # the packs were rebuilt from the new weights
    assert (
        "_onednn_packed" in bilm.lstm.__dict__
        and "_onednn_packed" not in pickle.loads(pickle.dumps(bilm)).lstm.__dict__
    )
    bilm.save(tmp_path / "saved")
    assert load_bilm(tmp_path / "saved" / "options.json", tmp_path / "saved" / "weights.hdf5").state_dict().keys() == (
        bilm.state_dict().keys()
    )


@needs_int8
def test_token_cache_keys_include_the_precision(every_size, parity_bilm):
    cache = TokenCache(100)
    ids = parity_bilm.token_ids.batch([["bank", "river", "bank"]])[0]
    with torch.inference_mode():
        fp32 = cache(parity_bilm.encoder, ids)
        with int8.products():
            quantized = cache(parity_bilm.encoder, ids)
            again = cache(parity_bilm.encoder, ids)
    assert len(cache) == 4  # two word types, once per precision
    assert quantized.dtype == torch.float32 and torch.equal(quantized, again)
    assert not torch.equal(fp32, quantized) and torch.allclose(fp32, quantized, atol=0.1 * float(fp32.abs().max()))


@needs_int8
def test_products_run_in_int8_only_where_it_pays(parity_files):
    assert int8.pays("recurrent", torch.zeros(16384, 512)) and int8.pays("highway", torch.zeros(2048, 1024))
    assert int8.pays("lstm_input", torch.zeros(4096, 128))  # 524,288 values, applied to every token at once
    assert not int8.pays("recurrent", torch.zeros(4096, 128))  # the same size, but one batch of rows per step
    assert not int8.pays("char_cnn", torch.zeros(512, 96))  # 96 inputs: too few
    assert not int8.pays("bias", torch.zeros(4096, 4096))  # not a product that has an int8 path
    bilm = load_bilm(*parity_files, token_cache_size=0)  # every product below the sizes: float32 throughout
    for fp32, found in zip(bilm.embed_sentences(SENTENCES), bilm.embed_sentences(SENTENCES, precision="int8")):
        np.testing.assert_array_equal(found, fp32)


def test_cli_info_shows_the_int8_kernel_and_embed_takes_int8(tmp_path):
    from typer.testing import CliRunner

    from spacy_elmo.cli import app

    model = ["--options", str(PARITY / "options.json"), "--weights", str(PARITY / "weights.hdf5")]
    result = CliRunner().invoke(app, ["info", *model[1::2]])
    assert result.exit_code == 0, result.output
    kernels_row = next(line for line in result.output.splitlines() if line.startswith("kernels"))
    ran = kernels.runs_as("int8", torch.device("cpu"))
    assert f"int8 {int8.kernel() or 'no'};" in kernels_row and f"int8 as {ran};" in kernels_row
    (tmp_path / "in.txt").write_text(" ".join(SENTENCES[0]) + "\n", encoding="utf-8")
    args = ["embed", str(tmp_path / "in.txt"), str(tmp_path / "out.hdf5"), *model, "--precision"]
    result = CliRunner().invoke(app, [*args, "int8"])
    assert result.exit_code == 0, result.output
    assert read_h5(tmp_path / "out.hdf5")["0"].shape == (3, len(SENTENCES[0]), 64)
    result = CliRunner().invoke(app, [*args, "int4"])
    assert result.exit_code == 1
    assert "error: precision must be one of ('fp32', 'bf16', 'int8'), found 'int4'" in result.output
