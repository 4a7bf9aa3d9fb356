"""Whether a downloaded file is what its name says: an ELMo options file, an HDF5 weight file, a zip archive.

A mirror or proxy that answers 200 with an HTML page (a login wall, an error page) delivers a complete file whose
sha256 can be recorded like any other; checking the content before it is recorded keeps such a file out of the
cache, and a cached one that fails the check is downloaded again.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Optional

import h5py

#: the top-level keys of an ELMo options.json (AllenNLP / bilm-tf)
OPTIONS_KEYS = ("lstm", "char_cnn")
#: a dataset every ELMo weight file holds
WEIGHTS_DATASET = "char_embed"


def content_problem(path: Path, name: Optional[str] = None) -> Optional[str]:
    """What is wrong with ``path`` for its kind (``.json``, ``.hdf5`` / ``.h5``, ``.zip``, by ``name``, default
    its own), or ``None``."""
    name = (name or path.name).lower()
    if name.endswith(".json"):
        try:
            data = json.loads(path.read_bytes())
        except (ValueError, RecursionError):
            return f"not JSON (it begins {_beginning(path)})"
        if not isinstance(data, dict) or not all(key in data for key in OPTIONS_KEYS):
            return f"not an ELMo options file (no {' and '.join(repr(k) for k in OPTIONS_KEYS)} at its top level)"
    elif name.endswith((".hdf5", ".h5")):
        if not h5py.is_hdf5(path):
            return f"not an HDF5 file (it begins {_beginning(path)})"
        with h5py.File(path, "r") as weights:
            if WEIGHTS_DATASET not in weights:
                return f"an HDF5 file without ELMo's '{WEIGHTS_DATASET}' dataset, so not ELMo weights"
    elif name.endswith(".zip") and not zipfile.is_zipfile(path):
        return f"not a zip archive (it begins {_beginning(path)})"
    return None


def _beginning(path: Path) -> str:
    with open(path, "rb") as f:
        start = f.read(40)
    return repr(start.decode("utf-8", errors="replace").split("\n")[0][:30])
