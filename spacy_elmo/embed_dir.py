"""Embed every ``*.txt`` of a directory into ``OUTPUT_DIR/<stem>.hdf5``, in the layout of ``spacy-elmo embed``.

Work split: each input file is checked once (UTF-8, no blank line) and cut into shards of ``shard_lines``
lines, found by their byte offsets. A worker (which loads the biLM once) embeds a shard into a part file
``OUTPUT_DIR/.embed-dir/<stem>-<key>/<first line>.hdf5``, written atomically, so a part exists complete or not
at all; ``<key>`` hashes the input's size and mtime and the settings, so parts of another input or other
settings are never reused. When all parts of a file are there, they are assembled into ``<stem>.hdf5``
(atomic rename), then the record ``OUTPUT_DIR/.embed-dir/<stem>.json`` (input size, mtime, settings) is
written. A file is finished when its output exists and its record matches the input and the settings: the
next run skips it after a ``stat`` and a small JSON read, and resumes an unfinished file from its parts.

Backends: in this process (``workers=1``), local worker processes (``spawn``), or Ray actors
(:mod:`spacy_elmo.ray`, imported only when asked for).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Callable, Iterator, Optional

import h5py
import torch
from tqdm import tqdm

from ._compat import RAY_MISSING, has_ray
from .allennlp import OUTPUT_FORMATS, blank_line_error, embed_lines, select_layers, write_sentence_to_index
from .bilm import BiLM
from .bilm.atomic import atomic_path, write_text
from .bilm.kernels import PRECISIONS
from .bilm.options import is_int
from .bilm.token_cache import DEFAULT_TOKEN_CACHE_SIZE
from .hub import load_bilm
from .hub.loading import resolve_files

STATE_DIR = ".embed-dir"
DEFAULT_SHARD_LINES = 1000
ShardRunner = Callable[[list["Shard"]], Iterator[tuple["Shard", Optional[BaseException]]]]


@dataclass(frozen=True)
class EmbedSettings:
    """The biLM (a released ``model`` name, or ``options_file`` + ``weight_file`` paths or URLs; neither:
    the bundled model) and the options of ``spacy-elmo embed``."""

    model: str | None = None
    options_file: str | None = None
    weight_file: str | None = None
    output_format: str = "all"
    batch_size: int = 64
    precision: str = "fp32"
    device: str = "cpu"
    token_cache_size: int = DEFAULT_TOKEN_CACHE_SIZE
    forget_sentences: bool = False

    def __post_init__(self) -> None:
        if self.model is not None and (self.options_file is not None or self.weight_file is not None):
            raise ValueError("give either a model name or options / weight files, not both")
        if self.output_format not in OUTPUT_FORMATS:
            raise ValueError(f"output_format must be one of {OUTPUT_FORMATS}, found {self.output_format!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, found {self.batch_size!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, found {self.precision!r}")

    def resolved(self) -> EmbedSettings:
        """The same settings with a name or URLs replaced by local files (downloaded into the cache once)."""
        files = (self.model, None) if self.model is not None else (self.options_file, self.weight_file)
        options_file, weight_file = resolve_files(*files)
        return replace(self, model=None, options_file=_str(options_file), weight_file=_str(weight_file))

    def load(self, threads: int | None = None) -> BiLM:
        """Load the biLM; ``threads``: torch threads of this process (``None``: leave them)."""
        if threads is not None:
            torch.set_num_threads(threads)
        files = (self.model, None) if self.model is not None else (self.options_file, self.weight_file)
        return load_bilm(*files, self.device, token_cache_size=self.token_cache_size)

    def record(self) -> dict[str, object]:
        """What decides the outputs' values and layout (local model files with their size and mtime)."""
        files = [_stamp(f) for f in (self.model, self.options_file, self.weight_file)]
        return {
            "model": files,
            "output_format": self.output_format,
            "precision": self.precision,
            "forget_sentences": self.forget_sentences,
        }


@dataclass(frozen=True)
class Shard:
    """Lines ``first .. first + n_lines - 1`` of ``source`` (starting at byte ``offset``), embedded into ``part``."""

    source: Path
    part: Path
    offset: int
    first: int
    n_lines: int
    n_tokens: int


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


class ShardEmbedder:
    """Embeds shards into part files with one biLM, loaded once (``threads``: torch threads, ``None``: leave them)."""

    def __init__(self, settings: EmbedSettings, threads: int | None = None) -> None:
        self.settings = settings
        self.bilm = settings.load(threads)

    def __call__(self, shard: Shard) -> Shard:
        """Write the part: one float32 dataset per line, keyed by the line's index in the whole file (shapes as
        ``embed``: ``(n_layers, n_tokens, dim)`` or ``(n_tokens, dim)``), plus this part's ``sentence_to_index``."""
        settings = self.settings
        with open(shard.source, "rb") as lines:
            lines.seek(shard.offset)
            numbered = [(shard.first + k, lines.readline().decode("utf-8").strip()) for k in range(shard.n_lines)]
        sentence_to_index: dict[str, str] = {}
        embed = partial(self.bilm.embed_sentences, batch_size=settings.batch_size, precision=settings.precision)
        with atomic_path(shard.part) as tmp, h5py.File(tmp, "w") as out:
            for batch in embed_lines(numbered, settings.batch_size, embed):
                for index, line, layers in batch:
                    out.create_dataset(str(index), data=select_layers(layers, settings.output_format))
                    sentence_to_index[line] = str(index)
            if not settings.forget_sentences:
                write_sentence_to_index(out, sentence_to_index)
        return shard


