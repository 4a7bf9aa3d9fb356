"""Write files so that a crash never leaves a half-written file behind, and check outputs before any work.

A file is written to a temporary ``.<name>.<pid>.<random>.tmp`` beside it and renamed into place only when
complete; the pid in the name tells a later run whether the writer still lives (:func:`remove_stale_temps`).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

#: the errors of a full disk or an exhausted quota
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class WriteError(OSError):
    """Writing a file failed part way (full disk, quota, I/O error); its temporary file was removed.

    ``str(error)`` is one line naming the file, the system's reason and how much was written.
    """

    def __str__(self) -> str:
        return str(self.strerror)


def write_failed(path: str | os.PathLike[str], err: OSError, written: int) -> WriteError:
    """The :class:`WriteError` for ``err`` while ``written`` bytes of ``path`` were on disk."""
    reason = err.strerror or os.strerror(err.errno or errno.EIO)
    return WriteError(
        err.errno or errno.EIO,
        f"{path}: {reason} after {_size(written)} were written; the unfinished file was removed, {path} is unchanged",
    )


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds.

    The file gets the permissions the user's umask gives a new file (not ``mkstemp``'s 0600). A full disk
    (or quota) in the block raises :class:`WriteError` naming ``path`` and how much was written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path) + f"{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        apply_umask(tmp)
        os.replace(tmp, path)
    except OSError as err:
        if isinstance(err, WriteError) or err.errno not in DISK_FULL:
            raise
        raise write_failed(path, err, os.path.getsize(tmp) if os.path.exists(tmp) else 0) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def remove_stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files of ``path`` left by writers that no longer run (killed, crashed).

    Only names of :func:`atomic_path`'s pattern for ``path`` whose pid is not a live process are removed.
    Returns the removed files.
    """
    path = Path(path)
    pattern = re.compile(re.escape(_temp_prefix(path)) + r"(\d+)\.[a-z0-9_]+\.tmp")
    removed: list[Path] = []
    if not path.parent.is_dir():
        return removed
    for entry in os.scandir(path.parent):
        match = pattern.fullmatch(entry.name)
        if match and entry.is_file(follow_symlinks=False) and not _alive(int(match.group(1))):
            Path(entry.path).unlink(missing_ok=True)
            removed.append(Path(entry.path))
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def check_output(path: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]] = ()) -> None:
    """Check, before any work, that the file ``path`` can be written without harm.

    :raises ValueError: naming ``path`` when it is an existing directory, when it is one of ``inputs``
        (also through a symbolic or hard link: the files are compared, not the names), or when its directory
        cannot be written (a temporary file is created there and removed; the system's reason is given).
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a directory; give the path of a file to write")
    for source in inputs:
        if path.exists() and os.path.exists(source) and os.path.samefile(path, source):
            raise ValueError(
                f"output {path} is the input file {source} (the same file{_link_note(path, Path(source))}); "
                "writing it would destroy the input: choose another output path"
            )
    check_writable(path.parent)


def _link_note(output: Path, source: Path) -> str:
    if output.is_symlink() or source.is_symlink():
        return ", through a symbolic link"
    if os.path.abspath(output) != os.path.abspath(source):
        return ", through a hard link"
    return ""


def check_writable(directory: str | os.PathLike[str]) -> None:
    """:raises ValueError: naming ``directory`` and the system's reason unless a file can be created in it
    (it is created with its parents when missing)."""
    directory = Path(directory)
    try:
        if directory.exists() and not directory.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "not a directory")
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".spacy-elmo-probe.", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ValueError(f"cannot write into {directory}: {err.strerror or err}") from None


def check_free_space(
    path: str | os.PathLike[str], needed: int, directory: str | os.PathLike[str] | None = None
) -> None:
    """:raises WriteError: (ENOSPC) naming ``path`` when the file system of ``directory`` (default: ``path``'s)
    has less than ``needed`` bytes free, before anything is written."""
    directory = Path(path).parent if directory is None else Path(directory)
    free = shutil.disk_usage(directory).free
    if needed > free:
        raise WriteError(
            errno.ENOSPC,
            f"{path}: not enough free space: about {_size(needed)} needed, {_size(free)} free in {directory}; "
            "nothing was written",
        )


def _size(n: int) -> str:
    """``n`` bytes, readable: "512 bytes", "195.3 KB", "2.4 MB"."""
    if n < 1024:
        return f"{n:,} bytes"
    value = n / 1024
    for unit in ("KB", "MB"):
        if value < 1024:
            return f"{value:,.1f} {unit}"
        value /= 1024
    return f"{value:,.1f} GB"


def apply_umask(path: str | Path) -> None:
    """Give ``path`` the permissions the user's umask gives a new file (``tempfile`` makes 0600 ones)."""
    mask = os.umask(0o022)  # reading the umask means setting it: put it back at once
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
