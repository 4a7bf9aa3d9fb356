"""The service against hostile or broken clients: bodies too long or never finished, idle and half-sent
connections, SIGTERM behind a stalled upload, non-finite settings, a dead batch worker, client mistakes that must
be 400s (not 500s), weights that overflow float32, ``Accept`` with q-values, a port in use or out of range."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason='needs the serve extra: pip install "spacy-elmo[serve]"')
httpx = pytest.importorskip("httpx")

from spacy_elmo.serve import create_app  # noqa: E402
from spacy_elmo.serve.batcher import Batcher  # noqa: E402
from spacy_elmo.serve.limits import Limits  # noqa: E402
from spacy_elmo.serve.tokenizers import make_tokenizer  # noqa: E402

from .serving import embed_scope, free_port, metric_samples, serving, wait_ready  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def strict_json(response) -> dict:
    """The body as JSON, refusing the bare ``NaN`` / ``Infinity`` that Python's encoder writes."""

    def refuse(name: str) -> None:
        raise AssertionError(f"the body holds a bare {name}: {response.text[:200]}")

    return json.loads(response.text, parse_constant=refuse)


@pytest.mark.parametrize("wait", [math.nan, math.inf, -1.0, 1e9])
def test_a_wait_the_batcher_cannot_keep_is_refused(parity_bilm, wait):
    with pytest.raises(
        ValueError, match=rf"max_wait_ms must be a number of milliseconds in \[0, 60000\], found {wait}"
    ):
        create_app(parity_bilm, max_wait_ms=wait)
    if wait != 1e9:
        with pytest.raises(ValueError, match=f"max_wait_ms must be a finite number >= 0, found {wait}"):
            Batcher(lambda s: [], max_batch_tokens=1, max_wait_ms=wait, max_queue=1)


@pytest.mark.parametrize("workers", [0, -1, 1.5, True, 257, 10**9])
def test_a_worker_count_out_of_range_is_refused(parity_bilm, workers):
    message = (
        "workers must be at most 256" if isinstance(workers, int) and workers > 1 else "workers must be an integer"
    )
    with pytest.raises(ValueError, match=message):
        create_app(parity_bilm, workers=workers)


@pytest.mark.parametrize(
    "setting, value, message",
    [
        ("request_timeout_s", math.nan, r"request_timeout_s must be a number of seconds in \(0, 86400\], found nan"),
        ("keep_alive_s", math.inf, r"keep_alive_s must be a number of seconds in \(0, 86400\], found inf"),
        ("drain_timeout_s", 0, r"drain_timeout_s must be a number of seconds in \(0, 86400\], found 0"),
        ("max_body_bytes", 0, "max_body_bytes must be an integer >= 1, found 0"),
        ("max_connections", 1.5, "max_connections must be an integer >= 1, found 1.5"),
    ],
)
def test_limits_out_of_range_are_refused(setting, value, message):
    with pytest.raises(ValueError, match=message):
        Limits(**{setting: value})


@pytest.mark.parametrize("workers", [1, 2])
def test_ready_fails_and_requests_are_answered_when_the_batch_worker_dies(parity_bilm, workers):
    app = create_app(parity_bilm, workers=workers)

    async def main():
        async with serving(app) as client:
            ready = await client.get("/ready")
            app.state.batcher.max_wait = math.inf  # as an unchecked --max-wait-ms inf was: the worker's wait raises
            embed = await asyncio.wait_for(client.post("/v1/embed", json={"texts": ["a b"]}), 10)
            return ready, embed, await client.get("/ready")

    ready, embed, after = asyncio.run(main())
    assert ready.status_code == 200
    assert embed.status_code == 503
    assert embed.json()["error"] == "the batch worker stopped (OverflowError); see the server log"
    assert after.status_code == 503
    app.state.batcher.close(10)  # the other worker, if any, has stopped too
    assert not any(thread.is_alive() for thread in app.state.batcher._threads)


CLIENT_MISTAKES = [
    # (path, raw body, tokenizer, status, message)
    ("/v1/similarity", b'{"texts": ["a \\ud800 b", "c"]}', None, 400, "texts[0] holds a lone surrogate U+D800 at"),
    ("/v1/embed", b'{"texts": ["ok", "x\\udfff"]}', "en", 400, "texts[1] holds a lone surrogate U+DFFF at character 1"),
    ("/v1/embed", b'{"sentences": [["a", "\\ud83d"]]}', None, 400, "sentences[0][1] holds a lone surrogate U+D83D"),
    # orjson reads the nesting (releases with a depth limit refuse it as invalid JSON); the answer is a 400 either way
    (
        "/v1/embed",
        b'{"texts": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        None,
        400,
        ("texts[0] must be a string, found array", "the body is not valid JSON: recursion limit"),
    ),
    (
        "/v1/embed",
        json.dumps({"texts": ["w" * 1_100_000]}).encode(),
        "en",
        413,
        "texts[0] has 1,100,000 characters, more than the limit of 131,072 (64 per token of the 2048",
    ),
    ("/v1/embed", b'{"texts": ["a"], "output": [1e308, 1e308, 1e308]}', None, 400, "output must be finite weights"),
    ("/v1/embed", b'{"texts": ["a"], "output": [3e38, 0, 0]}', None, 400, "output: the weighted sum of"),
    ("/v1/similarity", b'{"texts": ["a", "b"], "mix": [1e308, 1e308, 1e308]}', None, 400, "mix must be finite"),
]


