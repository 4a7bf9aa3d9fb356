"""Hostile or broken files and settings outside the server: a mirror that answers with an HTML page, a download
killed by SIGTERM, model files whose declared sizes would fill memory, overflowing or non-finite settings, a
corrupted saved pipeline, deep nesting, bad paths. Each ends in one line (or a working model), nothing cached that
is not what it claims to be, no file left behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spacy_elmo import load_bilm
from spacy_elmo.cli import app
from spacy_elmo.hub import MODELS

from .helpers import PARITY

MEDIUM = MODELS["medium"]
SMALL = MODELS["small"]
HTML = b"<!DOCTYPE html>\n<html><body>Please sign in</body></html>\n"
ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str):
    """``(exit code, the one error line or the whole output)`` of the CLI run in this process."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    return result.exit_code, errors[0] if len(errors) == 1 else result.output


def cache_files(cache: Path) -> list[str]:
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file())


def test_an_html_page_from_the_mirror_is_not_cached_and_a_poisoned_cache_heals(mirror, monkeypatch, model_cache):
    monkeypatch.setenv("SPACY_ELMO_MIRROR", mirror.base)
    served = mirror.root / MEDIUM.options_path
    good = served.read_bytes()
    served.write_bytes(HTML)
    code, line = cli("download", "medium")
    assert code == 1
    assert line == (
        f"error: {mirror.url(MEDIUM.options_path)} sent a file that is not JSON (it begins '<!DOCTYPE html>'); "
        "nothing was cached: check the mirror or URL"
    )
    assert cache_files(model_cache) == []
    # a cache poisoned by an earlier version (the page and its recorded hash): the next load downloads it again
    served.write_bytes(good)
    assert cli("download", "medium")[0] == 0
    cached = model_cache / "elmo" / MEDIUM.options_path
    cached.write_bytes(HTML)
    (cached.parent / (cached.name + ".sha256")).write_text(
        __import__("hashlib").sha256(HTML).hexdigest() + "\n", encoding="utf-8"
    )
    assert load_bilm("medium").dim == 32
    assert cached.read_bytes() == good
    assert not any(f.endswith((".replaced",)) or "/tmp" in f for f in cache_files(model_cache))


def test_download_force_replaces_a_cached_file_and_keeps_it_when_the_mirror_fails(mirror, monkeypatch, model_cache):
    monkeypatch.setenv("SPACY_ELMO_MIRROR", mirror.base)
    assert cli("download", "small")[0] == 0
    before = len(mirror.requests)
    assert cli("download", "small")[0] == 0 and len(mirror.requests) == before  # cached: nothing fetched
    assert cli("download", "--force", "small")[0] == 0 and len(mirror.requests) == before + 2
    cached = model_cache / "elmo" / SMALL.options_path
    kept = cached.read_bytes()
    (mirror.root / SMALL.options_path).write_bytes(HTML)
    code, line = cli("download", "--force", "small")
    assert code == 1 and "sent a file that is not JSON" in line
    assert cached.read_bytes() == kept
    assert not any(f.endswith(".replaced") for f in cache_files(model_cache))


