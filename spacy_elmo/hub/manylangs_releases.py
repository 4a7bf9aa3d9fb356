"""ELMoForManyLangs' released biLMs (HIT-SCIR, 44 languages, hosted by the NLPL vectors repository):
their names and zip URLs, and a safe, atomic unpacker for the zips.

Names are ``many-langs/<code>`` with the language's ISO 639 code as Universal Dependencies uses it
(``many-langs/zh``, ``many-langs/grc``). A zip is downloaded through the cache (:func:`.download.fetch`:
its sha256 recorded at the first download and checked on every later use) and unpacked once beside it.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..util.atomic import apply_umask
from .cache import IntegrityError, cache_dir, remote_for
from .download import fetch

#: where the NLPL vectors repository publishes the models (as ELMoForManyLangs' README links them)
NLPL_BASE = "http://vectors.nlpl.eu/repository/11/"
PREFIX = "many-langs/"
#: the most bytes a model zip may unpack to (a released model unpacks to about 0.3 GB)
MAX_UNPACKED_BYTES = 4 << 30
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ManyLangsModel:
    """One released ELMoForManyLangs biLM: its language and its number in the NLPL repository."""

    code: str
    language: str
    number: int

    @property
    def name(self) -> str:
        return PREFIX + self.code

    def url(self, base: str = NLPL_BASE) -> str:
        return f"{base}{self.number}.zip"


_LANGUAGES = (
    ("ar", "Arabic", 136),
    ("bg", "Bulgarian", 137),
    ("ca", "Catalan", 138),
    ("cs", "Czech", 139),
    ("cu", "Old Church Slavonic", 140),
    ("da", "Danish", 141),
    ("de", "German", 142),
    ("el", "Greek", 143),
    ("en", "English", 144),
    ("es", "Spanish", 145),
    ("et", "Estonian", 146),
    ("eu", "Basque", 147),
    ("fa", "Persian", 148),
    ("fi", "Finnish", 149),
    ("fr", "French", 150),
    ("ga", "Irish", 151),
    ("gl", "Galician", 152),
    ("grc", "Ancient Greek", 153),
    ("he", "Hebrew", 154),
    ("hi", "Hindi", 155),
    ("hr", "Croatian", 156),
    ("hu", "Hungarian", 157),
    ("id", "Indonesian", 158),
    ("it", "Italian", 159),
    ("ja", "Japanese", 160),
    ("ko", "Korean", 161),
    ("la", "Latin", 162),
    ("lv", "Latvian", 163),
    ("nl", "Dutch", 164),
    ("nb", "Norwegian Bokmål", 165),
    ("nn", "Norwegian Nynorsk", 166),
    ("pl", "Polish", 167),
    ("pt", "Portuguese", 168),
    ("ro", "Romanian", 169),
    ("ru", "Russian", 170),
    ("sk", "Slovak", 171),
    ("sl", "Slovene", 172),
    ("sv", "Swedish", 173),
    ("tr", "Turkish", 174),
    ("ug", "Uyghur", 175),
    ("uk", "Ukrainian", 176),
    ("ur", "Urdu", 177),
    ("vi", "Vietnamese", 178),
    ("zh", "Chinese (traditional, Wikipedia)", 179),
)
MANY_LANGS: dict[str, ManyLangsModel] = {
    PREFIX + code: ManyLangsModel(code, language, number) for code, language, number in _LANGUAGES
}


def many_langs_model(name: str) -> ManyLangsModel:
    """The released model ``name`` (``many-langs/<code>``); a ``ValueError`` suggesting near names otherwise."""
    model = MANY_LANGS.get(name)
    if model is None:
        near = difflib.get_close_matches(name, MANY_LANGS, n=3)
        hint = f"; did you mean {', '.join(near)}?" if near else f"; known: {PREFIX}<code> for {len(MANY_LANGS)} codes"
        raise ValueError(f"unknown ELMoForManyLangs model {name!r}{hint}")
    return model


#: directories a zip member may lie under (a model zip has one or two; thousands exhaust Python's recursion)
MAX_DEPTH = 32


def _member_parts(info: zipfile.ZipInfo, archive: Path) -> tuple[str, ...]:
    """The path parts of a zip member; a ``ValueError`` for a name that could land outside the target."""
    name = info.filename
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise ValueError(f"{archive}: member {name!r} is a symbolic link; refusing to unpack")
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or (path.parts and ":" in path.parts[0]) or "\x00" in name:
        raise ValueError(f"{archive}: member {name!r} has an absolute path; refusing to unpack")
    if ".." in path.parts:
        raise ValueError(f"{archive}: member {name!r} points outside the archive's directory; refusing to unpack")
    parts = tuple(p for p in path.parts if p not in ("", "."))
    if len(parts) > MAX_DEPTH:
        raise ValueError(
            f"{archive}: member {name[:60]!r}... lies {len(parts) - 1} directories deep, more than {MAX_DEPTH}; "
            "refusing to unpack"
        )
    return parts


def unpack_zip(
    archive: str | os.PathLike[str], target: str | os.PathLike[str], max_bytes: int = MAX_UNPACKED_BYTES
) -> Path:
    """Unpack ``archive`` into the directory ``target`` (kept as it is when it exists already).

    Safe: members with an absolute path, a ``..`` part or a symbolic link are refused, and no file
    grows past its declared size nor all together past ``max_bytes``. Atomic: everything goes into a
    temporary directory beside ``target``, renamed to ``target`` only when complete; on any error it
    is removed, so no partial ``target`` is ever left. Errors are one-line ``ValueError``s naming
    the archive.
    """
    archive, target = Path(archive), Path(target)
    if target.is_dir():
        return target
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as err:
        raise ValueError(f"{archive}: not a readable zip archive ({err})") from None
    with zf:
        members = [(info, _member_parts(info, archive)) for info in zf.infolist()]
        declared = sum(info.file_size for info, _ in members)
        if declared > max_bytes:
            raise ValueError(f"{archive}: unpacks to {declared:,} bytes, more than the limit of {max_bytes:,}")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        try:
            for info, parts in members:
                if not parts:
                    continue
                dest = tmp.joinpath(*parts)
                if info.is_dir():
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                _extract(zf, info, dest, archive)
            _apply_umask_tree(tmp)
            try:
                os.replace(tmp, target)
            except OSError:
                if not target.is_dir():  # not a concurrent unpack of the same archive
                    raise
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error) as err:
            raise ValueError(f"{archive}: damaged zip archive ({err})") from None
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def _extract(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, archive: Path) -> None:
    """Copy one member, stopping at its declared size (a zip bomb cannot lie its way past the limit)."""
    written = 0
    with zf.open(info) as src, open(dest, "wb") as out:
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            if written > info.file_size:
                raise ValueError(
                    f"{archive}: member {info.filename!r} holds more than its declared {info.file_size:,} bytes"
                )
            out.write(chunk)


def _apply_umask_tree(root: Path) -> None:
    """Files get the permissions of a new file, directories those of a new directory (``mkdtemp`` makes 0700)."""
    mask = os.umask(0o022)
    os.umask(mask)
    os.chmod(root, 0o777 & ~mask)
    for path in root.rglob("*"):
        if path.is_dir():
            os.chmod(path, 0o777 & ~mask)
        else:
            apply_umask(path)


def model_root(directory: Path) -> Path:
    """The directory holding the model files: ``directory`` itself, or its one subdirectory."""
    if (directory / "config.json").is_file() or (directory / "options.json").is_file():
        return directory
    subdirectories = [p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(("__MACOSX", "."))]
    if len(subdirectories) == 1:
        return model_root(subdirectories[0])
    raise ValueError(f"{directory}: no config.json or options.json in the unpacked model")


def many_langs_base() -> str:
    """The base URL of the ELMoForManyLangs zips: ``SPACY_ELMO_MANY_LANGS_MIRROR`` if set, else the NLPL
    repository's."""
    base = os.environ.get("SPACY_ELMO_MANY_LANGS_MIRROR", "").strip() or NLPL_BASE
    if "://" not in base:
        raise ValueError(f"SPACY_ELMO_MANY_LANGS_MIRROR must be a base URL such as https://host/11/, found {base!r}")
    return base if base.endswith("/") else base + "/"


