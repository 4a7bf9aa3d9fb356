"""The uvicorn server of :func:`.app.run`: uvicorn's h11 protocol with the connection limits of :class:`.Limits`.

uvicorn times a connection only between two requests (``timeout_keep_alive``); a client that connects and sends
nothing, or half a request line, would hold its connection for ever. Here a connection with no request under way
closes after ``keep_alive_s`` from when it opened too, and a request's headers must arrive within
``request_timeout_s`` of its first byte (408, then closed). At SIGTERM a request still uploading its body gets 503
at once instead of holding the shutdown. h11 (not httptools) because it bounds the request line
and headers (``h11_max_incomplete_event_size``); the body is bounded and timed by :func:`.limits.read_body`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any, Optional

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .limits import Limits

logger = logging.getLogger(__name__)
REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
_STOPPING = b'{"error":"the server is shutting down","status":503}'
STOPPING = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 5\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_STOPPING), _STOPPING)
)


def protocol(limits: Limits) -> type:
    """uvicorn's h11 protocol class, with ``limits`` on idle connections, request headers and connection count."""

    class GuardedH11Protocol(H11Protocol):
        _headers_timer: Optional[asyncio.TimerHandle] = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections:
                logger.warning("closed a connection: %d are open (--max-connections)", limits.max_connections)
                transport.close()
                return
            self.timeout_keep_alive_task = self.loop.call_later(limits.keep_alive_s, self.timeout_keep_alive_handler)

        def connection_lost(self, exc: Optional[Exception]) -> None:
            self._stop_headers_timer()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            between_requests = self.cycle is None or self.cycle.response_complete
            if between_requests and self._headers_timer is None:
                self._headers_timer = self.loop.call_later(limits.request_timeout_s, self._headers_late)
            super().data_received(data)
            if self.cycle is not None and not self.cycle.response_complete:
                self._stop_headers_timer()  # the request line and headers are in

        def shutdown(self) -> None:
            """At SIGTERM: a request whose body is still arriving (a stalled upload) gets 503 and its connection
            closes, so the drain waits only for requests that can finish; the others as uvicorn does."""
            cycle = self.cycle
            if cycle is not None and cycle.more_body and not cycle.response_started and not cycle.response_complete:
                self.transport.write(STOPPING)
                self.transport.close()  # the app reads a disconnect and drops the request
                return
            super().shutdown()

        def _headers_late(self) -> None:
            self._headers_timer = None
            if not self.transport.is_closing():
                self.transport.write(REQUEST_TIMEOUT)
                self.transport.close()

        def _stop_headers_timer(self) -> None:
            if self._headers_timer is not None:
                self._headers_timer.cancel()
                self._headers_timer = None

    return GuardedH11Protocol


def config(app: Any, host: str, port: int, log_level: str, limits: Limits) -> uvicorn.Config:
    """uvicorn's settings for ``limits``: keep-alive, concurrency, header size, graceful-shutdown timeout."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        http=protocol(limits),
        timeout_keep_alive=limits.keep_alive_s,  # type: ignore[arg-type]  # a float works: it is loop.call_later's
        # uvicorn answers 503 once connections >= limit_concurrency: one more, so max_connections can all be served
        limit_concurrency=limits.max_connections + 1,
        h11_max_incomplete_event_size=limits.max_header_bytes,
        timeout_graceful_shutdown=limits.drain_timeout_s,  # type: ignore[arg-type]  # (asyncio.timeout's)
    )


def check_port(host: str, port: int) -> None:
    """Raise ``OSError`` (one line) if ``host:port`` cannot be listened on (in use, not an address of this
    machine), binding it for a moment as uvicorn will (``SO_REUSEADDR``)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as error:
        raise OSError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
