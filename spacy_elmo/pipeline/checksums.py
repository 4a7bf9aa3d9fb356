"""A saved component's checksums: the sha256 of each model file, written by ``to_disk`` and checked by
``from_disk``, so a saved pipeline whose files were damaged (flipped bytes on a disk or in a copy) fails to load
with one line instead of loading silently with other vectors."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from ..hub.cache import sha256_of
from ..util.atomic import write_text

CHECKSUMS_NAME = "checksums.sha256"


def write_checksums(directory: Path, names: Iterable[str]) -> None:
    """``<sha256>  <name>`` per file of ``names`` present in ``directory``, into ``CHECKSUMS_NAME`` (atomically)."""
    lines = [f"{sha256_of(directory / name)}  {name}\n" for name in names if (directory / name).is_file()]
    write_text(directory / CHECKSUMS_NAME, "".join(lines))


def check_checksums(directory: Path) -> None:
    """Compare each file listed in ``CHECKSUMS_NAME`` with its recorded sha256 (nothing to check without the
    list: a pipeline saved by an older version); ``ValueError`` naming the first file that differs."""
    listing = directory / CHECKSUMS_NAME
    if not listing.is_file():
        return
    for number, line in enumerate(listing.read_text(encoding="utf-8").splitlines(), 1):
        expected, _, name = line.partition("  ")
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"{listing}: line {number} is not '<sha256>  <file name>': {line[:80]!r}")
        path = directory / name
        if not path.is_file():
            raise ValueError(f"{path}: missing, but {listing} lists it: the saved pipeline is incomplete")
        found = sha256_of(path)
        if found != expected:
            raise ValueError(
                f"{path}: sha256 {found} differs from {expected} recorded when the pipeline was saved: the file "
                "is damaged; save the pipeline again from a good copy"
            )
