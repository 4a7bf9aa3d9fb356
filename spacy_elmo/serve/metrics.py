"""Prometheus metrics of the service (one registry per app, so several apps can live in one process)."""

from __future__ import annotations

from typing import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

PREFIX = "spacy_elmo"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.4, 0.6, 1.0, 2.5, 5.0, 10.0)
BATCH_REQUEST_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
BATCH_TOKEN_BUCKETS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)


class Metrics:
    """Requests by endpoint and status, request latency, batch sizes, queue depth, tokens and tokens/s; the
    process's resident memory (``process_resident_memory_bytes``, with CPU seconds and open files: Prometheus's
    process collector, on Linux) and the token cache's entries (once :meth:`watch_token_cache` is called)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            f"{PREFIX}_requests", "HTTP requests by endpoint and status", ["endpoint", "status"], registry=r
        )
        self.latency = Histogram(
            f"{PREFIX}_request_seconds", "request latency", ["endpoint"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.batch_requests = Histogram(
            f"{PREFIX}_batch_requests", "requests per biLM batch", buckets=BATCH_REQUEST_BUCKETS, registry=r
        )
        self.batch_tokens = Histogram(
            f"{PREFIX}_batch_tokens", "tokens per biLM batch", buckets=BATCH_TOKEN_BUCKETS, registry=r
        )
        self.batch_seconds = Histogram(
            f"{PREFIX}_batch_seconds", "biLM time per batch", buckets=LATENCY_BUCKETS, registry=r
        )
        self.tokens = Counter(f"{PREFIX}_tokens", "tokens embedded", registry=r)
        self.tokens_per_second = Gauge(
            f"{PREFIX}_tokens_per_second", "tokens/s of the last biLM batch (rate(tokens_total) over time)", registry=r
        )
        self.queue_depth = Gauge(f"{PREFIX}_queue_depth", "requests waiting for a batch", registry=r)
        self.token_cache_entries = Gauge(
            f"{PREFIX}_token_cache_entries",
            "word types whose token layer is cached (at most --token-cache-size)",
            registry=r,
        )
        ProcessCollector(registry=r)

    def watch_token_cache(self, entries: Callable[[], int]) -> None:
        """Report ``entries()`` (read at each scrape) as the token cache's entries."""
        self.token_cache_entries.set_function(entries)

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def observe_batch(self, requests: int, sentences: int, tokens: int, seconds: float) -> None:
        self.batch_requests.observe(requests)
        self.batch_tokens.observe(tokens)
        self.batch_seconds.observe(seconds)
        self.tokens.inc(tokens)
        if seconds > 0:
            self.tokens_per_second.set(tokens / seconds)

    def observe_queue(self, depth: int) -> None:
        self.queue_depth.set(depth)

    def render(self) -> bytes:
        """The Prometheus text exposition format."""
        return generate_latest(self.registry)
