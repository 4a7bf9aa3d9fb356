"""``create_app(bilm, ...)``: the Starlette ASGI app of the embedding service, and :func:`run` (uvicorn)."""

from __future__ import annotations

import asyncio
import signal
from contextlib import asynccontextmanager, contextmanager
from typing import Any, AsyncIterator, Callable, Dict, Iterator, List, Optional

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..bilm import kernels
from ..bilm.model import BiLM
from ..bilm.outputs import DEFAULT_BATCH_SIZE
from ..bilm.precision import Precision
from .auth import RequireKey, check_key
from .batcher import Batcher, Sentences
from .handlers import Service
from .heap import HeapTrimmer
from .json_io import JSONResponse
from .limits import DEFAULT_LIMITS, Limits
from .metrics import Metrics
from .schema import Tokenizer

WARM_UP: Sentences = [["The", "service", "is", "warming", "up", "."]]
#: sentences per biLM forward within a batch (embed_sentences' default)
FORWARD_SENTENCES = DEFAULT_BATCH_SIZE
DEFAULTS: Dict[str, Any] = {
    "max_batch_tokens": 2048,
    "max_wait_ms": 5.0,
    "max_queue": 256,
    "max_request_tokens": 2048,
    "workers": 1,
}
#: the longest --max-wait-ms taken (a minute): the batcher's wait must be a finite, sane time
MAX_WAIT_MS = 60_000.0
#: the most --workers taken: each is a thread holding a batch's activations, and more than cores buys nothing
MAX_WORKERS = 256


def create_app(
    bilm: BiLM,
    *,
    max_batch_tokens: int = DEFAULTS["max_batch_tokens"],
    max_wait_ms: float = DEFAULTS["max_wait_ms"],
    max_queue: int = DEFAULTS["max_queue"],
    max_request_tokens: int = DEFAULTS["max_request_tokens"],
    workers: int = DEFAULTS["workers"],
    precision: Precision = "fp32",
    tokenizer: Optional[Tokenizer] = None,
    model_name: Optional[str] = None,
    limits: Limits = DEFAULT_LIMITS,
    api_key: Optional[str] = None,
    playground: bool = True,
) -> Starlette:
    """The service for an already loaded ``bilm`` (see ``spacy_elmo.load_bilm``).

    Requests are batched across clients: up to ``max_batch_tokens`` tokens per biLM call, or what has
    arrived ``max_wait_ms`` after the oldest waiting request; at most ``max_queue`` requests wait (more get
    503 with ``Retry-After``); a request may hold ``max_request_tokens`` tokens (more: 413). ``workers`` threads
    run batches at the same time on the one ``bilm`` (give torch ``cores / workers`` threads:
    ``torch.set_num_threads``).
    ``tokenizer`` splits ``"texts"`` (default: on whitespace); ``model_name`` is reported by ``/info``.
    ``limits``: body size, request and idle timeouts, connections (see :class:`.Limits`; :func:`run` applies the
    connection ones).
    ``api_key``: every request but ``GET /health`` must carry ``Authorization: Bearer <api_key>`` (else 401).
    ``playground``: ``GET /`` serves a page comparing two texts token by token (open without the key: it holds no
    data and sends the key its user types with each of its calls).

    The app's lifespan starts the worker thread (and warms the model up) and, at shutdown, finishes the
    admitted requests. Mounted inside another app (whose lifespan does not reach it) the worker starts
    with the first request; call ``app.state.batcher.close()`` at the outer app's shutdown.
    """
    for name, value in (
        ("max_batch_tokens", max_batch_tokens),
        ("max_queue", max_queue),
        ("max_request_tokens", max_request_tokens),
        ("workers", workers),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, found {value!r}")
    if workers > MAX_WORKERS:
        raise ValueError(
            f"workers must be at most {MAX_WORKERS} (one thread and one batch's memory each), found {workers}"
        )
    check_max_wait_ms(max_wait_ms)
    precision = kernels.resolve_precision(precision, bilm.device)  # checks it too
    api_key = check_key(api_key)
    embed = batch_embedder(bilm, precision)
    metrics = Metrics()
    metrics.watch_token_cache(lambda: len(bilm.token_cache) if bilm.token_cache is not None else 0)
    batcher = Batcher(
        embed,
        max_batch_tokens=max_batch_tokens,
        max_wait_ms=max_wait_ms,
        max_queue=max_queue,
        workers=workers,
        warm_up=lambda: embed(WARM_UP),
        on_batch=metrics.observe_batch,
        on_queue=metrics.observe_queue,
    )
    settings = {
        "max_batch_tokens": max_batch_tokens,
        "max_wait_ms": max_wait_ms,
        "max_queue": max_queue,
        "max_request_tokens": max_request_tokens,
        "workers": workers,
        "precision": precision,
        **limits.to_json(),
    }
    service = Service(
        bilm,
        batcher.submit,
        max_request_tokens=max_request_tokens,
        metrics=metrics,
        is_ready=batcher.is_ready,
        tokenizer=tokenizer,
        limits=limits,
        info={"model": model_name, "serving": settings},
        playground=playground,
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        batcher.start()
        yield
        await asyncio.to_thread(batcher.close)

    routes = [Route(path, handler, methods=[method]) for path, (method, handler) in service.routes().items()]
    middleware = [Middleware(RequireKey, key=api_key, open_paths=service.open_paths)] if api_key else []
    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _http_error}, middleware=middleware
    )
    app.state.batcher = batcher
    app.state.service = service
    app.state.limits = limits
    return app


