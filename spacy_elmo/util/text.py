"""Reading text input: UTF-8, a leading byte-order mark dropped, an undecodable byte named by file, line and
byte offset. Every reader of user text (embedding, training corpora, vocabularies) goes through here."""

from __future__ import annotations

import os
from typing import Iterator

BOM = "\ufeff"


def decode_line(raw: bytes, source: str | os.PathLike[str], index: int, offset: int) -> str:
    """Line ``index`` (0-based) of ``source``, read from byte ``offset``, as text; the first line loses a
    leading byte-order mark. :raises ValueError: naming the file, the line and the bad byte's offset."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{source}: line {index + 1} is not valid UTF-8: byte 0x{raw[err.start]:02x} at byte {err.start + 1} "
            f"of the line (byte offset {offset + err.start} in the file): {err.reason}; save the file as UTF-8"
        ) from None
    return line[1:] if index == 0 and line.startswith(BOM) else line


def read_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, int, str]]:
    """``(index, byte offset, line)`` for each line of the UTF-8 file ``path`` (see :func:`decode_line`);
    the line keeps its end-of-line characters."""
    offset = 0
    with open(path, "rb") as lines:
        for index, raw in enumerate(lines):
            yield index, offset, decode_line(raw, path, index, offset)
            offset += len(raw)
