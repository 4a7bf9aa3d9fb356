"""``create_app(bilm, ...)``: the Starlette ASGI app of the embedding service, and :func:`run` (uvicorn)."""

from __future__ import annotations

import asyncio
import signal
from contextlib import asynccontextmanager, contextmanager
from typing import Any, AsyncIterator, Dict, Iterator, List, Optional, Sequence

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..bilm import kernels
from ..bilm.model import BiLM
from ..bilm.precision import Precision
from .batcher import Batcher, Sentences
from .handlers import Service
from .metrics import Metrics
from .schema import Tokenizer

WARM_UP: Sentences = [["The", "service", "is", "warming", "up", "."]]
#: sentences per biLM forward within a batch (embed_sentences' default; it sorts a batch by length first,
#: so each forward pads only to the longest of similar lengths)
FORWARD_SENTENCES = 64
DEFAULTS: Dict[str, Any] = {"max_batch_tokens": 2048, "max_wait_ms": 5.0, "max_queue": 256, "max_request_tokens": 2048}


def create_app(
    bilm: BiLM,
    *,
    max_batch_tokens: int = DEFAULTS["max_batch_tokens"],
    max_wait_ms: float = DEFAULTS["max_wait_ms"],
    max_queue: int = DEFAULTS["max_queue"],
    max_request_tokens: int = DEFAULTS["max_request_tokens"],
    precision: Precision = "fp32",
    tokenizer: Optional[Tokenizer] = None,
    model_name: Optional[str] = None,
) -> Starlette:
    """The service for an already loaded ``bilm`` (see ``spacy_elmo.load_bilm``).

    Requests are batched across clients: up to ``max_batch_tokens`` tokens per biLM call, or what has
    arrived ``max_wait_ms`` after the oldest waiting request; at most ``max_queue`` requests wait (more get
    503 with ``Retry-After``); a request may hold ``max_request_tokens`` tokens (more: 413).
    ``tokenizer`` splits ``"texts"`` (default: on whitespace); ``model_name`` is reported by ``/info``.

    The app's lifespan starts the worker thread (and warms the model up) and, at shutdown, finishes the
    admitted requests. Mounted inside another app (whose lifespan does not reach it) the worker starts
    with the first request; call ``app.state.batcher.close()`` at the outer app's shutdown.
    """
    for name, value in (
        ("max_batch_tokens", max_batch_tokens),
        ("max_queue", max_queue),
        ("max_request_tokens", max_request_tokens),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, found {value!r}")
    if max_wait_ms < 0:
        raise ValueError(f"max_wait_ms must be >= 0, found {max_wait_ms!r}")
    precision = kernels.resolve_precision(precision, bilm.device)  # checks it too

    def embed(sentences: Sequence[Sequence[str]]) -> List[np.ndarray]:
        return bilm.embed_sentences(sentences, batch_size=FORWARD_SENTENCES, precision=precision)

    metrics = Metrics()
    batcher = Batcher(
        embed,
        max_batch_tokens=max_batch_tokens,
        max_wait_ms=max_wait_ms,
        max_queue=max_queue,
        warm_up=lambda: embed(WARM_UP),
        on_batch=metrics.observe_batch,
        on_queue=metrics.observe_queue,
    )
    settings = {
        "max_batch_tokens": max_batch_tokens,
        "max_wait_ms": max_wait_ms,
        "max_queue": max_queue,
        "max_request_tokens": max_request_tokens,
        "precision": precision,
    }
    service = Service(
        bilm,
        batcher.submit,
        max_request_tokens=max_request_tokens,
        metrics=metrics,
        is_ready=batcher.is_ready,
        tokenizer=tokenizer,
        info={"model": model_name, "serving": settings},
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        batcher.start()
        yield
        await asyncio.to_thread(batcher.close)

    routes = [Route(path, handler, methods=[method]) for path, (method, handler) in service.routes().items()]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _http_error})
    app.state.batcher = batcher
    app.state.service = service
    return app


async def _http_error(request: Request, error: Exception) -> Response:
    """Starlette's own errors (404 no such path, 405 wrong method) as JSON like the others."""
    assert isinstance(error, HTTPException)
    message = f"{error.detail}: {request.method} {request.url.path}"
    return JSONResponse({"error": message, "status": error.status_code}, error.status_code, headers=error.headers)


def run(app: Starlette, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Serve ``app`` with uvicorn until SIGINT / SIGTERM, then stop accepting, finish what was admitted and
    return (exit status 0: uvicorn itself re-raises the signal after its graceful shutdown)."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextmanager
        def capture_signals(self) -> Iterator[None]:
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    # keep-alive 75 s (nginx's default) instead of uvicorn's 5 s: a busy client's pooled connection that sat idle
    # for a few seconds must not be closed under it (the client would see a read error, not an answer)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False, timeout_keep_alive=75)
    Server(config).run()