def test_client_mistakes_are_400s_naming_the_field_and_never_carry_internals(parity_bilm):
    apps = {None: create_app(parity_bilm), "en": create_app(parity_bilm, tokenizer=make_tokenizer("en"))}

    async def main():
        out = []
        for tokenizer, app in apps.items():
            async with serving(app) as client:
                for path, body, wanted, *_ in CLIENT_MISTAKES:
                    if wanted == tokenizer:
                        out.append(await client.post(path, content=body))
                metrics = metric_samples((await client.get("/metrics")).text)
                out.append(metrics)
        return out

    *responses, en_metrics = asyncio.run(main())
    plain = [m for m in CLIENT_MISTAKES if m[2] is None]
    plain_metrics = responses.pop(len(plain))
    for (path, body, _, status, message), response in zip(plain + [m for m in CLIENT_MISTAKES if m[2]], responses):
        assert response.status_code == status, (path, body[:60], response.text[:300])
        assert strict_json(response)["error"].startswith(message), response.text[:300]
        assert "Error" not in response.text and "Traceback" not in response.text
    for metrics in (plain_metrics, en_metrics):
        assert not any(key[0] == "spacy_elmo_requests_total" and ("status", "500") in key[1] for key in metrics)


def test_accept_with_q_values_picks_json_or_npy(parity_bilm):
    app = create_app(parity_bilm)
    accepts = {
        "application/x-npy;q=0, application/json": "application/json",
        "application/json;q=0.5, application/x-npy": "application/x-npy",
        "application/x-npy": "application/x-npy",
        "application/x-npy;q=0.2, */*;q=0.9": "application/json",
        "text/html": "application/json",
    }

    async def main():
        async with serving(app) as client:
            return [await client.post("/v1/embed", json={"texts": ["a"]}, headers={"accept": a}) for a in accepts]

    for (accept, kind), response in zip(accepts.items(), asyncio.run(main())):
        assert response.status_code == 200 and response.headers["content-type"] == kind, accept


