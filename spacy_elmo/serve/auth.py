"""An access key for the service: ``Authorization: Bearer KEY`` on every request but ``GET /health`` (and the
playground's static page, which holds no data and sends the key with each of its calls).

The key is compared in constant time (``hmac.compare_digest``) and never written to a log, a response or ``/info``.
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Iterable, Optional, Tuple

from starlette.types import ASGIApp, Receive, Scope, Send

from .json_io import JSONResponse

#: paths answered without the key: liveness probes (load balancers, orchestrators) carry no credentials
OPEN_PATHS = frozenset({"/health"})
ENV_VAR = "SPACY_ELMO_API_KEY"
MISSING = "this server needs an API key: send the header 'Authorization: Bearer KEY'"
WRONG = "the API key in 'Authorization: Bearer ...' is not this server's"


def check_key(key: Optional[str]) -> Optional[str]:
    """``key`` itself, ``None`` for no key (``None`` or empty); raises ``ValueError`` for one that cannot travel in
    a header (whitespace or characters outside printable ASCII)."""
    if not key:
        return None
    if not key.isascii() or not key.isprintable() or any(c.isspace() for c in key):
        raise ValueError("the API key must be printable ASCII without spaces (it travels in an HTTP header)")
    return key


def authorization_error(headers: Iterable[Tuple[bytes, bytes]], key: str) -> Optional[str]:
    """``None`` when ``headers`` (raw ASGI pairs) carry ``Authorization: Bearer <key>``, else why not."""
    value = next((v for name, v in headers if name.lower() == b"authorization"), None)
    if value is None:
        return MISSING
    scheme, _, token = value.strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return MISSING
    return None if hmac.compare_digest(token.strip(), key.encode()) else WRONG


def unauthorized(problem: str) -> JSONResponse:
    """The 401 answer saying ``problem`` (both servers send this one)."""
    return JSONResponse({"error": problem, "status": 401}, 401, {"WWW-Authenticate": 'Bearer realm="spacy-elmo"'})


class RequireKey:
    """ASGI middleware: 401 (``WWW-Authenticate: Bearer``) for any HTTP request outside ``open_paths`` without
    the key."""

    def __init__(self, app: ASGIApp, key: str, open_paths: frozenset[str] = OPEN_PATHS) -> None:
        self.app = app
        self.key = key
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in self.open_paths:
            problem = authorization_error(scope["headers"], self.key)
            if problem is not None:
                await unauthorized(problem)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def exposure_warning(host: str, key: Optional[str]) -> Optional[str]:
    """One line when ``host`` is reachable from other machines (not loopback) and no key guards it."""
    if key:
        return None
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost
        loopback = False
    if loopback:
        return None
    return (
        f"warning: serving on {host}, reachable from other machines, without an API key: anyone who can reach "
        f"the port can use it; set --api-key or {ENV_VAR}"
    )