def is_cached(name: str) -> bool:
    """The zip of the released model ``name`` is in the cache."""
    url = many_langs_model(name).url(many_langs_base())
    return (cache_dir() / remote_for(url).cache_key).is_file()


def unpacked_model(archive: str | os.PathLike[str]) -> Path:
    """The model directory inside a local ``.zip`` of a model directory (any kind), unpacked once into the
    cache under a key of the archive's path, size and modification time (a changed archive unpacks anew)."""
    archive = Path(archive).resolve()
    if not archive.is_file():
        raise ValueError(f"model archive not found: {archive}")
    stat_result = archive.stat()
    key = hashlib.sha256(f"{archive}\0{stat_result.st_size}\0{stat_result.st_mtime_ns}".encode()).hexdigest()[:16]
    return model_root(unpack_zip(archive, cache_dir() / "unpacked" / f"{archive.stem}-{key}"))


def fetch_many_langs(name: str, base: str | None = None) -> Path:
    """The local model directory of the released ELMoForManyLangs model ``name``.

    The zip comes from the cache (verified against the sha256 recorded at its download) or is
    downloaded into it, then unpacked once beside itself (``<zip name without .zip>/``); a zip that
    fails its check is deleted together with what was unpacked from it.
    """
    model = many_langs_model(name)
    url = model.url(base or many_langs_base())
    unpacked = cache_dir() / remote_for(url).cache_key.removesuffix(".zip")
    try:
        archive = fetch(url, name=name, progress=True)
    except IntegrityError:  # what was unpacked from a zip that no longer checks out goes too
        shutil.rmtree(unpacked, ignore_errors=True)
        raise
    return model_root(unpack_zip(archive, unpacked))
