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
from ..bilm.outputs import DEFAULT_BATCH_SIZE, OutputFormat, check_batch_size, check_output_format, select_layers
from ..bilm.precision import Precision
from ..util.atomic import check_free_space, check_output, remove_stale_temps
from ..util.hdf5 import atomic_hdf5
from ..util.text import BOM, read_lines
from ..util.windows import MAX_LENGTH, split_windows

logger = logging.getLogger(__name__)
PathOrFile = Union[str, os.PathLike, TextIO, Iterable[str]]
EmbedBatch = Callable[[list[list[str]]], list[np.ndarray]]


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
    path = Path(input_file)
    if path.is_dir():
        raise ValueError(f"{input_file}: is a directory, not a text file (embed-dir embeds a directory)")
    if path.exists() and not path.is_file():
        raise ValueError(f"{input_file}: not a regular file (a device, pipe or socket): give a text file")
    if not path.is_file():
        raise ValueError(f"input file not found: {input_file}")
    check_output(output_file, [input_file])


def embed_file(
    bilm: BiLM,
    input_file: PathOrFile,
    output_file_path: str | os.PathLike,
    output_format: OutputFormat = "all",
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
    numbered: Iterable[tuple[int, str]], batch_size: int, embed: EmbedBatch, max_length: int = MAX_LENGTH
) -> Iterator[list[tuple[int, str, np.ndarray]]]:
    """Read ``batch_size`` ``(index, line)`` pairs at a time, embed their whitespace tokens, yield
    ``(index, line, layers (n_layers, n_tokens, dim))`` per line of the batch.

    A line of more than ``max_length`` tokens is embedded in even windows of at most that many (each its own biLM
    sequence, as the component's ``max_length`` does), its layers joined along the token axis: memory stays flat
    whatever the line's length."""
    numbered = iter(numbered)
    while batch := list(itertools.islice(numbered, batch_size)):
        pieces: list[list[str]] = []
        owners: list[int] = []
        for k, (_, line) in enumerate(batch):
            tokens = line.split()
            for start, end in split_windows(0, len(tokens), max_length) or [(0, 0)]:
                pieces.append(tokens[start:end])
                owners.append(k)
        parts: list[list[np.ndarray]] = [[] for _ in batch]
        for k, layers in zip(owners, embed(pieces)):
            parts[k].append(layers)
        yield [
            (index, line, p[0] if len(p) == 1 else np.concatenate(p, axis=-2)) for (index, line), p in zip(batch, parts)
        ]


def write_sentence_to_index(out: h5py.File, sentence_to_index: dict[str, str]) -> None:
    """The ``sentence_to_index`` dataset: one JSON string mapping each line to its dataset key."""
    index_dataset = out.create_dataset("sentence_to_index", (1,), dtype=h5py.string_dtype())
    index_dataset[0] = json.dumps(sentence_to_index)