def batch_embedder(bilm: BiLM, precision: Precision) -> Callable[[Sentences], List[np.ndarray]]:
    """A batch's sentences -> one array ``(n_layers, n_tokens, dim)`` each, in ``FORWARD_SENTENCES`` per forward;
    after a batch, the heap's freed pages go back to the system (at most every few seconds: :mod:`.heap`), so a
    large batch's activations do not stay in the memory plateau. Call it from a worker thread, not an event loop."""
    heap = HeapTrimmer()

    def embed(sentences: Sentences) -> List[np.ndarray]:
        arrays = bilm.embed_sentences(sentences, batch_size=FORWARD_SENTENCES, precision=precision)
        heap.after_batch()
        return arrays

    return embed


def check_max_wait_ms(max_wait_ms: float) -> None:
    """Refuse a wait the batcher cannot keep: negative, over :data:`MAX_WAIT_MS`, inf or nan."""
    if (
        isinstance(max_wait_ms, bool)
        or not isinstance(max_wait_ms, (int, float))
        or not 0 <= max_wait_ms <= MAX_WAIT_MS
    ):
        raise ValueError(f"max_wait_ms must be a number of milliseconds in [0, {MAX_WAIT_MS:g}], found {max_wait_ms!r}")


async def _http_error(request: Request, error: Exception) -> Response:
    """Starlette's own errors (404 no such path, 405 wrong method) as JSON like the others."""
    assert isinstance(error, HTTPException)
    message = f"{error.detail}: {request.method} {request.url.path}"
    return JSONResponse({"error": message, "status": error.status_code}, error.status_code, headers=error.headers)


def run(app: Starlette, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Serve ``app`` with uvicorn until SIGINT / SIGTERM, then stop accepting, finish what was admitted and
    return (exit status 0: uvicorn itself re-raises the signal after its graceful shutdown). Requests still open
    ``drain_timeout_s`` after the signal (a client that stalled mid-upload) are cancelled; the connection limits
    of ``app.state.limits`` apply (see :mod:`.connections`)."""
    import uvicorn

    from .connections import config

    class Server(uvicorn.Server):
        @contextmanager
        def capture_signals(self) -> Iterator[None]:
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    Server(config(app, host, port, log_level, app.state.limits)).run()