async def call(app, chunks, headers, receive_log, then=None):
    """One raw ASGI POST /v1/embed whose body arrives as ``chunks``, then (``then``) ``"stall"``s or ``"leave"``s;
    ``receive_log`` counts the chunks read."""
    sent: list[dict] = []

    async def receive():
        if chunks:
            receive_log.append(1)
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks) or then is not None}
        if then == "leave":
            return {"type": "http.disconnect"}
        await asyncio.sleep(3600)

    async def send(message):
        sent.append(message)

    await app(embed_scope(headers), receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict((k.decode(), v.decode()) for k, v in start["headers"]), body


def test_bodies_over_the_limit_late_or_abandoned(parity_bilm):
    app = create_app(parity_bilm, limits=Limits(max_body_bytes=1000, request_timeout_s=0.5))
    megabyte = b" " * 2**20

    async def main():
        async with serving(app) as client:
            logs: dict[str, list] = {name: [] for name in ("declared", "streamed", "late", "gone")}
            declared = await call(app, [megabyte] * 200, {"content-length": str(200 * 2**20)}, logs["declared"])
            streamed = await call(app, [b"x" * 400] * 200, {}, logs["streamed"])
            late = await call(app, [b'{"texts": '], {"content-length": "1000"}, logs["late"], "stall")
            gone = await call(app, [b'{"texts": '], {"content-length": "1000"}, logs["gone"], "leave")
            return declared, streamed, late, gone, logs, metric_samples((await client.get("/metrics")).text)

    declared, streamed, late, gone, logs, metrics = asyncio.run(main())
    assert declared[0] == 413 and declared[1]["connection"] == "close"
    assert json.loads(declared[2])["error"] == (
        "the body declares 209,715,200 bytes, more than the limit of 1,000 (--max-body-bytes)"
    )
    assert logs["declared"] == []  # refused before any of it was read
    assert streamed[0] == 413 and len(logs["streamed"]) == 3  # 1,200 bytes read of 80,000
    assert (
        json.loads(streamed[2])["error"]
        == "the body passed 1,200 bytes, more than the limit of 1,000 (--max-body-bytes)"
    )
    assert late[0] == 408 and late[1]["connection"] == "close"
    assert json.loads(late[2])["error"] == "the request body did not arrive within 0.5 s (10 bytes came)"
    assert gone[0] == 499
    by_status = {
        dict(k[1])["status"]: v
        for k, v in metrics.items()
        if k[0] == "spacy_elmo_requests_total" and dict(k[1])["endpoint"] == "embed"
    }
    assert by_status == {"413": 2, "408": 1, "499": 1}


# -- a real uvicorn in a process ---------------------------------------------------------------------------------


def start_server(parity_files, *extra: str):
    port = free_port()
    options, weights = parity_files
    command = [sys.executable, "-m", "spacy_elmo", "serve", "--options", str(options), "--weights", str(weights)]
    command += ["--port", str(port), *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process)
    except BaseException:
        process.kill()
        raise
    return process, port


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def post_head(port: int, length: int | None, first: bytes = b"") -> socket.socket:
    """A connection that sent the headers of ``POST /v1/embed`` and ``first`` of its body, then stalls."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    size = f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
    sock.sendall(f"POST /v1/embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{size}\r\n".encode())
    if first:
        sock.sendall(first)
    return sock


def closed_after(sock: socket.socket, limit: float, since: float | None = None) -> tuple[float, bytes]:
    """Seconds from ``since`` (default: now) until the server closed ``sock`` (waiting ``limit`` at most), and what
    it sent before."""
    start = time.monotonic()
    sock.settimeout(0.2)
    received = b""
    while time.monotonic() - start < limit:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            break
        if not data:
            break
        received += data
    return time.monotonic() - (start if since is None else since), received


@pytest.mark.slow
def test_sigterm_exits_0_within_the_drain_timeout_behind_a_stalled_upload(parity_files):
    process, port = start_server(parity_files, "--drain-timeout-s", "3", "--request-timeout-s", "120")
    try:
        stalled = post_head(port, 1000, b'{"te')
        time.sleep(0.5)
        start = time.monotonic()
        process.send_signal(signal.SIGTERM)
        answered, answer = closed_after(stalled, 10)
        code = process.wait(30)
        took = time.monotonic() - start
        stalled.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = process.stderr.read()
    assert code == 0, log
    assert answered < 3, log  # answered at once, not after the drain timeout
    # the drain is over at once; the interpreter's own exit (torch's teardown) takes a few more seconds on loaded cores
    assert took < 3 + 10, log
    assert "Traceback" not in log and "Cancel" not in log, log
    assert answer.startswith(b"HTTP/1.1 503 ") and answer.endswith(
        b'{"error":"the server is shutting down","status":503}'
    )


@pytest.mark.slow
def test_idle_half_sent_and_stalled_connections_are_closed_and_a_huge_body_refused(parity_files):
    process, port = start_server(
        parity_files, "--keep-alive-s", "2", "--request-timeout-s", "3", "--max-body-bytes", "100000"
    )
    try:
        opened = time.monotonic()
        idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(20)]
        half = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(10)]
        for sock in half:
            sock.sendall(b"POST /v1/embed HTTP/1.1\r\nHost: x\r\nContent-Le")
        stalled = [post_head(port, 1000, b'{"texts": ["a') for _ in range(10)]
        idle_closed = [closed_after(s, 10, opened) for s in idle]
        half_closed = [closed_after(s, 10, opened) for s in half]
        stalled_closed = [closed_after(s, 10, opened) for s in stalled]
        before = rss_mb(process.pid)
        chunk = b"a " * 2**19  # 1 MiB
        sent = 0
        huge = post_head(port, None)
        try:
            for _ in range(200):  # 200 MiB, chunked: no Content-Length to refuse it by
                huge.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        _, answer = closed_after(huge, 10)
        growth = rss_mb(process.pid) - before
        healthy = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        finally:
            if process.poll() is None:
                process.kill()
    for seconds, received in idle_closed:
        assert 1.5 < seconds < 4.5 and received == b""
    for seconds, received in half_closed + stalled_closed:
        assert 2.5 < seconds < 5.5 and received.startswith(b"HTTP/1.1 408 "), received
    assert sent < 200 * 2**20
    assert answer.startswith(b"HTTP/1.1 413 ") and b"the body passed" in answer, answer[:300]
    assert growth < 20, f"RSS grew by {growth:.1f} MB"
    assert healthy == 200


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra, message",
    [
        (["--max-wait-ms", "nan"], "error: max_wait_ms must be a number of milliseconds in [0, 60000], found nan"),
        (["--max-wait-ms", "inf"], "error: max_wait_ms must be a number of milliseconds in [0, 60000], found inf"),
        (["--port", "70000"], "error: --port must be in 1..65535, found 70000"),
        (["--drain-timeout-s", "nan"], "error: drain_timeout_s must be a number of seconds in (0, 86400], found nan"),
        (["--port", "BUSY"], "error: cannot listen on 127.0.0.1:BUSY: Address already in use"),
    ],
)
def test_bad_settings_and_a_busy_port_exit_1_before_the_model_loads(parity_files, extra, message):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = str(busy.getsockname()[1])
    options, weights = parity_files
    command = [sys.executable, "-m", "spacy_elmo", "serve", "--options", str(options), "--weights", str(weights)]
    command += [port if a == "BUSY" else a for a in extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    try:
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    finally:
        busy.close()
    lines = result.stderr.strip().splitlines()
    assert (result.returncode, lines) == (1, [message.replace("BUSY", port)]), result.stderr[-2000:]
