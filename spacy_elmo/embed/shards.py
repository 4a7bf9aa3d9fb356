"""Units of bulk-embedding work and the local ways to run them.

A :class:`Shard` is a range of lines of one input file; a :class:`ShardEmbedder` (one biLM, loaded once) writes
its part file. A shard runner runs a list of shards and yields each with its error (or ``None``) as it
finishes: :func:`local_shard_runner` in this process or in spawned worker processes; the Ray runner lives in
:mod:`spacy_elmo.embed.ray_actors`.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch

from ..bilm import BiLM
from ..bilm.outputs import DEFAULT_BATCH_SIZE, OutputFormat, check_batch_size, check_output_format, select_layers
from ..bilm.precision import Precision, check_precision
from ..bilm.token_cache import DEFAULT_TOKEN_CACHE_SIZE
from ..hub.spec import ModelSpec
from ..util.hdf5 import atomic_hdf5
from ..util.text import decode_line
from .writer import embed_lines, write_sentence_to_index

#: yields ``(shard, None)`` or ``(shard, error)`` for each shard given, as they finish
ShardRunner = Callable[[list["Shard"]], Iterator[tuple["Shard", Optional[BaseException]]]]
#: ``(settings, workers, threads) -> ShardRunner``: what ``embed_dir`` is given to choose a backend
RunnerFactory = Callable[["EmbedSettings", int, Optional[int]], ShardRunner]


@dataclass(frozen=True)
class EmbedSettings:
    """The biLM (:class:`~spacy_elmo.hub.spec.ModelSpec`; default: the bundled model) and the options of
    ``spacy-elmo embed``. Build it by keyword: ``EmbedSettings(model=ModelSpec("small"), output_format="top")``."""

    model: ModelSpec = field(default_factory=ModelSpec)
    output_format: OutputFormat = "all"
    batch_size: int = DEFAULT_BATCH_SIZE
    precision: Precision = "fp32"
    device: str = "cpu"
    token_cache_size: int = DEFAULT_TOKEN_CACHE_SIZE
    forget_sentences: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.model, ModelSpec):
            raise ValueError(f"model must be a ModelSpec, found {type(self.model).__name__} {self.model!r}")
        check_output_format(self.output_format)
        check_batch_size(self.batch_size)
        check_precision(self.precision)

    def resolved(self) -> EmbedSettings:
        """The same settings with a name or URLs replaced by local files (downloaded into the cache once)."""
        return replace(self, model=self.model.resolved())

    def load(self, threads: int | None = None) -> BiLM:
        """Load the biLM; ``threads``: torch threads of this process (``None``: leave them)."""
        if threads is not None:
            torch.set_num_threads(threads)
        return self.model.load(self.device, token_cache_size=self.token_cache_size)

    def record(self) -> dict[str, object]:
        """What decides the outputs' values and layout (local model files with their size and mtime)."""
        spec = self.model
        files = sorted(Path(spec.model).iterdir()) if spec.model is not None and os.path.isdir(spec.model) else ()
        return {
            "model": [_stamp(f) for f in (spec.model, spec.options_file, spec.weight_file, *files)],
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


class ShardEmbedder:
    """Embeds shards into part files with one biLM, loaded once (``threads``: torch threads, ``None``: leave them)."""

    def __init__(self, settings: EmbedSettings, threads: int | None = None) -> None:
        self.settings = settings
        self.bilm = settings.load(threads)

    def __call__(self, shard: Shard) -> Shard:
        """Write the part: one float32 dataset per line, keyed by the line's index in the whole file (shapes as
        ``embed``: ``(n_layers, n_tokens, dim)`` or ``(n_tokens, dim)``), plus this part's ``sentence_to_index``."""
        settings = self.settings
        numbered = []
        with open(shard.source, "rb") as lines:
            lines.seek(shard.offset)
            offset = shard.offset
            for index in range(shard.first, shard.first + shard.n_lines):
                raw = lines.readline()
                numbered.append((index, decode_line(raw, shard.source, index, offset).strip()))
                offset += len(raw)
        sentence_to_index: dict[str, str] = {}
        embed = partial(self.bilm.embed_sentences, batch_size=settings.batch_size, precision=settings.precision)
        with atomic_hdf5(shard.part) as output:
            for batch in embed_lines(numbered, settings.batch_size, embed):
                for index, line, layers in batch:
                    output.file.create_dataset(str(index), data=select_layers(layers, settings.output_format))
                    sentence_to_index[line] = str(index)
                output.check()
            if not settings.forget_sentences:
                write_sentence_to_index(output.file, sentence_to_index)
        return shard


def local_shard_runner(settings: EmbedSettings, workers: int, threads: int | None) -> ShardRunner:
    """Run shards in this process (``workers == 1``) or in ``workers`` spawned processes, each loading the
    biLM once (a released name or URLs are fetched here first, so workers never download)."""
    settings = settings.resolved()

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


def _stamp(file: str | os.PathLike | None) -> object:
    """A model file as recorded: a local file with its size and mtime, anything else (name, URL) as it is."""
    if file is not None and os.path.isfile(file):
        stat = os.stat(file)
        return [os.path.abspath(file), stat.st_size, stat.st_mtime_ns]
    return None if file is None else os.fspath(file)
