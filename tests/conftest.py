from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from .helpers import PARITY, build_workspace


@pytest.fixture(scope="session")
def parity_files() -> tuple[Path, Path]:
    return PARITY / "options.json", PARITY / "weights.hdf5"


@pytest.fixture(scope="session")
def parity_bilm(parity_files):
    from spacy_elmo import load_bilm

    return load_bilm(*parity_files)


@pytest.fixture(scope="session")
def parity_sentences() -> list[list[str]]:
    return json.loads((PARITY / "sentences.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module's tiny matrices (faster, and much faster on a busy machine), then restored.
    Modules ask for it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> Path:
    """Tiny ``{ner,textcat}/{train,dev}.spacy`` and a static vectors pipeline ``static_model``."""
    return build_workspace(tmp_path_factory.mktemp("configs"))


@pytest.fixture(autouse=True)
def model_cache(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets an empty download cache, the default mirror, network allowed, and quick retries."""
    cache = tmp_path_factory.mktemp("elmo-cache")
    monkeypatch.setenv("SPACY_ELMO_CACHE", str(cache))
    monkeypatch.delenv("SPACY_ELMO_OFFLINE", raising=False)
    monkeypatch.delenv("SPACY_ELMO_MIRROR", raising=False)
    from spacy_elmo.hub import download

    monkeypatch.setattr(download, "RETRIES", 0)
    monkeypatch.setattr(download, "TIMEOUT", 5.0)
    return cache


@pytest.fixture
def mirror(tmp_path_factory, monkeypatch):
    """A local http mirror of the released files (see tests/model_server.py), stopped after the test.

    It serves tiny stand-ins, so the pinned sizes and hashes are those of the stand-ins.
    """
    import hashlib

    from spacy_elmo.hub import releases

    from .model_server import MirrorServer, build_mirror

    server = MirrorServer(build_mirror(tmp_path_factory.mktemp("mirror")))
    for relative in list(releases.PINS):
        data = (server.root / relative).read_bytes()
        monkeypatch.setitem(releases.PINS, relative, releases.Pin(len(data), hashlib.sha256(data).hexdigest()))
    yield server
    server.stop()
