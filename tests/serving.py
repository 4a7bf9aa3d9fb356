"""Helpers of the service tests: the app with its lifespan in process, Prometheus samples, a free port, readiness."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from contextlib import asynccontextmanager

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families


@asynccontextmanager
async def serving(app):
    """The app with its lifespan running, a client talking to it in process, and the model warmed up."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            for _ in range(500):
                if (await client.get("/ready")).status_code == 200:
                    break
                await asyncio.sleep(0.01)
            yield client


def embed_scope(headers: dict[str, str]) -> dict:
    """The ASGI scope of a ``POST /v1/embed`` with ``headers``, for tests that drive the app's messages by hand."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "path": "/v1/embed",
        "raw_path": b"/v1/embed",
        "query_string": b"",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        "scheme": "http",
        "server": ("service", 80),
        "client": ("127.0.0.1", 1234),
        "root_path": "",
    }


def values(response) -> list[np.ndarray]:
    """The vectors of a JSON ``/v1/embed`` response, one array per sentence."""
    assert response.status_code == 200, response.text
    return [np.asarray(e["values"], dtype=np.float32) for e in response.json()["embeddings"]]


def metric_samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen | None = None, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}: {process.stderr.read()}")
        try:
            if httpx.get(url + "/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} was not ready within {timeout} s")
