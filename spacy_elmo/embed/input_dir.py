"""Embed every ``*.txt`` of a directory into ``OUTPUT_DIR/<stem>.hdf5``, in the layout of ``spacy-elmo embed``.

Work split: each input file is checked once (UTF-8, no blank line) and cut into shards of ``shard_lines``
lines, found by their byte offsets. A worker (which loads the biLM once) embeds a shard into a part file
``OUTPUT_DIR/.embed-dir/<stem>-<key>/<first line>.hdf5``, written atomically, so a part exists complete or not
at all; ``<key>`` hashes the input's size and mtime and the settings, so parts of another input or other
settings are never reused. When all parts of a file are there, they are assembled into ``<stem>.hdf5``
(atomic rename), then the record ``OUTPUT_DIR/.embed-dir/<stem>.json`` (input size, mtime, settings) is
written. A file is finished when its output exists and its record matches the input and the settings: the
next run skips it after a ``stat`` and a small JSON read, and resumes an unfinished file from its parts.

Backends: the caller passes a runner factory (:mod:`.shards`: in this process or local worker processes, the
default; :mod:`.ray_actors`: Ray actors), so this module knows no backend.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import h5py
from tqdm import tqdm

from ..util.atomic import check_free_space, check_output, check_writable, write_text
from ..util.checks import is_int
from ..util.cores import threads_per_worker
from ..util.hdf5 import atomic_hdf5
from ..util.text import read_lines
from .shards import EmbedSettings, RunnerFactory, Shard, local_shard_runner
from .writer import blank_line_error, estimate_bytes, write_sentence_to_index

STATE_DIR = ".embed-dir"
DEFAULT_SHARD_LINES = 1000


@dataclass
class FileJob:
    """One input file: its output, record, stamp (input + settings) and shards."""

    source: Path
    output: Path
    record: Path
    stamp: dict[str, object]
    shards: list[Shard]


@dataclass
class Summary:
    """What a run did: files embedded, skipped (finished before) and failed (file -> message); sentences
    and tokens embedded in this run; wall time in seconds."""

    files: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    sentences: int = 0
    tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        return (
            f"{self.files} files embedded, {self.skipped} skipped (finished before), {len(self.failed)} failed; "
            f"{self.sentences:,} sentences, {self.tokens:,} tokens in {self.seconds:.1f} s "
            f"({self.tokens_per_second:,.0f} tokens/s)"
        )


def scan(path: Path, shard_lines: int) -> list[tuple[int, int, int, int]]:
    """Check a text file (UTF-8, a leading byte-order mark dropped, no blank line) and cut it into shards
    ``(byte offset, first line, n_lines, n_tokens)``; an empty file gives one empty shard.
    :raises ValueError: naming the file and the bad line."""
    shards: list[list[int]] = []
    for index, offset, line in read_lines(path):
        if index % shard_lines == 0:
            shards.append([offset, index, 0, 0])
        n_tokens = len(line.split())
        if not n_tokens:
            raise blank_line_error(str(path), index)
        shards[-1][2] += 1
        shards[-1][3] += n_tokens
    return [(start, first, n_lines, n_tokens) for start, first, n_lines, n_tokens in shards] or [(0, 0, 0, 0)]


def plan(
    input_dir: Path, output_dir: Path, settings: EmbedSettings, shard_lines: int = DEFAULT_SHARD_LINES
) -> tuple[list[FileJob], list[Path], dict[str, str]]:
    """The files of ``input_dir`` to embed (with their shards), those already finished, and those that failed
    their check (file -> message)."""
    if not input_dir.is_dir():
        raise ValueError(f"input directory not found: {input_dir}")
    if not is_int(shard_lines) or shard_lines < 1:
        raise ValueError(f"shard_lines must be an int >= 1, found {shard_lines!r}")
    state = output_dir / STATE_DIR
    jobs, finished, failed = [], [], {}
    for source in sorted(p for p in input_dir.glob("*.txt") if p.is_file()):
        stat = source.stat()
        stamp = {"input": {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}, "settings": settings.record()}
        output, record = output_dir / f"{source.stem}.hdf5", state / f"{source.stem}.json"
        if output.is_file() and _read_record(record) == stamp:
            finished.append(source)
            continue
        try:
            check_output(output, [source])
            cuts = scan(source, shard_lines)
        except (ValueError, OSError) as err:
            failed[str(source)] = str(err)
            continue
        key = hashlib.sha256(json.dumps([stamp, shard_lines]).encode()).hexdigest()[:12]
        parts = state / f"{source.stem}-{key}"
        shards = [Shard(source, parts / f"{cut[1]:012d}.hdf5", *cut) for cut in cuts]
        jobs.append(FileJob(source, output, record, stamp, shards))
    return jobs, finished, failed


def assemble(job: FileJob, forget_sentences: bool) -> None:
    """Join the parts of ``job`` into its output (appears by atomic rename), then write its record."""
    job.record.unlink(missing_ok=True)  # the output changes: the old record must not vouch for it
    parts = [shard.part for shard in job.shards]
    if len(parts) == 1:
        os.replace(parts[0], job.output)
    else:
        sentence_to_index: dict[str, str] = {}
        with atomic_hdf5(job.output) as output:
            for part in parts:
                with h5py.File(part, "r") as source:
                    for key in source:
                        if key != "sentence_to_index":
                            source.copy(source[key], output.file, name=key)
                    if not forget_sentences:
                        sentence_to_index.update(json.loads(source["sentence_to_index"][0]))
                output.check()
            if not forget_sentences:
                write_sentence_to_index(output.file, sentence_to_index)
    write_text(job.record, json.dumps(job.stamp))
    shutil.rmtree(parts[0].parent, ignore_errors=True)


def embed_dir(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    settings: EmbedSettings | None = None,
    *,
    workers: int = 1,
    threads: int | None = None,
    shard_lines: int = DEFAULT_SHARD_LINES,
    runner: RunnerFactory | None = None,
    progress: bool = True,
) -> Summary:
    """Embed each ``*.txt`` of ``input_dir`` (one whitespace-tokenized sentence per line) into
    ``output_dir/<stem>.hdf5``, as ``spacy-elmo embed`` would; finished files are skipped.

    ``settings``: the model and output options (default: the bundled model, every layer);
    ``workers``: biLM copies working at once; ``threads``: torch threads per worker (default: this machine's
    cores / ``workers``, or torch's default for one local worker); ``runner``: the backend
    (default :func:`~.shards.local_shard_runner`: this process for one worker, spawned processes for more;
    :func:`~.ray_actors.ray_runner` for Ray actors). A bad file does not stop the others: it is reported in
    ``Summary.failed``.
    """
    start = time.perf_counter()
    settings = settings or EmbedSettings()
    if not is_int(workers) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, found {workers!r}")
    if threads is not None and (not is_int(threads) or threads < 1):
        raise ValueError(f"threads must be an int >= 1, found {threads!r}")
    output_dir = Path(output_dir)
    if not Path(input_dir).is_dir():
        raise ValueError(f"input directory not found: {input_dir}")
    check_writable(output_dir)
    with locked(output_dir):
        return _embed_dir(Path(input_dir), output_dir, settings, workers, threads, shard_lines, runner, progress, start)


def _embed_dir(
    input_dir: Path,
    output_dir: Path,
    settings: EmbedSettings,
    workers: int,
    threads: int | None,
    shard_lines: int,
    runner: RunnerFactory | None,
    progress: bool,
    start: float,
) -> Summary:
    jobs, finished, failed = plan(input_dir, output_dir, settings, shard_lines)
    summary = Summary(skipped=len(finished), failed=failed)
    waiting = {job.source: {s.part for s in job.shards if not s.part.is_file()} for job in jobs}
    todo = [shard for job in jobs for shard in job.shards if shard.part in waiting[job.source]]
    if todo:
        check_free_space(output_dir, _estimate(jobs, todo, settings), output_dir)
    if threads is None and (workers > 1 or runner is not None):
        threads = threads_per_worker(workers)
    workers = min(workers, max(len(todo), 1))
    by_source = {job.source: job for job in jobs}
    for job in jobs:
        if not waiting[job.source]:  # all its parts were written by an earlier run
            assemble(job, settings.forget_sentences)
            summary.files += 1
    with tqdm(total=sum(s.n_lines for s in todo), unit="sentence", desc="embedding", disable=not progress) as bar:
        run = (runner or local_shard_runner)(settings, workers, threads) if todo else None
        for shard, error in run(todo) if run else ():
            job = by_source[shard.source]
            if error is not None:
                failed.setdefault(str(job.source), _message(error))
                continue
            summary.sentences += shard.n_lines
            summary.tokens += shard.n_tokens
            bar.update(shard.n_lines)
            waiting[job.source].discard(shard.part)
            if not waiting[job.source] and str(job.source) not in failed:
                assemble(job, settings.forget_sentences)
                summary.files += 1
    summary.seconds = time.perf_counter() - start
    return summary


def _estimate(jobs: list[FileJob], todo: list[Shard], settings: EmbedSettings) -> int:
    """About the most bytes a run adds at once: the parts to embed, plus the largest output being assembled from
    its parts (a one-part file is renamed)."""
    options = settings.model.options()

    def size(shards: list[Shard]) -> int:
        lines, tokens = sum(s.n_lines for s in shards), sum(s.n_tokens for s in shards)
        return estimate_bytes(
            lines, tokens, options.n_output_layers, options.output_dim, settings.output_format, 8 * tokens
        )

    return size(todo) + max((size(job.shards) for job in jobs if len(job.shards) > 1), default=0)


@contextmanager
def locked(output_dir: Path) -> Iterator[None]:
    """Hold the lock of ``output_dir`` (``.embed-dir/lock``, which records the holder's pid) for the block.

    :raises ValueError: at once, naming the holder's pid, when another run holds it."""
    import fcntl  # POSIX

    state = output_dir / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    fd = os.open(state / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise ValueError(
                f"{output_dir} is in use by another embed-dir run (pid {holder}); wait until it finishes "
                "(it resumes where it stops) or give another OUTPUT_DIR"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _message(error: BaseException) -> str:
    return str(error) if isinstance(error, (ValueError, OSError)) else f"{type(error).__name__}: {error}"


def _read_record(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
