"""The HTTP endpoints, shared by the Starlette app (:mod:`.app`) and the Ray Serve deployment (:mod:`.ray_serve`).

They differ only in how sentences reach the biLM: ``embed`` is an async function (sentences -> one
array ``(n_layers, n_tokens, dim)`` per sentence) given by each.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from typing import Any, Awaitable, Callable, Dict, List, Optional

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from .. import __version__
from ..bilm import kernels
from ..bilm.mix import cosine, mean_mixed_vector
from ..bilm.model import BiLM
from ..bilm.outputs import select_layers
from .auth import OPEN_PATHS
from .batcher import QueueFull, Sentences, ShuttingDown
from .json_io import JSONResponse, dumps
from .limits import DEFAULT_LIMITS, ClientGone, Limits, read_body
from .metrics import Metrics
from .playground import PATH as PLAYGROUND_PATH
from .playground import playground as playground_page
from .schema import Output, RequestError, Tokenizer, parse_embed, parse_similarity, whitespace_tokenizer

AsyncEmbed = Callable[[Sentences], Awaitable[List[np.ndarray]]]
Handler = Callable[[Request], Awaitable[Response]]
NPY = "application/x-npy"
CLIENT_GONE = 499  # no response reaches the client; the status only labels the metrics
#: the response headers that make uvicorn close the connection after an answer sent before the body was read whole
CLOSE = {"Connection": "close"}
logger = logging.getLogger(__name__)


class Service:
    """The endpoints of one biLM: ``POST /v1/embed``, ``POST /v1/similarity``, ``GET /health``, ``/ready``,
    ``/info``, ``/metrics`` and, with ``playground``, ``GET /`` (see :meth:`routes`).

    ``watch_disconnect``: drop the work of a client that disconnects (needs an ASGI server that reports
    ``http.disconnect``, as uvicorn does). ``limits``: the body's size and time (see :func:`.limits.read_body`).
    """

    def __init__(
        self,
        bilm: BiLM,
        embed: AsyncEmbed,
        *,
        max_request_tokens: int,
        metrics: Metrics,
        is_ready: Callable[[], bool],
        tokenizer: Optional[Tokenizer] = None,
        info: Optional[Dict[str, Any]] = None,
        watch_disconnect: bool = True,
        limits: Limits = DEFAULT_LIMITS,
        playground: bool = True,
    ) -> None:
        self.bilm = bilm
        self.embed_sentences = embed
        self.max_request_tokens = max_request_tokens
        self.metrics = metrics
        self.is_ready = is_ready
        self.tokenizer = tokenizer or whitespace_tokenizer
        self.extra_info = info or {}
        self.watch_disconnect = watch_disconnect
        self.limits = limits
        #: paths answered without the API key: the probes, and the page (it holds no data; its calls carry the key)
        self.open_paths = OPEN_PATHS | ({PLAYGROUND_PATH} if playground else frozenset())
        self._routes = self._route_table(playground)

    def routes(self) -> Dict[str, tuple[str, Handler]]:
        """``path -> (method, handler)``, each handler recording its request in the metrics."""
        return dict(self._routes)

    def _route_table(self, playground: bool) -> Dict[str, tuple[str, Handler]]:
        table: Dict[str, tuple[str, Handler]] = {
            "/v1/embed": ("POST", self.embed),
            "/v1/similarity": ("POST", self.similarity),
            "/health": ("GET", self.health),
            "/ready": ("GET", self.ready),
            "/info": ("GET", self.info),
            "/metrics": ("GET", self.metrics_text),
        }
        if playground:
            table[PLAYGROUND_PATH] = ("GET", playground_page)
        return {path: (method, self._measured(path, handler)) for path, (method, handler) in table.items()}

    async def dispatch(self, request: Request) -> Response:
        """Route one request by path and method (for servers without a router, like Ray Serve's ``__call__``)."""
        route = self._routes.get(request.url.path.rstrip("/") or "/")
        if route is None:
            return _error(404, f"no endpoint {request.url.path}; see /info")
        method, handler = route
        if request.method != method:
            return _error(405, f"{request.url.path} takes {method}, found {request.method}")
        return await handler(request)

    async def embed(self, request: Request) -> Response:
        """``{"sentences": [[token, ...], ...]}`` or ``{"texts": [...]}``, ``"output"``: ``all`` (default,
        ``(n_layers, n_tokens, dim)`` per sentence), ``top`` / ``average`` (``(n_tokens, dim)``) or per-layer
        weights (their weighted sum, ``(n_tokens, dim)``). ``Accept: application/x-npy``: one ``.npy`` array
        with the sentences concatenated along the token axis, their lengths in ``X-Sentence-Lengths``."""
        parsed = parse_embed(
            await read_body(request, self.limits), self.bilm.n_layers, self.max_request_tokens, self.tokenizer
        )
        layers = await self._embed(request, parsed.sentences)
        with np.errstate(over="ignore", invalid="ignore"):  # checked below
            arrays = [_select(a, parsed.output) for a in layers]
        output = parsed.output if isinstance(parsed.output, str) else "weights"
        if not all(np.isfinite(a).all() for a in arrays):
            raise RequestError(400, "output: the weighted sum of the layers overflows float32; use smaller weights")
        if _wants_npy(request.headers.get("accept", "")):
            return _npy_response(arrays, output)
        body = {
            "output": output,
            "embeddings": [
                {"tokens": tokens, "shape": list(a.shape), "values": a} for tokens, a in zip(parsed.sentences, arrays)
            ],
        }
        return Response(dumps(body), media_type="application/json")

    async def similarity(self, request: Request) -> Response:
        """Cosine of the two document vectors: the mean over tokens of the mixed token vectors, as
        ``doc.similarity`` computes it with the ``elmo`` component (mix ``"average"`` unless ``"mix"`` says)."""
        parsed = parse_similarity(
            await read_body(request, self.limits), self.bilm.n_layers, self.max_request_tokens, self.tokenizer
        )
        first, second = await self._embed(request, [parsed.first, parsed.second])
        with np.errstate(over="ignore", invalid="ignore"):  # checked below
            vectors = [mean_mixed_vector(first, parsed.weights), mean_mixed_vector(second, parsed.weights)]
        if not all(np.isfinite(v).all() for v in vectors):
            raise RequestError(400, "mix: the weighted sum of the layers overflows float32; use smaller weights")
        value = cosine(*vectors)
        return JSONResponse({"similarity": value, "tokens": [parsed.first, parsed.second]})

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def ready(self, request: Request) -> Response:
        if self.is_ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready: the model is warming up or the server is stopping"}, 503)

    async def info(self, request: Request) -> Response:
        bilm = self.bilm
        return JSONResponse(
            {
                "version": __version__,
                "architecture": bilm.options.to_json(),
                "parameters": sum(p.numel() for p in bilm.parameters()),
                "n_layers": bilm.n_layers,
                "dim": bilm.dim,
                "device": str(bilm.device),
                "token_cache_size": bilm.token_cache_size,
                "kernels": kernels.describe(),
                **self.extra_info,
            }
        )

    async def metrics_text(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=self.metrics.content_type)

    async def _embed(self, request: Request, sentences: Sentences) -> List[np.ndarray]:
        """The biLM's arrays for ``sentences``; raises :class:`ClientGone` (work dropped) if the client leaves."""
        if not self.watch_disconnect:
            return await self.embed_sentences(sentences)
        work = asyncio.ensure_future(self.embed_sentences(sentences))
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            done, _ = await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not work.done():
                work.cancel()
        if work not in done:
            raise ClientGone()
        return work.result()

    def _measured(self, path: str, handler: Handler) -> Handler:
        endpoint = path.rsplit("/", 1)[-1] or "playground"

        async def measured(request: Request) -> Response:
            start = time.perf_counter()
            try:
                response = await handler(request)
            except RequestError as error:
                response = _error(error.status, error.message, CLOSE if error.status in (408, 413) else None)
            except QueueFull as error:
                response = _error(503, str(error), {"Retry-After": str(error.retry_after)})
            except ShuttingDown as error:
                response = _error(503, str(error), {"Retry-After": "5"})
            except ClientGone:
                response = Response(status_code=CLIENT_GONE)
            except Exception as error:  # the details go to the log, not to the client
                logger.exception("%s %s failed", request.method, request.url.path)
                response = _error(500, f"the biLM failed ({type(error).__name__}); the server log has the details")
            self.metrics.observe_request(endpoint, response.status_code, time.perf_counter() - start)
            return response

        return measured


def _select(layers: np.ndarray, output: Output) -> np.ndarray:
    """``(n_layers, n_tokens, dim)`` -> the requested output (see :meth:`Service.embed`)."""
    if isinstance(output, str):
        return select_layers(layers, output)
    return np.tensordot(output, layers, axes=1).astype(np.float32, copy=False)


def _wants_npy(accept: str) -> bool:
    """Whether an ``Accept`` header prefers ``.npy`` to JSON: its quality is above 0 and at least JSON's
    (``application/json``, ``application/*`` or ``*/*``; JSON when the header names neither)."""
    quality = {"npy": 0.0, "json": 0.0}
    for entry in accept.split(","):
        media, *parameters = [part.strip().lower() for part in entry.split(";")]
        q = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        kind = "npy" if media == NPY else "json" if media in ("application/json", "application/*", "*/*") else None
        if kind is not None:
            quality[kind] = max(quality[kind], q)
    return quality["npy"] > 0 and quality["npy"] >= quality["json"]


def _npy_response(arrays: List[np.ndarray], output: str) -> Response:
    buffer = io.BytesIO()
    np.save(buffer, np.concatenate(arrays, axis=-2), allow_pickle=False)
    headers = {"X-Sentence-Lengths": ",".join(str(a.shape[-2]) for a in arrays), "X-Output": output}
    return Response(buffer.getvalue(), media_type=NPY, headers=headers)


def _error(status: int, message: str, headers: Optional[Dict[str, str]] = None) -> Response:
    return JSONResponse({"error": message, "status": status}, status, headers=headers)


async def _disconnected(request: Request) -> None:
    """Return when the client has disconnected (the body must have been read)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
