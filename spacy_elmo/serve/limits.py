"""What a client may hold of the server: body size, how long a request may take to arrive, idle connections, how
many connections, how long a shutdown waits for the open ones. Checked here once; enforced by :func:`read_body`
(every server) and by :mod:`.connections` (uvicorn)."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from typing import Any, Dict

from starlette.requests import Request

from .schema import RequestError


class ClientGone(Exception):
    """The client disconnected before its response was ready (or while it was still sending its request)."""


#: the longest timeout taken (a day); longer ones, and inf or nan, are refused
MAX_SECONDS = 86400.0


@dataclass(frozen=True)
class Limits:
    """``max_body_bytes``: a request body may be this long (more: 413, refused from ``Content-Length`` before any
    of it is read, or as soon as a streamed body passes it); ``request_timeout_s``: a request's headers and body
    must have arrived this long after its first byte (headers late: 408 and the connection closed; body late:
    408); ``keep_alive_s``: a connection with no request under way is closed after this long;
    ``max_connections``: open connections at most (one more is closed at once; requests beyond it get 503);
    ``max_header_bytes``: request line + headers at most (more: 400 and closed); ``drain_timeout_s``: at
    SIGTERM, how long the server waits for open requests before it cancels them and exits."""

    max_body_bytes: int = 4 * 2**20
    request_timeout_s: float = 30.0
    #: nginx's default, not uvicorn's 5 s: a busy client's pooled connection that sat idle a few seconds must not
    #: be closed under it (the client would see a read error, not an answer)
    keep_alive_s: float = 75.0
    max_connections: int = 1000
    max_header_bytes: int = 16 * 2**10
    drain_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_connections", "max_header_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, found {value!r}")
        for name in ("request_timeout_s", "keep_alive_s", "drain_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_SECONDS:
                raise ValueError(f"{name} must be a number of seconds in (0, {MAX_SECONDS:g}], found {value!r}")

    def to_json(self) -> Dict[str, Any]:
        return asdict(self)


#: the defaults of every setting
DEFAULT_LIMITS = Limits()


async def read_body(request: Request, limits: Limits) -> bytes:
    """The whole body of ``request``, read as it streams in, never more than ``limits.max_body_bytes`` of it.

    Raises :class:`RequestError` 413 (too long: by ``Content-Length`` before reading, or while reading), 408 (not
    all there within ``limits.request_timeout_s``), 400 (a ``Content-Length`` that is not a number), and
    :class:`ClientGone` when the client disconnects while sending it.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise RequestError(400, f"Content-Length must be a number of bytes, found {declared[:40]!r}")
        if int(declared) > limits.max_body_bytes:
            raise RequestError(413, _too_long(f"the body declares {int(declared):,} bytes", limits))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limits.request_timeout_s
    chunks, total = [], 0
    while True:
        remaining = deadline - loop.time()
        try:
            if remaining <= 0:
                raise asyncio.TimeoutError
            message = await asyncio.wait_for(request.receive(), remaining)
        except asyncio.TimeoutError:
            raise RequestError(
                408, f"the request body did not arrive within {limits.request_timeout_s:g} s ({total:,} bytes came)"
            ) from None
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limits.max_body_bytes:
            raise RequestError(413, _too_long(f"the body passed {total:,} bytes", limits))
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _too_long(found: str, limits: Limits) -> str:
    return f"{found}, more than the limit of {limits.max_body_bytes:,} (--max-body-bytes)"
