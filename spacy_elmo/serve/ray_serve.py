"""The service on Ray Serve: the endpoints of :class:`~.handlers.Service` in replicas on a Ray cluster.

Ray Serve forms the batches (``serve.batch``, sized in tokens through ``batch_size_fn``), routes requests
to replicas, bounds each replica's queue (``max_queued_requests``: 503 beyond it) and scales the
replica count between ``replicas`` and ``max_replicas``. Each replica loads the model itself, so the
model files (or a released model's name, downloaded into each node's cache) must be reachable on every
node, and spacy-elmo installed there.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from typing import Any, Dict, List, Optional, cast

import numpy as np
import ray
from ray import serve
from starlette.requests import Request
from starlette.responses import Response

from ..bilm import kernels
from ..bilm.precision import Precision
from ..bilm.token_cache import DEFAULT_TOKEN_CACHE_SIZE
from ..hub.spec import ModelSpec
from .app import DEFAULTS, batch_embedder
from .auth import authorization_error, check_key, unauthorized
from .batcher import Sentences
from .handlers import Service
from .metrics import Metrics
from .tokenizers import make_tokenizer


@serve.deployment
class ElmoDeployment:
    """One replica: a biLM, its metrics, and the shared endpoints; ``settings`` as :func:`deployment` takes."""

    def __init__(self, model: ModelSpec, settings: Dict[str, Any], api_key: Optional[str] = None) -> None:
        self.api_key = api_key

        self.bilm = model.load(settings["device"], token_cache_size=settings["token_cache_size"])
        self.embed = batch_embedder(self.bilm, kernels.resolve_precision(settings["precision"], self.bilm.device))
        batching = cast(Any, self.embed_batch)  # serve.batch's wrapper
        batching.set_max_batch_size(settings["max_batch_tokens"])
        batching.set_batch_wait_timeout_s(settings["max_wait_ms"] / 1000.0)
        metrics = Metrics()
        metrics.watch_token_cache(lambda: len(self.bilm.token_cache) if self.bilm.token_cache is not None else 0)
        self.service = Service(
            self.bilm,
            self.embed_batch,
            max_request_tokens=settings["max_request_tokens"],
            metrics=metrics,
            is_ready=lambda: True,
            tokenizer=make_tokenizer(settings["tokenizer"]),
            info={"model": settings["model_name"], "serving": {**settings, "ray": True}},
            watch_disconnect=False,
            playground=settings["playground"],
        )

    @serve.batch(batch_size_fn=lambda requests: sum(len(s) for sentences in requests for s in sentences))
    async def embed_batch(self, requests: List[Sentences]) -> List[List[np.ndarray]]:
        """One biLM call for the sentences of a batch of requests; each request gets its own arrays back."""
        sentences = [s for request in requests for s in request]
        start = time.perf_counter()
        arrays = await asyncio.to_thread(self.embed, sentences)
        out, offset = [], 0
        for request in requests:
            out.append(arrays[offset : offset + len(request)])
            offset += len(request)
        seconds = time.perf_counter() - start
        self.service.metrics.observe_batch(len(requests), len(sentences), sum(len(s) for s in sentences), seconds)
        return out

    async def __call__(self, request: Request) -> Response:
        if self.api_key and request.url.path not in self.service.open_paths:
            problem = authorization_error(request.headers.raw, self.api_key)
            if problem is not None:
                return unauthorized(problem)
        return await self.service.dispatch(request)


def deployment(
    model: ModelSpec,
    *,
    model_name: Optional[str] = None,
    replicas: int = 1,
    max_replicas: Optional[int] = None,
    cpus_per_replica: float = 1.0,
    max_batch_tokens: int = DEFAULTS["max_batch_tokens"],
    max_wait_ms: float = DEFAULTS["max_wait_ms"],
    max_queue: int = DEFAULTS["max_queue"],
    max_request_tokens: int = DEFAULTS["max_request_tokens"],
    workers: int = DEFAULTS["workers"],
    precision: Precision = "fp32",
    device: str = "cpu",
    token_cache_size: int = DEFAULT_TOKEN_CACHE_SIZE,
    tokenizer: Optional[str] = None,
    api_key: Optional[str] = None,
    playground: bool = True,
) -> Any:
    """The bound Ray Serve application (for ``serve.run``) of ``model`` (resolved by each replica: a released
    name is fetched into each node's cache). ``max_replicas`` above ``replicas`` turns on autoscaling between
    the two. ``api_key``, ``playground``: as :func:`~.app.create_app` takes them (the key kept out of ``/info``).
    ``workers``: 1 only (one batch at a time per replica: Ray scales by ``replicas``)."""
    if workers != 1:
        raise ValueError(
            f"--workers is the local server's: on Ray Serve scale with --replicas (found workers={workers})"
        )
    if replicas < 1 or (max_replicas is not None and max_replicas < replicas):
        raise ValueError(f"replicas must be >= 1 and max_replicas >= replicas, found {replicas} and {max_replicas}")
    options: Dict[str, Any] = {
        "ray_actor_options": {"num_cpus": cpus_per_replica},
        "max_queued_requests": max_queue,
        "max_ongoing_requests": max(64, max_queue),
    }
    if max_replicas is not None and max_replicas > replicas:
        options["autoscaling_config"] = {"min_replicas": replicas, "max_replicas": max_replicas}
    else:
        options["num_replicas"] = replicas
    settings = {
        "model_name": model_name,
        "max_batch_tokens": max_batch_tokens,
        "max_wait_ms": max_wait_ms,
        "max_request_tokens": max_request_tokens,
        "precision": precision,
        "device": device,
        "token_cache_size": token_cache_size,
        "tokenizer": tokenizer,
        "playground": playground,
    }
    return cast(Any, ElmoDeployment).options(**options).bind(model, settings, check_key(api_key))


def run_on_ray(app: Any, address: str, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Join Ray at ``address`` (``local``: a new cluster here; ``auto``: ``RAY_ADDRESS`` or this machine's),
    serve ``app`` over HTTP on ``host:port`` until SIGINT / SIGTERM, then shut Serve down (replicas
    finish their requests first) and return, so that the command exits 0.

    The handlers are installed after ``ray.init``: Ray's core installs its own for SIGTERM there, which logs
    a stack trace and aborts the process (exit 134)."""
    stop = threading.Event()
    ray.init(address=address, include_dashboard=False, log_to_driver=False)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(app, name="spacy-elmo", route_prefix="/")
        stop.wait()
    finally:
        serve.shutdown()
        ray.shutdown()
