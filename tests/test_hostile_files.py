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
