"""Write an hdf5 file atomically, and fail cleanly when the disk fills up.

HDF5 reports a failed write only when a dataset's buffered data is flushed: from an object's destructor
(printed and ignored by h5py, once per dataset) or at ``close`` (a ``RuntimeError``), and a file left
half-closed after such failures can crash the interpreter at exit (HDF5's ``atexit`` flush, segfault). So
the file is written through a Python file object (h5py's ``fileobj`` driver): the first failed write is
recorded and every later write is dropped, so HDF5 itself never sees an error, and :meth:`HDF5Output.check`
raises one :class:`~.atomic.WriteError`; the temporary file is then removed.
"""

from __future__ import annotations

import errno
import io
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import h5py

from .atomic import atomic_path, write_failed


class _GuardedFile(io.RawIOBase):
    """A binary file whose first failed write is recorded (and later writes dropped) instead of raised."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "r+b", buffering=0)
        self.error: OSError | None = None
        self.written = 0

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]  # RawIOBase's is wider
        return self._file.readinto(buffer) or 0

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]  # as readinto
        view = memoryview(data).cast("B")
        done = 0
        while self.error is None and done < len(view):
            try:
                written = self._file.write(view[done:]) or 0
            except OSError as err:
                self.error = err
                break
            if not written:
                self.error = OSError(errno.EIO, "the file system took none of the bytes written")
                break
            done += written
            self.written += written
        self._file.seek(len(view) - done, os.SEEK_CUR)  # the dropped rest: HDF5 must not see an error
        return len(view)

    def truncate(self, size: int | None = None) -> int:
        if self.error is None:
            try:
                return self._file.truncate(size)
            except OSError as err:
                self.error = err
        return self.tell() if size is None else size

    def close(self) -> None:
        self._file.close()
        super().close()


class HDF5Output:
    """An hdf5 file being written (:attr:`file`); call :meth:`check` after each piece of work."""

    def __init__(self, file: h5py.File, raw: _GuardedFile, path: Path) -> None:
        self.file = file
        self._raw = raw
        self._path = path

    def check(self) -> None:
        """:raises WriteError: when a write has failed (full disk, quota, I/O error), naming the file."""
        if self._raw.error is not None:
            raise write_failed(self._path, self._raw.error, self._raw.written)


@contextmanager
def atomic_hdf5(path: str | os.PathLike[str]) -> Iterator[HDF5Output]:
    """A new hdf5 file that replaces ``path`` only when the block succeeds and every write reached the disk;
    otherwise its temporary file is removed and a failed write raises :class:`~.atomic.WriteError`."""
    path = Path(path)
    with atomic_path(path) as tmp:
        raw = _GuardedFile(tmp)
        try:
            with h5py.File(raw, "w") as file:
                output = HDF5Output(file, raw, path)
                yield output
                output.check()
            output.check()  # the last flush, at close
        finally:
            raw.close()
