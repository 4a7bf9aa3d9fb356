"""The hdf5 layout of ``spacy-elmo embed`` (AllenNLP's ``elmo`` command): one dataset per input line.

Each line of the input is one whitespace-tokenized sentence; its layers are stored as a float32 dataset keyed
by the line index (``"0"``, ``"1"``, ...) or by the line itself: ``"all"`` ``(n_layers, n_tokens, dim)``,
``"top"`` (top layer) or ``"average"`` (mean of the layers) ``(n_tokens, dim)``; a ``sentence_to_index``
dataset maps each line to its key.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Iterable, Iterator, TextIO, Union, cast

import h5py
import numpy as np
from tqdm import tqdm

from ..bilm import BiLM
from ..bilm.precision import Precision
from ..util.atomic import check_free_space, check_output, remove_stale_temps
from ..util.checks import is_int
from ..util.hdf5 import atomic_hdf5
from ..util.text import BOM, read_lines

DEFAULT_BATCH_SIZE = 64
OUTPUT_FORMATS = ("all", "top", "average")
logger = logging.getLogger(__name__)
PathOrFile = Union[str, os.PathLike, TextIO, Iterable[str]]
EmbedBatch = Callable[[list[list[str]]], list[np.ndarray]]


def check_batch_size(batch_size: int) -> None:
    """:raises ValueError: unless ``batch_size`` is an int >= 1."""
    if not is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, found {batch_size!r}")


def check_output_format(output_format: str) -> None:
    """:raises ValueError: unless ``output_format`` is one of :data:`OUTPUT_FORMATS`."""
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output_format must be one of {OUTPUT_FORMATS}, found {output_format!r}")


def _numbered_lines(lines: Iterable[str], source: str) -> Iterator[tuple[int, str]]:
    """``(index, stripped line)`` from 0 (a leading byte-order mark dropped); a blank line is a ``ValueError``
    naming its (1-based) line number."""
    for index, line in enumerate(lines):
        line = line.strip()
        if index == 0 and line.startswith(BOM):
            line = line[1:].strip()
        if not line:
            raise blank_line_error(source, index)
        yield index, line


def blank_line_error(source: str, index: int) -> ValueError:
    """The error for the blank line ``index`` (0-based) of ``source``."""
    return ValueError(f"{source}: line {index + 1} is blank; every line must hold one sentence (remove blank lines)")


def estimate_bytes(n_lines: int, n_tokens: int, n_layers: int, dim: int, output_format: str, text_bytes: int) -> int:
    """About the size of an output file: float32 layers, per-dataset overhead, the sentence map."""
    layers = n_layers if output_format == "all" else 1
    return 4 * n_tokens * layers * dim + 400 * n_lines + 2 * text_bytes + 4096


def check_embed_paths(input_file: str | os.PathLike, output_file: str | os.PathLike) -> None:
    """Before any work: the input exists, the output is not the input (also through a link), not a directory,
    and its directory can be written. :raises ValueError: naming the path and the problem."""
    if not Path(input_file).is_file():
        raise ValueError(f"input file not found: {input_file}")
    check_output(output_file, [input_file])


def embed_file(
    bilm: BiLM,
    input_file: PathOrFile,
    output_file_path: str | os.PathLike,
    output_format: str = "all",
    batch_size: int = DEFAULT_BATCH_SIZE,
    forget_sentences: bool = False,
    use_sentence_keys: bool = False,
    precision: Precision = "fp32",
    progress: bool = True,
    embed_batch: EmbedBatch | None = None,
) -> None:
    """Write the biLM layers of each line of ``input_file`` to hdf5, in the layout of AllenNLP's ``elmo`` command.

    ``input_file``: a path (read as UTF-8, a leading byte-order mark dropped), an open text file or an iterable
    of lines; one sentence per line, tokens separated by whitespace, blank lines are an error. One float32
    dataset per line, keyed by the line index (``"0"``, ``"1"``, ...) or, with ``use_sentence_keys``, by the
    line itself: ``"all"`` ``(n_layers, n_tokens, dim)``, ``"top"`` (top layer) and ``"average"`` (mean of the
    layers) ``(n_tokens, dim)``. Unless ``forget_sentences`` or ``use_sentence_keys``, a dataset
    ``sentence_to_index`` holds a JSON string mapping each line to its key.
    Reads, embeds and writes ``batch_size`` lines at a time. Before any work the output is checked (not the
    input, not a directory, writable; a path input is checked for bad lines and its output's size against
    the free space) and temporary files of the output left by killed runs are removed. The output file
    appears only when complete; a full disk raises :class:`~spacy_elmo.util.atomic.WriteError` (an
    ``OSError``) naming the file, with nothing left behind. ``precision``: ``"fp32"``, ``"bf16"`` autocast or
    ``"int8"``; ``progress``: show a tqdm bar; ``embed_batch``: embeds each batch instead of ``bilm.embed_sentences``
    (a stateful ``ElmoEmbedder`` passes its own).
    """
    check_output_format(output_format)
    check_batch_size(batch_size)
    with ExitStack() as stack:
        total: int | None = None
        if isinstance(input_file, (str, os.PathLike)):
            source = str(input_file)
            check_embed_paths(input_file, output_file_path)
            total = n_tokens = text_bytes = 0
            for _, line in _numbered_lines(_text_lines(input_file), source):
                total += 1
                n_tokens += len(line.split())
                text_bytes += len(line)
            check_free_space(
                output_file_path, estimate_bytes(total, n_tokens, bilm.n_layers, bilm.dim, output_format, text_bytes)
            )
            lines: Iterable[str] = _text_lines(input_file)
        else:
            source, lines = getattr(input_file, "name", "input"), input_file
            check_output(output_file_path, [source] if os.path.isfile(source) else [])
            if getattr(lines, "seekable", lambda: False)():  # check all lines before embedding; count them
                seekable = cast(TextIO, lines)
                start = seekable.tell()
                total = sum(1 for _ in _numbered_lines(seekable, source))
                seekable.seek(start)
        for stale in remove_stale_temps(output_file_path):
            logger.info("removed %s, left by an embedding run that no longer runs", stale)
        numbered = _numbered_lines(lines, source)
        sentence_to_index: dict[str, str] = {}
        output = stack.enter_context(atomic_hdf5(output_file_path))
        out = output.file
        bar = stack.enter_context(tqdm(total=total, unit="sentence", desc="embedding", disable=not progress))
        embed = embed_batch or (lambda sentences: bilm.embed_sentences(sentences, batch_size, precision))
        for batch in embed_lines(numbered, batch_size, embed):
            for index, line, layers in batch:
                key = line if use_sentence_keys else str(index)
                if use_sentence_keys and ("/" in key or key == "." or key in out):
                    problem = "contains '/'" if "/" in key else "repeats an earlier line" if key in out else "is '.'"
                    raise ValueError(
                        f"{source}: line {index + 1} {problem}, so it cannot be an hdf5 key; "
                        "leave out use_sentence_keys to key the lines by their index"
                    )
                if not (forget_sentences or use_sentence_keys):
                    sentence_to_index[line] = key
                out.create_dataset(key, data=select_layers(layers, output_format))
            output.check()
            bar.update(len(batch))
        if not (forget_sentences or use_sentence_keys):
            write_sentence_to_index(out, sentence_to_index)


def _text_lines(path: str | os.PathLike) -> Iterator[str]:
    return (line for _, _, line in read_lines(path))


def embed_lines(
    numbered: Iterable[tuple[int, str]], batch_size: int, embed: EmbedBatch
) -> Iterator[list[tuple[int, str, np.ndarray]]]:
    """Read ``batch_size`` ``(index, line)`` pairs at a time, embed their whitespace tokens, yield
    ``(index, line, layers (n_layers, n_tokens, dim))`` per line of the batch."""
    numbered = iter(numbered)
    while batch := list(itertools.islice(numbered, batch_size)):
        embeddings = embed([line.split() for _, line in batch])
        yield [(index, line, layers) for (index, line), layers in zip(batch, embeddings)]


def select_layers(layers: np.ndarray, output_format: str) -> np.ndarray:
    """float32 ``(n_layers, n_tokens, dim)`` for ``"all"``; ``(n_tokens, dim)``: top layer or layer mean."""
    if output_format == "top":
        layers = layers[-1]
    elif output_format == "average":
        layers = layers.mean(axis=0)
    return layers.astype(np.float32, copy=False)


def write_sentence_to_index(out: h5py.File, sentence_to_index: dict[str, str]) -> None:
    """The ``sentence_to_index`` dataset: one JSON string mapping each line to its dataset key."""
    index_dataset = out.create_dataset("sentence_to_index", (1,), dtype=h5py.string_dtype())
    index_dataset[0] = json.dumps(sentence_to_index)
