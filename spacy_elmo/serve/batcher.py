"""Dynamic batching: requests wait in a bounded queue, worker threads run them through the biLM in batches.

The event loop only enqueues and awaits; a free worker thread forms a batch of whole requests up to
``max_batch_tokens`` tokens, or whatever has arrived ``max_wait_ms`` after the oldest waiting request,
runs it (torch releases the GIL meanwhile) and hands each request its own rows back on the loop.
With several workers, batches run at the same time on one copy of the model (each on its own core
when torch runs one thread per worker). A request whose awaiting task is cancelled (its client went
away) is dropped if it has not started.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence

import numpy as np

logger = logging.getLogger(__name__)

Sentences = List[List[str]]
Embed = Callable[[Sentences], Sequence[np.ndarray]]
#: called after each batch with (requests, sentences, tokens, seconds)
OnBatch = Callable[[int, int, int, float], None]


class QueueFull(Exception):
    """The queue holds ``max_queue`` requests; ``retry_after`` seconds is an estimate of when it has room."""

    def __init__(self, max_queue: int, retry_after: int) -> None:
        super().__init__(f"the queue is full ({max_queue} requests waiting); retry after {retry_after} s")
        self.retry_after = retry_after


class ShuttingDown(Exception):
    """The batcher is closed: it admits nothing new."""


@dataclass
class _Job:
    sentences: Sentences
    n_tokens: int
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    enqueued: float = field(default_factory=time.monotonic)
    cancelled: bool = False


class Batcher:
    """Queue + worker threads around ``embed`` (sentences -> one array per sentence; called from ``workers``
    threads at once when ``workers`` > 1, so it must be thread-safe).

    ``max_batch_tokens``: tokens per batch (a longer request runs alone); ``max_wait_ms``: how long the
    oldest waiting request may wait for others to join it; ``max_queue``: requests waiting at most
    (more: :class:`QueueFull`). ``warm_up`` runs in the first worker before any batch; :attr:`ready` is
    set after it.
    """

    def __init__(
        self,
        embed: Embed,
        *,
        max_batch_tokens: int,
        max_wait_ms: float,
        max_queue: int,
        workers: int = 1,
        warm_up: Optional[Callable[[], object]] = None,
        on_batch: Optional[OnBatch] = None,
        on_queue: Optional[Callable[[int], None]] = None,
    ) -> None:
        for name, value in (("max_batch_tokens", max_batch_tokens), ("max_queue", max_queue), ("workers", workers)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, found {value}")
        if not 0 <= max_wait_ms < math.inf:  # nan and inf too: the worker's wait must be a finite time
            raise ValueError(f"max_wait_ms must be a finite number >= 0, found {max_wait_ms}")
        self.embed = embed
        self.max_batch_tokens = max_batch_tokens
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.workers = workers
        self.warm_up = warm_up
        self.on_batch = on_batch
        self.on_queue = on_queue
        self.ready = threading.Event()
        self._warmed = threading.Event()  # the warm-up has ended, well or not
        self._waiting: deque[_Job] = deque()
        self._waiting_tokens = 0
        self._tokens_per_second = 0.0
        self._closing = False
        self._failure: Optional[BaseException] = None
        self._condition = threading.Condition()
        self._threads: List[threading.Thread] = []

    @property
    def depth(self) -> int:
        """Requests waiting (not yet in a batch)."""
        return len(self._waiting)

    def is_ready(self) -> bool:
        """Warmed up, admitting requests, and the worker alive. Starts the worker if nothing has yet (an app
        mounted in another app, whose lifespan does not start it)."""
        self.start()
        return self.ready.is_set() and not self._closing and self._failure is None

    def start(self) -> None:
        """Start the worker threads (once; later calls do nothing)."""
        with self._condition:
            if not self._threads:
                for k in range(self.workers):
                    thread = threading.Thread(target=self._work, args=(k,), name=f"spacy-elmo-batcher-{k}", daemon=True)
                    self._threads.append(thread)
                    thread.start()

    async def submit(self, sentences: Sentences) -> List[np.ndarray]:
        """The biLM's arrays ``(n_layers, n_tokens, dim)`` for ``sentences``, in order.

        Raises :class:`QueueFull` or :class:`ShuttingDown` at once when the request is not admitted (also when
        the worker has died: its error is in the log).
        """
        self.start()
        loop = asyncio.get_running_loop()
        job = _Job(sentences, sum(len(s) for s in sentences), loop.create_future(), loop)
        with self._condition:
            if self._failure is not None:
                raise _stopped(self._failure)
            if self._closing:
                raise ShuttingDown("the server is shutting down")
            if len(self._waiting) >= self.max_queue:
                raise QueueFull(self.max_queue, self._retry_after())
            self._waiting.append(job)
            self._waiting_tokens += job.n_tokens
            self._condition.notify()
            depth = len(self._waiting)
        self._report_queue(depth)
        try:
            return await job.future
        except asyncio.CancelledError:
            job.cancelled = True
            raise

    def close(self, timeout: Optional[float] = None) -> None:
        """Admit nothing more, finish the admitted requests, stop the workers (blocks until they have, at most
        ``timeout`` seconds in all)."""
        with self._condition:
            self._closing = True
            self._condition.notify_all()
            threads = list(self._threads)
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def _retry_after(self) -> int:
        """Seconds until the waiting tokens are done at the recent speed of all workers (1 to 60)."""
        if self._tokens_per_second <= 0:
            return 1
        seconds = self._waiting_tokens / (self._tokens_per_second * self.workers)
        return int(min(60, max(1, math.ceil(seconds))))

    def _report_queue(self, depth: int) -> None:
        if self.on_queue is not None:
            self.on_queue(depth)

    def _work(self, worker: int) -> None:
        """Worker ``worker``; if one dies (a bug, not a failed batch), the waiting requests fail, the other
        workers stop after their batch and nothing more is admitted, so ``/ready`` says so instead of requests
        waiting for ever."""
        try:
            self._serve(worker)
        except BaseException as error:
            logger.exception("a batch worker stopped")
            with self._condition:
                self._failure = error
                waiting = list(self._waiting)
                self._waiting.clear()
                self._waiting_tokens = 0
                self._condition.notify_all()
            for job in waiting:
                _post(job, _fail, _stopped(error))
        finally:
            self._warmed.set()

    def _serve(self, worker: int) -> None:
        if worker == 0:
            if self.warm_up is not None:
                self.warm_up()
            self.ready.set()
            self._warmed.set()
        else:
            self._warmed.wait()
            if not self.ready.is_set():  # the warm-up failed
                return
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if batch:
                self._run(batch)

    def _next_batch(self) -> Optional[List[_Job]]:
        """The next batch (empty when every waiting request was cancelled); ``None``: closed and drained, or
        another worker died."""
        with self._condition:
            while not self._waiting and not self._closing and self._failure is None:
                self._condition.wait()
            if not self._waiting or self._failure is not None:
                return None
            deadline = self._waiting[0].enqueued + self.max_wait
            while self._waiting_tokens < self.max_batch_tokens and not self._closing:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._condition.wait(remaining)
            batch: List[_Job] = []
            tokens = 0
            while self._waiting:
                job = self._waiting[0]
                if batch and tokens + job.n_tokens > self.max_batch_tokens:
                    break
                self._waiting.popleft()
                self._waiting_tokens -= job.n_tokens
                if not job.cancelled:
                    batch.append(job)
                    tokens += job.n_tokens
            depth = len(self._waiting)
        self._report_queue(depth)
        return batch

    def _run(self, batch: List[_Job]) -> None:
        sentences = [s for job in batch for s in job.sentences]
        tokens = sum(job.n_tokens for job in batch)
        start = time.perf_counter()
        try:
            arrays = list(self.embed(sentences))
        except Exception as error:  # handed to each request (a 500), the worker goes on
            logger.exception("a batch of %d requests failed", len(batch))
            for job in batch:
                _post(job, _fail, error)
            return
        seconds = time.perf_counter() - start
        speed = tokens / seconds if seconds > 0 else 0.0
        self._tokens_per_second = speed if self._tokens_per_second == 0 else 0.8 * self._tokens_per_second + 0.2 * speed
        # Recorded before any answer is handed back, so a client that reads /metrics after its answer sees its batch.
        if self.on_batch is not None:
            self.on_batch(len(batch), len(sentences), tokens, seconds)
        offset = 0
        for job in batch:
            rows = arrays[offset : offset + len(job.sentences)]
            offset += len(job.sentences)
            _post(job, _deliver, rows)


def _stopped(error: BaseException) -> ShuttingDown:
    return ShuttingDown(f"the batch worker stopped ({type(error).__name__}); see the server log")


def _post(job: _Job, handler: Callable[[asyncio.Future, object], None], value: object) -> None:
    """Run ``handler(job.future, value)`` on the job's event loop (nothing if that loop is closed)."""
    try:
        job.loop.call_soon_threadsafe(handler, job.future, value)
    except RuntimeError:
        logger.warning("a result arrived after its event loop was closed; dropped")


def _deliver(future: asyncio.Future, rows: object) -> None:
    if not future.done():
        future.set_result(rows)


def _fail(future: asyncio.Future, error: object) -> None:
    if not future.done():
        assert isinstance(error, BaseException)
        future.set_exception(error)
