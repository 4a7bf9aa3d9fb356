"""Released models by name or URL: the cache, integrity pins, offline use, mirrors and failures.

Every download comes from a server the test starts on 127.0.0.1 (tests/model_server.py).
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from spacy_elmo import load_bilm
from spacy_elmo.hub import MODELS, DownloadError, IntegrityError, download_model, releases
from spacy_elmo.hub.releases import RELEASE_BASES, Pin

from .helpers import PARITY

SMALL = MODELS["small"]
SENTENCES = [["The", "bank", "of", "the", "river", "."], ["Hello"], ["ELMo", "is", "here"]]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cached_files(cache: Path) -> list[str]:
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def local_layers(parity_bilm):
    return parity_bilm.embed_sentences(SENTENCES)


def assert_same_layers(bilm, expected) -> None:
    for got, want in zip(bilm.embed_sentences(SENTENCES), expected):
        # the same weight bytes; equal up to the rounding of products over other row counts (token caches differ)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_url_load_equals_local_load_and_is_cached_with_its_hash(mirror, model_cache, local_layers):
    from .model_server import SEED_OPTIONS, SEED_WEIGHTS

    bilm = load_bilm(mirror.url(SEED_OPTIONS), mirror.url(SEED_WEIGHTS))
    assert_same_layers(bilm, local_layers)
    assert mirror.requests == [SEED_OPTIONS, SEED_WEIGHTS]
    files = cached_files(model_cache)
    assert len(files) == 4 and all(f.startswith("urls/") for f in files)  # two files + two hashes, nothing else
    weights = next(model_cache / f for f in files if f.endswith("_weights.hdf5"))
    assert weights.read_bytes() == (PARITY / "weights.hdf5").read_bytes()
    assert Path(str(weights) + ".sha256").read_text().strip() == sha256(weights)
    umask = os.umask(0o022)
    os.umask(umask)
    assert all((model_cache / f).stat().st_mode & 0o777 == 0o666 & ~umask for f in files)  # not tempfile's 0600
    assert_same_layers(load_bilm(mirror.url(SEED_OPTIONS), mirror.url(SEED_WEIGHTS)), local_layers)
    assert len(mirror.requests) == 2  # the second load comes from the cache


def test_second_load_offline_comes_from_the_cache(mirror, monkeypatch, local_layers):
    urls = mirror.url(SMALL.options_path), mirror.url(SMALL.weights_path)
    load_bilm(*urls)
    mirror.stop()
    monkeypatch.setenv("SPACY_ELMO_OFFLINE", "1")
    assert_same_layers(load_bilm(*urls), local_layers)
    assert len(mirror.requests) == 2


def test_names_resolve_under_the_mirror_base(mirror, monkeypatch, model_cache, local_layers):
    from spacy_elmo import Elmo, ElmoEmbedder

    monkeypatch.setenv("SPACY_ELMO_MIRROR", mirror.base.rstrip("/"))  # with or without the final slash
    assert_same_layers(load_bilm("small"), local_layers)
    np.testing.assert_allclose(ElmoEmbedder("small").embed_sentence(SENTENCES[1]), local_layers[1], rtol=0, atol=1e-5)
    assert Elmo("small", None, 1, dropout=0.0).get_output_dim() == 64
    assert mirror.requests == [
        "2x1024_128_2048cnn_1xhighway/elmo_2x1024_128_2048cnn_1xhighway_options.json",
        "2x1024_128_2048cnn_1xhighway/elmo_2x1024_128_2048cnn_1xhighway_weights.hdf5",
    ]
    # AllenNLP's own URLs of a released file go to the mirror and share the name's cache entry
    for base in RELEASE_BASES:
        assert_same_layers(load_bilm(base + SMALL.options_path, base + SMALL.weights_path), local_layers)
    assert len(mirror.requests) == 2
    assert cached_files(model_cache) == sorted(
        f"elmo/{p}{suffix}" for p in (SMALL.options_path, SMALL.weights_path) for suffix in ("", ".sha256")
    )


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_released_name_resolves(name, mirror, monkeypatch):
    monkeypatch.setenv("SPACY_ELMO_MIRROR", mirror.base)
    model = MODELS[name]
    options, weights = download_model(name)
    assert str(options).endswith(model.options_path) and str(weights).endswith(model.weights_path)
    assert mirror.requests == [model.options_path, model.weights_path]
    bilm = load_bilm(name)
    assert bilm.n_layers == 3
    assert bilm.dim == (32 if name == "medium" else 64)  # the mirror serves tiny stand-ins


def test_released_paths():
    expected = {
        "small": "2x1024_128_2048cnn_1xhighway/elmo_2x1024_128_2048cnn_1xhighway_{}",
        "medium": "2x2048_256_2048cnn_1xhighway/elmo_2x2048_256_2048cnn_1xhighway_{}",
        "original": "2x4096_512_2048cnn_2xhighway/elmo_2x4096_512_2048cnn_2xhighway_{}",
        "original-5.5b": "2x4096_512_2048cnn_2xhighway_5.5B/elmo_2x4096_512_2048cnn_2xhighway_5.5B_{}",
    }
    for name, pattern in expected.items():
        assert (MODELS[name].options_path, MODELS[name].weights_path) == (
            pattern.format("options.json"),
            pattern.format("weights.hdf5"),
        )
    assert MODELS["pubmed"].options_path == "contributed/pubmed/elmo_2x4096_512_2048cnn_2xhighway_options.json"
    assert MODELS["pubmed"].weights_path == (
        "contributed/pubmed/elmo_2x4096_512_2048cnn_2xhighway_weights_PubMed_only.hdf5"
    )
    assert releases.PINS[SMALL.weights_path] == Pin(
        54_402_456, "747ba97abce8a5f446558369e10bb0f7931437a46867476fdd156f5d7f576229"
    )
    assert releases.PINS[MODELS["original"].weights_path].size == 374_434_792


def test_released_architectures_match_the_published_parameter_counts():
    from spacy_elmo.hub.model_table import parameter_count

    counts = {name: parameter_count(model) for name, model in MODELS.items()}
    # allennlp.org/elmo: 13.6M, 28.0M, 93.6M (the weight files hold 261 of the 262 character rows)
    assert {k: round(v / 1e6, 1) for k, v in counts.items()} == {
        "small": 13.6,
        "medium": 28.0,
        "original": 93.6,
        "original-5.5b": 93.6,
        "pubmed": 93.6,
    }
    assert 4 * (counts["small"] - 16) < 54_402_456 < 4 * counts["small"] + 100_000


def pin_small(monkeypatch, sha: str, size: int | None = None) -> None:
    size = (PARITY / "weights.hdf5").stat().st_size if size is None else size
    monkeypatch.setitem(releases.PINS, SMALL.weights_path, Pin(size, sha))


def test_a_wrong_file_under_a_pinned_name_is_rejected_and_not_kept(mirror, monkeypatch, model_cache):
    monkeypatch.setenv("SPACY_ELMO_MIRROR", mirror.base)
    real = sha256(PARITY / "weights.hdf5")
    pin_small(monkeypatch, "0" * 64)
    with pytest.raises(IntegrityError) as error:
        load_bilm("small")
    message = str(error.value)
    assert mirror.url(SMALL.weights_path) in message
    assert f"expected {'0' * 64}, found {real}" in message
    assert not any("weights" in f or "tmp" in f for f in cached_files(model_cache))
    pin_small(monkeypatch, real, size=123)
    with pytest.raises(IntegrityError, match=r"bytes, expected 123"):
        load_bilm("small")
    assert not any("weights" in f for f in cached_files(model_cache))
    pin_small(monkeypatch, real)
    assert load_bilm("small").dim == 64
    assert f"elmo/{SMALL.weights_path}" in cached_files(model_cache)


def test_a_cached_file_is_verified_at_every_load(mirror, monkeypatch, model_cache):
    monkeypatch.setenv("SPACY_ELMO_MIRROR", mirror.base)  # so these URLs are the released file and its pin
    monkeypatch.delitem(releases.PINS, SMALL.weights_path)
    urls = mirror.url(SMALL.options_path), mirror.url(SMALL.weights_path)
    load_bilm(*urls)
    cached = next(model_cache.rglob("*_weights.hdf5"))
    recorded = sha256(cached)
    data = bytearray(cached.read_bytes())
    data[-1] ^= 1
    cached.write_bytes(bytes(data))
    with pytest.raises(IntegrityError) as error:
        load_bilm(*urls)
    assert str(cached) in str(error.value)
    assert f"expected {recorded} (recorded at its download), found {sha256_bytes(data)}" in str(error.value)
    assert not cached.exists() and not Path(str(cached) + ".sha256").exists()
    assert load_bilm(*urls).dim == 64  # downloaded anew
    assert sha256(cached) == recorded
    # a pinned file is checked against its pin, also when it was cached before the pin was known
    pin_small(monkeypatch, "f" * 64)
    with pytest.raises(IntegrityError, match=f"expected {'f' * 64}, found {recorded}"):
        load_bilm(*urls)
    assert not cached.exists()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_weight_files_download_with_a_progress_bar(mirror, monkeypatch):
    import pooch

    bars = []
    real = pooch.HTTPDownloader

    def recording(**kwargs):
        bars.append(kwargs["progressbar"])
        assert kwargs["timeout"] == 5.0
        return real(**kwargs)

    monkeypatch.setattr(pooch, "HTTPDownloader", recording)
    load_bilm(mirror.url(SMALL.options_path), mirror.url(SMALL.weights_path))
    assert bars == [False, True]


def test_offline_uncached_fails_at_once(mirror, monkeypatch):
    monkeypatch.setenv("SPACY_ELMO_OFFLINE", "1")
    monkeypatch.setenv("SPACY_ELMO_MIRROR", mirror.base)
    start = time.perf_counter()
    with pytest.raises(DownloadError) as error:
        load_bilm("small")
    assert "ELMo model 'small'" in str(error.value) and "spacy-elmo download small" in str(error.value)
    assert "SPACY_ELMO_OFFLINE=1" in str(error.value)
    url = mirror.url("some/where/options.json")
    with pytest.raises(DownloadError, match=f"{url} is not in the cache .*spacy-elmo download {url}"):
        load_bilm(url, mirror.url("some/where/weights.hdf5"))
    assert time.perf_counter() - start < 0.5
    assert mirror.requests == []


@pytest.mark.parametrize("retries", [0, 1])
def test_a_dropped_connection_leaves_nothing_that_looks_complete(retries, mirror, monkeypatch, model_cache):
    from spacy_elmo.hub import download

    monkeypatch.setattr(download, "RETRIES", retries)
    urls = mirror.url(SMALL.options_path), mirror.url(SMALL.weights_path)
    mirror.drop(SMALL.weights_path)
    if retries == 0:
        with pytest.raises(DownloadError) as error:
            load_bilm(*urls)
        assert f"could not download {urls[1]}: the connection broke off before the end of the file" in str(error.value)
        assert not any("weights" in f or "tmp" in f for f in cached_files(model_cache))
    assert load_bilm(*urls).dim == 64  # a later load (or pooch's retry) gets the whole file
    assert mirror.requests.count(SMALL.weights_path) == 2
    assert next(model_cache.rglob("*_weights.hdf5")).read_bytes() == (PARITY / "weights.hdf5").read_bytes()


def test_an_unresponsive_host_fails_within_the_timeout(monkeypatch):
    from spacy_elmo.hub import download

    monkeypatch.setattr(download, "TIMEOUT", 0.5)
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/elmo/options.json"
        start = time.perf_counter()
        expected = f"could not download {url}: 127.0.0.1:\\d+ did not answer within 0.5 s"
        with pytest.raises(DownloadError, match=expected):
            load_bilm(url, url.replace("options.json", "weights.hdf5"))
        assert time.perf_counter() - start < 3.0


def test_refused_connections_and_http_errors_name_the_url_and_the_reason(mirror):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    url = f"http://127.0.0.1:{port}/options.json"
    with pytest.raises(DownloadError, match=f"could not download {url}: connection to 127.0.0.1:{port} refused"):
        load_bilm(url, url)
    missing = mirror.url("no/such/options.json")
    with pytest.raises(DownloadError) as raised:
        load_bilm(missing, missing)
    assert str(raised.value) == f"could not download {missing}: HTTP 404 File not found (not retried: a client error)"
    assert mirror.requests.count("no/such/options.json") == 1  # a 404 is final: asked once, not 3 times


def test_bad_names_and_schemes():
    with pytest.raises(ValueError, match=r"unknown ELMo model name 'smal'; released models: small, medium"):
        load_bilm("smal")
    with pytest.raises(ValueError, match=r"unknown ELMo model name 'orig'.*pass options_file and weight_file"):
        load_bilm("orig")
    with pytest.raises(ValueError, match=r"give both options_file and weight_file"):
        load_bilm("options.json")
    with pytest.raises(DownloadError, match=r"gopher://x/o.json: unsupported URL scheme 'gopher'"):
        load_bilm("gopher://x/o.json", "gopher://x/w.hdf5")
    assert load_bilm("default").n_layers == load_bilm().n_layers


def test_a_mirror_must_be_a_url(monkeypatch):
    monkeypatch.setenv("SPACY_ELMO_MIRROR", "/srv/elmo")
    with pytest.raises(ValueError, match="SPACY_ELMO_MIRROR must be a base URL such as .*, found '/srv/elmo'"):
        load_bilm("small")
    result = run_cli("models")
    assert result.exit_code == 1 and "SPACY_ELMO_MIRROR must be a base URL" in result.output


# ---- the spaCy component ------------------------------------------------------------------------


def test_component_from_urls_saves_a_pipeline_that_loads_without_network_or_cache(
    mirror, monkeypatch, tmp_path, local_layers
):
    import spacy

    nlp = spacy.blank("en")
    urls = {"options_file": mirror.url(SMALL.options_path), "weight_file": mirror.url(SMALL.weights_path)}
    nlp.add_pipe("elmo", config=urls)
    doc = nlp("The bank of the river .")
    np.testing.assert_allclose(doc._.elmo_layers, local_layers[0], rtol=0, atol=1e-5)
    nlp.to_disk(tmp_path / "pipeline")
    mirror.stop()
    monkeypatch.setenv("SPACY_ELMO_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("SPACY_ELMO_OFFLINE", "1")
    loaded = spacy.load(tmp_path / "pipeline")
    assert loaded.get_pipe("elmo").spec.options_file == urls["options_file"]  # the config keeps the URLs...
    np.testing.assert_allclose(loaded("The bank of the river .")._.elmo_layers, local_layers[0], rtol=0, atol=1e-5)
    assert not (tmp_path / "empty-cache").exists()  # ...but the weights come from the pipeline folder
    assert len(mirror.requests) == 2


def test_component_model_setting(mirror, monkeypatch, tmp_path, local_layers):
    import spacy

    monkeypatch.setenv("SPACY_ELMO_MIRROR", mirror.base)
    nlp = spacy.blank("en")
    nlp.add_pipe("elmo", config={"model": "small", "mix": "top"})
    np.testing.assert_allclose(nlp("Hello")._.elmo_layers, local_layers[1], rtol=0, atol=1e-5)
    nlp.to_disk(tmp_path / "pipeline")
    mirror.stop()
    monkeypatch.setenv("SPACY_ELMO_OFFLINE", "1")
    monkeypatch.setenv("SPACY_ELMO_CACHE", str(tmp_path / "empty-cache"))
    loaded = spacy.load(tmp_path / "pipeline")
    assert loaded.config["components"]["elmo"]["model"] == "small"
    np.testing.assert_allclose(loaded("Hello")._.elmo_layers, local_layers[1], rtol=0, atol=1e-5)
    default = spacy.blank("en").add_pipe("elmo", config={"model": "default"})
    assert default.bilm.n_layers == 3
    with pytest.raises(ValueError, match=r"elmo: give either model \(a name or a directory\) .*, not both"):
        spacy.blank("en").add_pipe("elmo", config={"model": "small", "options_file": "o.json", "weight_file": "w.hdf5"})
    with pytest.raises(ValueError, match="elmo: unknown ELMo model name 'tiny'; released models: small"):
        spacy.blank("en").add_pipe("elmo", config={"model": "tiny"})
    with pytest.raises(ValueError, match="elmo: mix=5 is not a layer of the released model 'original', which has 3"):
        spacy.blank("en").add_pipe("elmo", config={"model": "original", "mix": 5})
    with pytest.raises(ValueError, match="ELMo model 'original' .* is not in the cache"):  # offline, lazily
        spacy.blank("en").add_pipe("elmo", config={"model": "original"}).initialize()


# ---- the command line ---------------------------------------------------------------------------


def run_cli(*args: str):
    from typer.testing import CliRunner

    from spacy_elmo.cli import app

    return CliRunner().invoke(app, list(args))


def test_cli_download_models_embed_and_info(mirror, monkeypatch, model_cache, tmp_path, local_layers):
    import h5py

    monkeypatch.setenv("SPACY_ELMO_MIRROR", mirror.base)
    table = run_cli("models")
    assert table.exit_code == 0
    rows = {line.split()[0]: line.split() for line in table.output.splitlines()[1:6]}
    stand_in = (PARITY / "weights.hdf5").stat().st_size  # the mirror fixture pins the stand-in served as "small"
    assert rows["small"][:6] == ["small", "3", "256", "13.6M", f"{stand_in / 1e6:.1f}", "MB"]
    assert rows["original"][1:4] == ["3", "1024", "93.6M"] and rows["medium"][4] == "~112"
    assert [rows[name][6] for name in ("small", "medium")] == ["no", "no"]
    assert f"cache: {model_cache}" in table.output

    result = run_cli("download", "small", "medium")
    assert result.exit_code == 0, result.output
    fetched = [getattr(MODELS[n], f"{kind}_path") for n in ("small", "medium") for kind in ("options", "weights")]
    assert mirror.requests == fetched
    cached = [line.split()[6] for line in run_cli("models").output.splitlines()[1:4]]
    assert cached == ["yes", "yes", "no"]

    monkeypatch.setenv("SPACY_ELMO_OFFLINE", "1")  # everything below comes from the cache
    text = tmp_path / "in.txt"
    text.write_text("\n".join(" ".join(s) for s in SENTENCES) + "\n", encoding="utf-8")
    result = run_cli("embed", str(text), str(tmp_path / "out.hdf5"), "--model", "small")
    assert result.exit_code == 0, result.output
    with h5py.File(tmp_path / "out.hdf5", "r") as f:
        for i, layers in enumerate(local_layers):
            np.testing.assert_allclose(f[str(i)][()], layers, rtol=0, atol=1e-6)
    urls = mirror.url(SMALL.options_path), mirror.url(SMALL.weights_path)
    result = run_cli("embed", str(text), str(tmp_path / "urls.hdf5"), "--options", urls[0], "--weights", urls[1])
    assert result.exit_code == 0, result.output
    info = run_cli("info", "medium")
    assert info.exit_code == 0 and "model medium" in info.output and " x 32 dims" in info.output
    assert '"dim": 64' in run_cli("info", *urls, "--json").output
    assert len(mirror.requests) == 4

    failed = run_cli("download", "original")
    assert failed.exit_code == 1
    assert "ELMo model 'original'" in failed.output and "SPACY_ELMO_OFFLINE=1" in failed.output
    both = run_cli("embed", str(text), str(tmp_path / "x.hdf5"), "--model", "small", "--options", urls[0])
    assert (
        both.exit_code == 1
        and "give either model (a name or a directory) or options_file + weight_file, not both; found model='small'"
        in both.output
    )


def test_model_spec_options_need_no_download(model_cache):
    from spacy_elmo.hub import ModelSpec

    from .helpers import DATA

    released = ModelSpec("small").options(), ModelSpec("many-langs/zh").options()
    assert [(o.lstm_dim, o.projection_dim) for o in released] == [(1024, 128), (4096, 512)]
    assert ModelSpec(str(DATA / "manylangs" / "words")).options().projection_dim == 8
    assert ModelSpec(str(PARITY)).options().output_dim == 64
    assert list(model_cache.rglob("*")) == []  # nothing was downloaded


@pytest.mark.parametrize("model", ["medium", "default", "many-langs/de", str(PARITY)])
def test_load_bilm_model_and_weight_file_fail_as_everywhere(model, tmp_path, monkeypatch):
    """``load_bilm(name_or_directory, weight_file)``: the message ``--model`` + ``--weights`` gives, nothing loaded."""
    from typer.testing import CliRunner

    from spacy_elmo.cli import app

    monkeypatch.setenv("SPACY_ELMO_OFFLINE", "1")
    with pytest.raises(ValueError) as raised:
        load_bilm(model, "weights.hdf5")
    expected = (
        "give either model (a name or a directory) or options_file + weight_file, not both; "
        f"found model={model!r}, options_file=None, weight_file='weights.hdf5'"
    )
    assert str(raised.value) == expected
    text = tmp_path / "s.txt"
    text.write_text("a b\n", encoding="utf-8")
    cli = CliRunner().invoke(
        app, ["embed", str(text), str(tmp_path / "o.hdf5"), "--model", model, "--weights", "weights.hdf5"]
    )
    assert cli.exit_code == 1 and expected in " ".join(cli.output.split()), cli.output