@pytest.mark.slow
def test_sigterm_during_a_download_leaves_no_temporary_file(tmp_path):
    """A mirror that sends a 4 MB weight file slowly; SIGTERM in the middle."""
    root = tmp_path / "mirror"
    target = root / SMALL.weights_path
    target.parent.mkdir(parents=True)
    shutil.copyfile(PARITY / "options.json", root / SMALL.options_path)
    target.write_bytes(os.urandom(4 * 2**20))
    server = subprocess.Popen(
        [sys.executable, "-c", SLOW_SERVER, str(root)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        port = server.stdout.readline().strip()
        cache = tmp_path / "cache"
        url = f"http://127.0.0.1:{port}/{SMALL.weights_path}"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "SPACY_ELMO_CACHE": str(cache)}
        download = subprocess.Popen(
            [sys.executable, "-m", "spacy_elmo", "download", url], env=env, stderr=subprocess.PIPE, text=True
        )
        for _ in range(300):  # until the temporary file is there and growing
            parts = [p for p in cache.rglob("tmp*") if p.stat().st_size > 0] if cache.exists() else []
            if parts:
                break
            time.sleep(0.1)
        assert parts, "the download never started"
        download.send_signal(signal.SIGTERM)
        download.wait(30)
    finally:
        server.kill()
        server.wait()
    assert download.returncode != 0
    assert cache_files(cache) == []


SLOW_SERVER = """
import sys, time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

class Slow(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
    def copyfile(self, source, output):
        while chunk := source.read(65536):
            output.write(chunk)
            time.sleep(0.05)

server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Slow, directory=sys.argv[1]))
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def write_options(directory: Path, change) -> Path:
    import json

    options = json.loads((PARITY / "options.json").read_text(encoding="utf-8"))
    change(options)
    path = directory / "options.json"
    path.write_text(json.dumps(options), encoding="utf-8")
    return path


def set_in(section: str, key: str, value):
    return lambda options: options[section].__setitem__(key, value)


@pytest.mark.parametrize(
    "change, message",
    [
        (
            set_in("lstm", "projection_dim", 10**9),
            "lstm.projection_dim must be an integer in [1, 16,384], found 1000000000",
        ),
        (set_in("lstm", "dim", 10**7), "lstm.dim must be an integer in [1, 65,536], found 10000000"),
        (set_in("char_cnn", "filters", [[1, 10**6]]), "char_cnn.filters has [1, 1000000]: more than 65536 filters"),
        (
            set_in("char_cnn", "max_characters_per_token", 10**9),
            "char_cnn.max_characters_per_token must be an integer in [1, 1,024], found 1000000000",
        ),
        (
            lambda o: o["lstm"].update(dim=65536, projection_dim=16384),
            "describes a biLM of 38,656,564,992 parameters, more than the 1,000,000,000 taken (the largest released "
            "ELMo has 93.6M)",
        ),
        (
            set_in("lstm", "cell_clip", float("nan")),
            "lstm.cell_clip must be a finite non-negative number or null, found nan",
        ),
    ],
)
def test_options_that_would_fill_memory_or_compute_nan_are_one_line(tmp_path, change, message):
    options = write_options(tmp_path, change)
    code, line = cli("info", options, PARITY / "weights.hdf5")
    assert (code, line) == (1, f"error: {options}: {message}"), line


def test_a_weight_dataset_declaring_a_huge_shape_is_refused_before_it_is_read(tmp_path):
    import tracemalloc

    import h5py

    weights = tmp_path / "weights.hdf5"
    shutil.copyfile(PARITY / "weights.hdf5", weights)
    with h5py.File(weights, "a") as f:  # 6 GB declared, a few KB stored (compressed fill)
        del f["CNN_proj/W_proj"]
        f.create_dataset("CNN_proj/W_proj", shape=(40000, 40000), dtype="f4", chunks=(1000, 1000), compression="gzip")
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as error:
            load_bilm(PARITY / "options.json", weights)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(error.value) == (
        f"{weights}: dataset 'CNN_proj/W_proj' has shape (40000, 40000), expected (48, 32) "
        f"from {PARITY / 'options.json'}"
    )
    assert peak < 50 * 2**20


def test_options_nested_too_deeply_are_one_line(tmp_path):
    options = tmp_path / "options.json"
    options.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    assert cli("info", options, PARITY / "weights.hdf5") == (
        1,
        f"error: {options}: not an options file: its JSON is nested too deeply",
    )


def test_a_long_line_is_embedded_in_windows(parity_bilm, tmp_path):
    import h5py
    import numpy as np

    from spacy_elmo.embed import embed_file

    tokens = [f"w{i % 37}" for i in range(600)]
    source = tmp_path / "long.txt"
    source.write_text(" ".join(tokens) + "\nshort line\n", encoding="utf-8")
    embed_file(parity_bilm, source, tmp_path / "out.hdf5")
    with h5py.File(tmp_path / "out.hdf5", "r") as f:
        long, short = f["0"][...], f["1"][...]
    # the windows and the next line, as embed batches them (the same rows: plain PyTorch kernels round differently
    # for other row counts, and this random model amplifies that along 200 steps)
    *windows, alone = parity_bilm.embed_sentences([tokens[:200], tokens[200:400], tokens[400:], ["short", "line"]])
    assert long.shape == (3, 600, 64)
    np.testing.assert_allclose(long, np.concatenate(windows, axis=1), atol=1e-5, rtol=0)
    np.testing.assert_allclose(short, alone, atol=1e-5, rtol=0)


def test_a_damaged_saved_pipeline_fails_to_load_with_one_line(parity_files, tmp_path):
    import spacy

    from .helpers import make_nlp

    make_nlp(parity_files).to_disk(tmp_path / "nlp")
    weights = tmp_path / "nlp" / "elmo" / "weights.hdf5"
    assert spacy.load(tmp_path / "nlp").get_pipe("elmo").bilm.dim == 64
    data = bytearray(weights.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = bytes(b ^ 0xFF for b in data[middle : middle + 4096])
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError) as error:
        spacy.load(tmp_path / "nlp")
    assert str(error.value).startswith(f"{weights}: sha256 ")
    assert str(error.value).endswith(
        "recorded when the pipeline was saved: the file is damaged; save the pipeline again from a good copy"
    )


def test_a_mix_that_overflows_float32_is_refused(parity_files):
    from .helpers import make_nlp

    with pytest.raises(
        ValueError, match=r"elmo: mix must be finite weights whose magnitudes add up to less than 3\.4e38"
    ):
        make_nlp(parity_files, mix=[1e308, 1e308, 1e308])


def test_embed_dir_with_no_threads_is_one_line_and_leaves_no_lock(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("a b\n", encoding="utf-8")
    for threads in ("0", "-1"):
        code, line = cli("embed-dir", tmp_path / "in", tmp_path / "out", "--threads", threads)
        assert (code, line) == (1, f"error: threads must be an int >= 1, found {threads}")
        assert not (tmp_path / "out" / ".embed-dir" / "lock").exists()


def test_a_zip_member_a_thousand_directories_deep_is_one_line(tmp_path):
    import zipfile

    archive = tmp_path / "deep.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("d/" * 1100 + "options.json", "{}")
    code, line = cli("info", archive)
    assert code == 1
    assert line.startswith(f"error: {archive}: member 'd/d/d/")
    assert line.endswith("... lies 1100 directories deep, more than 32; refusing to unpack")


def test_a_directory_in_the_current_directory_is_a_model_not_a_name(tmp_path, monkeypatch):
    model = tmp_path / "run_ok"
    model.mkdir()
    for name in ("options.json", "weights.hdf5"):
        shutil.copyfile(PARITY / name, model / name)
    monkeypatch.chdir(tmp_path)
    code, output = cli("info", "run_ok")
    assert code == 0 and "model" in output and " x 64 dims" in output, output


def test_embed_input_that_is_a_directory_or_a_device_is_named(tmp_path):
    out = tmp_path / "out.hdf5"
    assert cli("embed", tmp_path, out, "--options", PARITY / "options.json", "--weights", PARITY / "weights.hdf5") == (
        1,
        f"error: {tmp_path}: is a directory, not a text file (embed-dir embeds a directory)",
    )
    code, line = cli("embed", "/dev/zero", out)
    assert (code, line) == (1, "error: /dev/zero: not a regular file (a device, pipe or socket): give a text file")
    assert not out.exists()


class _Trickle:
    """An http server on 127.0.0.1 whose answers are 200 with a Content-Length of 10,000, then ``pace``: a byte
    every 0.2 s (``"drip"``) or nothing (``"stall"``)."""

    def __init__(self, pace: str) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        stop = self.stop_event = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", "10000")
                self.end_headers()
                self.wfile.flush()
                for _ in range(100):  # 20 s at most
                    if stop.wait(0.2):
                        return
                    if pace == "drip":
                        self.wfile.write(b"x")
                        self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/weights.hdf5"

    def close(self) -> None:
        self.stop_event.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("pace", ["drip", "stall"])
def test_a_server_that_drips_or_stalls_is_given_up_with_the_reason(pace, monkeypatch, model_cache):
    from spacy_elmo.hub import download

    monkeypatch.setattr(download, "SLOW_WINDOW", 1.0)
    monkeypatch.setattr(download, "TIMEOUT", 1.0)
    server = _Trickle(pace)
    try:
        start = time.monotonic()
        with pytest.raises(download.DownloadError) as error:
            download.fetch(server.url)
        took = time.monotonic() - start
    finally:
        server.close()
    line = f"error: {error.value}"
    assert took < 15
    host = server.url.split("/")[2]
    if pace == "drip":  # 10,000 bytes at 1,024 bytes/s, plus the 1 s window
        assert line == (
            f"error: could not download {server.url}: it took longer than 11 s, slower than the least speed of 1024 "
            "bytes/s; try again later or another mirror (SPACY_ELMO_MIRROR)"
        )
    else:
        assert line == (
            f"error: could not download {server.url}: {host} sent nothing for 1 s (read timeout) "
            "(1 attempt(s), timeout 1 s)"
        )
    assert cache_files(model_cache) == []
