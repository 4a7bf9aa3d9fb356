"""The download cache: where a remote file lives locally, and the sha256 that guards it.

Layout under the cache directory (``SPACY_ELMO_CACHE``, default the platform's user cache dir):
``elmo/<path relative to the release base>`` for the released files (whatever mirror they came
from), ``urls/<16 hex digits of the URL's sha256>/<file name>`` for other URLs. Beside every file,
``<file>.sha256`` holds the hash recorded when it was downloaded.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

from ..util.atomic import write_text
from .releases import PINS, Pin, mirror_base, release_path

HASH_SUFFIX = ".sha256"


class IntegrityError(ValueError):
    """A file's sha256 (or size) is not the expected one; the file has been deleted."""


class Remote(NamedTuple):
    """A file to fetch: where from, where it is cached, and its pin if it has one."""

    url: str
    cache_key: str
    pin: Pin | None


def cache_dir() -> Path:
    """``SPACY_ELMO_CACHE``, else the platform's user cache directory (``~/.cache/spacy-elmo`` on Linux)."""
    configured = os.environ.get("SPACY_ELMO_CACHE", "").strip()
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("spacy-elmo"))


def remote_for(url: str) -> Remote:
    """The file behind ``url``: a released file is fetched from the mirror base and keeps its pin."""
    relative = release_path(url)
    if relative is not None:
        return Remote(mirror_base() + relative, f"elmo/{relative}", PINS.get(relative))
    name = Path(urlsplit(url).path).name or "file"
    return Remote(url, f"urls/{hashlib.sha256(url.encode()).hexdigest()[:16]}/{name}", None)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def hash_file(path: Path) -> Path:
    return path.with_name(path.name + HASH_SUFFIX)


def record_hash(path: Path, sha256: str) -> None:
    write_text(hash_file(path), sha256 + "\n")


def discard(path: Path) -> str:
    """Delete a cached file and its recorded hash: ``"the file was deleted"``, or why it could not be (a
    read-only cache), for the message that follows."""
    try:
        for p in (path, hash_file(path)):
            p.unlink(missing_ok=True)
    except OSError as err:
        return f"it could not be deleted ({err.strerror or err}): delete {path} by hand"
    return "the file was deleted"


def check_pin(path: Path, pin: Pin | None, label: str) -> str:
    """The sha256 of ``path``; an ``IntegrityError`` (after deleting the file) if it breaks ``pin``."""
    size = path.stat().st_size
    if pin is not None and size != pin.size:
        raise IntegrityError(f"{label}: {size:,} bytes, expected {pin.size:,} (sha256 {pin.sha256}); {discard(path)}")
    found = sha256_of(path)
    if pin is not None and found != pin.sha256:
        raise IntegrityError(f"{label}: sha256 mismatch: expected {pin.sha256}, found {found}; {discard(path)}")
    return found


def verify_cached(path: Path, remote: Remote) -> None:
    """Check a cached file against its pin, else against the hash recorded at its download.

    A file with neither (copied in by hand) gets its hash recorded now (not in a read-only cache: it is then
    used unrecorded). A mismatch deletes the file (a later load downloads it anew) and raises ``IntegrityError``
    naming it, the expected and the found sha256.
    """
    label = f"cached file {path} (from {remote.url})"
    found = check_pin(path, remote.pin, label)
    if remote.pin is not None:
        return
    recorded = hash_file(path)
    if not recorded.is_file():
        try:
            record_hash(path, found)
        except OSError:  # a read-only cache: the file is checked against nothing, as before the hash was recorded
            pass
        return
    expected = recorded.read_text(encoding="utf-8").strip()
    if found != expected:
        raise IntegrityError(
            f"{label}: sha256 mismatch: expected {expected} (recorded at its download), found {found}; {discard(path)}"
        )