def scan(path: Path, shard_lines: int) -> list[tuple[int, int, int, int]]:
    """Check a text file (UTF-8, no blank line) and cut it into shards ``(byte offset, first line, n_lines,
    n_tokens)``; an empty file gives one empty shard. :raises ValueError: naming the file and the bad line."""
    shards: list[list[int]] = []
    offset = 0
    with open(path, "rb") as lines:
        for index, raw in enumerate(lines):
            if index % shard_lines == 0:
                shards.append([offset, index, 0, 0])
            offset += len(raw)
            try:
                n_tokens = len(raw.decode("utf-8").split())
            except UnicodeDecodeError as err:
                raise ValueError(
                    f"{path}: line {index + 1} is not valid UTF-8 (byte {err.start + 1} of the line: {err.reason})"
                ) from None
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
        with atomic_path(job.output) as tmp, h5py.File(tmp, "w") as out:
            for part in parts:
                with h5py.File(part, "r") as source:
                    for key in source:
                        if key != "sentence_to_index":
                            source.copy(source[key], out, name=key)
                    if not forget_sentences:
                        sentence_to_index.update(json.loads(source["sentence_to_index"][0]))
            if not forget_sentences:
                write_sentence_to_index(out, sentence_to_index)
    write_text(job.record, json.dumps(job.stamp))
    shutil.rmtree(parts[0].parent, ignore_errors=True)


def embed_dir(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    settings: EmbedSettings = EmbedSettings(),
    *,
    workers: int = 1,
    threads: int | None = None,
    shard_lines: int = DEFAULT_SHARD_LINES,
    ray_address: str | None = None,
    progress: bool = True,
) -> Summary:
    """Embed each ``*.txt`` of ``input_dir`` (one whitespace-tokenized sentence per line) into
    ``output_dir/<stem>.hdf5``, as ``spacy-elmo embed`` would; finished files are skipped.

    ``workers``: biLM copies working at once (``1`` without Ray: in this process; more: worker processes);
    ``threads``: torch threads per worker (default: this machine's cores / ``workers``; in this process:
    torch's default); ``ray_address``: run on Ray actors (``"local"``: a new cluster on this machine,
    ``"auto"`` or an address: join one; see :mod:`spacy_elmo.ray`). A bad file does not stop the others: it
    is reported in ``Summary.failed``.
    """
    start = time.perf_counter()
    if not is_int(workers) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, found {workers!r}")
    if ray_address is not None and not has_ray:
        raise ValueError(RAY_MISSING)
    output_dir = Path(output_dir)
    jobs, finished, failed = plan(Path(input_dir), output_dir, settings, shard_lines)
    summary = Summary(skipped=len(finished), failed=failed)
    waiting = {job.source: {s.part for s in job.shards if not s.part.is_file()} for job in jobs}
    todo = [shard for job in jobs for shard in job.shards if shard.part in waiting[job.source]]
    if threads is None and (workers > 1 or ray_address is not None):
        threads = max(1, (os.cpu_count() or 1) // workers)
    workers = min(workers, max(len(todo), 1))
    if ray_address is not None:
        from .ray import ray_shard_runner

        run = ray_shard_runner(settings, workers, threads, ray_address)
    else:
        run = local_shard_runner(settings.resolved() if todo else settings, workers, threads)
    by_source = {job.source: job for job in jobs}
    for job in jobs:
        if not waiting[job.source]:  # all its parts were written by an earlier run
            assemble(job, settings.forget_sentences)
            summary.files += 1
    with tqdm(total=sum(s.n_lines for s in todo), unit="sentence", desc="embedding", disable=not progress) as bar:
        for shard, error in run(todo) if todo else ():
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


def local_shard_runner(settings: EmbedSettings, workers: int, threads: int | None) -> ShardRunner:
    """Run shards in this process (``workers == 1``) or in ``workers`` spawned processes, each loading the
    biLM once; yields ``(shard, None)`` or ``(shard, error)`` as shards finish."""

    def run(shards: list[Shard]) -> Iterator[tuple[Shard, BaseException | None]]:
        if workers == 1:
            embedder = ShardEmbedder(settings, threads)
            for shard in shards:
                try:
                    yield embedder(shard), None
                except (ValueError, OSError) as err:
                    yield shard, err
            return
        context = multiprocessing.get_context("spawn")  # fork after torch ran multithreaded can hang
        with ProcessPoolExecutor(workers, context, _start_worker, (settings, threads)) as pool:
            futures = {pool.submit(_embed_in_worker, shard): shard for shard in shards}
            for future in as_completed(futures):
                yield futures[future], future.exception()

    return run


_worker: ShardEmbedder | None = None


def _start_worker(settings: EmbedSettings, threads: int | None) -> None:
    global _worker
    _worker = ShardEmbedder(settings, threads)


def _embed_in_worker(shard: Shard) -> Shard:
    assert _worker is not None
    return _worker(shard)


def _message(error: BaseException) -> str:
    return str(error) if isinstance(error, (ValueError, OSError)) else f"{type(error).__name__}: {error}"


def _read_record(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _stamp(file: str | None) -> object:
    """A model file as recorded: a local file with its size and mtime, anything else (name, URL) as it is."""
    if file is not None and os.path.isfile(file):
        stat = os.stat(file)
        return [os.path.abspath(file), stat.st_size, stat.st_mtime_ns]
    return file


def _str(file: object) -> str | None:
    return None if file is None else str(file)
