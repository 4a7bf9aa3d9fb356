from __future__ import annotations

import json
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
PARITY = DATA / "elmo_parity"


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
