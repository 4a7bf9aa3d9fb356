"""Fetching remote files into the cache with pooch: bounded retries and timeout, a progress bar,
and an atomic move into place only after the file's size and sha256 passed."""

from __future__ import annotations

import logging
import os
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

from ..util.atomic import apply_umask, check_output
from .cache import IntegrityError, Remote, cache_dir, check_pin, discard, record_hash, remote_for, verify_cached
from .content import content_problem

logger = logging.getLogger(__name__)

#: extra attempts after a failed download (network errors and server errors only: a complete file that fails its
#: pin, and an HTTP client error such as 404, are not tried again)
RETRIES = 2
#: HTTP 4xx statuses that may pass on a later attempt (all other 4xx answers are final)
RETRIED_CLIENT_ERRORS = (408, 425, 429)
#: seconds to wait for the connection and for each read
TIMEOUT = 30.0
SCHEMES = ("http", "https", "ftp")


class DownloadError(ValueError):
    """A file could not be downloaded, or may not be (``SPACY_ELMO_OFFLINE=1``)."""


class _Mismatch(Exception):
    """Carries an ``IntegrityError`` through pooch, which retries ``ValueError``s as network failures."""

    def __init__(self, error: IntegrityError) -> None:
        super().__init__(str(error))
        self.error = error


class _Final(Exception):
    """Carries an HTTP client error (404, 403, ...) through pooch, which retries every ``RequestException``."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def offline() -> bool:
    """``SPACY_ELMO_OFFLINE=1``: use the cache only, never the network."""
    return os.environ.get("SPACY_ELMO_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def fetch(url: str, *, name: str | None = None, progress: bool | None = None, force: bool = False) -> Path:
    """The local path of ``url``: from the cache (verified), else downloaded into it.

    ``name``: the released model the file belongs to (for messages). ``progress``: show a tqdm
    bar (default: for ``.hdf5`` files). ``force``: download again even if cached. A cached file that is not
    what its name says (an HTML page cached as ``options.json``) is downloaded again. Raises ``DownloadError``
    (offline and not cached, or the download failed: the message names the URL and the reason) or
    ``IntegrityError`` (also for a download that is not what its name says: nothing is cached then).
    """
    remote = remote_for(url)
    path = cache_dir() / remote.cache_key
    what = f"ELMo model {name!r} ({remote.url})" if name else remote.url
    if path.is_file() and not force:
        verify_cached(path, remote)
        problem = content_problem(path)
        if problem is None:
            return path
        if offline():
            raise IntegrityError(
                f"cached file {path} (from {remote.url}) is {problem}; SPACY_ELMO_OFFLINE=1 forbids downloading it "
                f"again: delete it, or run `spacy-elmo download --force {name or remote.url}` with network"
            )
        logger.warning("cached file %s is %s: downloading it again", path, problem)
        discard(path)
    if offline():
        raise DownloadError(
            f"{what} is not in the cache {cache_dir()} and SPACY_ELMO_OFFLINE=1 forbids downloading it: "
            f"run `spacy-elmo download {name or remote.url}` where there is network and copy that cache "
            "directory here (SPACY_ELMO_CACHE names it), or unset SPACY_ELMO_OFFLINE"
        )
    scheme = urlsplit(remote.url).scheme.lower()
    if scheme not in SCHEMES:
        raise DownloadError(f"{remote.url}: unsupported URL scheme {scheme!r}; use one of {', '.join(SCHEMES)}")
    check_output(path)  # before the download: not a directory, the cache directory writable
    kept = _set_aside(path)  # --force: the cached copy stays until the new one has passed its checks
    try:
        with _terminate_as_exit():
            _download(remote, path, remote.url.endswith(".hdf5") if progress is None else progress)
    except BaseException:
        if kept is not None:
            os.replace(kept, path)
        raise
    if kept is not None:
        kept.unlink()
    return path


def _set_aside(path: Path) -> Path | None:
    """Move a cached ``path`` out of pooch's way (it would not download over it); ``None`` if not cached."""
    if not path.is_file():
        return None
    kept = path.with_name(path.name + ".replaced")
    os.replace(path, kept)
    return kept


@contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """SIGTERM raises ``SystemExit`` meanwhile (in the main thread), so the download's temporary file is removed
    as for Ctrl-C instead of staying in the cache."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _download(remote: Remote, path: Path, progress: bool) -> None:
    import pooch

    downloader: Any
    if remote.url.lower().startswith("ftp"):
        downloader = pooch.FTPDownloader(timeout=TIMEOUT, progressbar=progress)
    else:
        downloader = pooch.HTTPDownloader(timeout=TIMEOUT, progressbar=progress)
    found: list[str] = []

    def download_and_check(url: str, output_file: str, store: Any) -> None:
        """Runs on pooch's temporary file, before pooch moves it into place."""
        import requests.exceptions as http

        try:
            downloader(url, output_file, store)
        except http.HTTPError as err:
            status = err.response.status_code if err.response is not None else 0
            if 400 <= status < 500 and status not in RETRIED_CLIENT_ERRORS:
                raise _Final(err) from None
            raise
        label = f"{url} (for {path}) arrived complete but does not match its pin"
        try:
            found.append(check_pin(Path(output_file), remote.pin, label))
        except IntegrityError as err:
            raise _Mismatch(IntegrityError(f"{err}; not downloaded again: the server holds another file")) from None
        problem = content_problem(Path(output_file), path.name)
        if problem is not None:
            raise _Mismatch(
                IntegrityError(f"{url} sent a file that is {problem}; nothing was cached: check the mirror or URL")
            )
        apply_umask(output_file)

    store = pooch.create(
        path=path.parent,
        base_url="",
        registry={path.name: None},
        urls={path.name: remote.url},
        retry_if_failed=RETRIES,
    )
    try:
        store.fetch(path.name, downloader=download_and_check)
    except _Mismatch as mismatch:
        raise mismatch.error from None
    except _Final as final:
        raise DownloadError(
            f"could not download {remote.url}: {_reason(final.error, remote.url)} (not retried: a client error)"
        ) from None
    except (OSError, EOFError, ValueError) as err:  # requests' errors are OSErrors, ftplib's too
        raise DownloadError(
            f"could not download {remote.url}: {_reason(err, remote.url)} "
            f"({RETRIES + 1} attempt(s), timeout {TIMEOUT:g} s)"
        ) from None
    record_hash(path, found[-1])


def _reason(err: BaseException, url: str) -> str:
    import requests.exceptions as http

    host = urlsplit(url).netloc
    if isinstance(err, http.HTTPError) and err.response is not None:
        return f"HTTP {err.response.status_code} {err.response.reason}"
    if isinstance(err, http.Timeout):
        return f"{host} did not answer within {TIMEOUT:g} s"
    if isinstance(err, http.ChunkedEncodingError):
        return "the connection broke off before the end of the file"
    if isinstance(err, http.ConnectionError):
        text = str(err).lower()
        if "refused" in text:
            return f"connection to {host} refused"
        if "resolve" in text or "name or service" in text or "nodename" in text:
            return f"cannot resolve the host {host}"
        return f"cannot connect to {host}"
    return str(err) or type(err).__name__
