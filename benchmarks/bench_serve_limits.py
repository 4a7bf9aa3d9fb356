"""The server against hostile clients, measured: RSS growth while a 200 MB body is sent (chunked, so only the
streamed limit can stop it, and with its Content-Length), when idle / half-sent / stalled connections are closed,
and how long SIGTERM takes with a stalled upload open. Starts ``spacy-elmo serve`` on 127.0.0.1 with the bundled
model and the default limits (unless flags say otherwise).

    python benchmarks/bench_serve_limits.py [--keep-alive-s 75] [--request-timeout-s 30] [--drain-timeout-s 30]
"""

from __future__ import annotations

import argparse
import math
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
MIB = 2**20


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def head(port: int, length: int | None) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    size = f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
    sock.sendall(f"POST /v1/embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{size}\r\n".encode())
    return sock


def until_closed(sock: socket.socket, limit: float) -> tuple[float, bytes]:
    """The moment (monotonic) the server closed ``sock``, waiting ``limit`` s at most, and what it sent."""
    sock.settimeout(0.1)
    received, start = b"", time.monotonic()
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
    return time.monotonic(), received


def all_closed(socks: list[socket.socket], limit: float) -> list[tuple[float, bytes]]:
    """For each of ``socks``, watched together: the moment (monotonic) the server closed it (waiting ``limit`` s at
    most) and what it sent."""
    selector = selectors.DefaultSelector()
    out: list[tuple[float, bytes]] = [(math.inf, b"")] * len(socks)
    for i, sock in enumerate(socks):
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, i)
    start, open_ = time.monotonic(), len(socks)
    while open_ and time.monotonic() - start < limit:
        for key, _ in selector.select(timeout=0.1):
            i = key.data
            try:
                data = socks[i].recv(65536)
            except (ConnectionResetError, BlockingIOError):
                data = b""
            if data:
                out[i] = (out[i][0], out[i][1] + data)
                continue
            out[i] = (time.monotonic(), out[i][1])
            selector.unregister(socks[i])
            open_ -= 1
    return out


def send_body(port: int, megabytes: int, declared: bool) -> tuple[int, bytes]:
    """Send ``megabytes`` of ``{"texts": ["a a a ...`` (chunked, or with its Content-Length): the bytes sent before
    the server stopped reading, and its answer."""
    chunk = b"a " * (MIB // 2)
    sock = head(port, megabytes * MIB + 12 if declared else None)
    sent = 0
    try:
        sock.sendall(b'{"texts": ["' if declared else b"c\r\n" + b'{"texts": ["' + b"\r\n")
        for _ in range(megabytes):
            sock.sendall(chunk if declared else b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    _, answer = until_closed(sock, 30)
    sock.close()
    return sent, answer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keep-alive-s", type=float, default=None)
    parser.add_argument("--request-timeout-s", type=float, default=None)
    parser.add_argument("--drain-timeout-s", type=float, default=None)
    parser.add_argument("--megabytes", type=int, default=200)
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "spacy_elmo", "serve", "--port", str(port)]
    for name in ("keep_alive_s", "request_timeout_s", "drain_timeout_s"):
        if getattr(args, name) is not None:
            command += ["--" + name.replace("_", "-"), str(getattr(args, name))]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        base = rss_mb(server.pid)
        print(f"server ready: RSS {base:.1f} MB")
        for declared in (False, True):
            before = rss_mb(server.pid)
            start = time.monotonic()
            sent, answer = send_body(port, args.megabytes, declared)
            after = rss_mb(server.pid)
            line = answer.split(b"\r\n", 1)[0].decode(errors="replace")
            error = answer.rsplit(b"\r\n\r\n", 1)[-1][:120].decode(errors="replace")
            how = "with Content-Length" if declared else "chunked"
            print(
                f"{args.megabytes} MB body {how}: {sent / MIB:.1f} MB sent before the server stopped it, "
                f"{time.monotonic() - start:.2f} s, RSS {before:.1f} -> {after:.1f} MB ({after - before:+.1f} MB); "
                f"answer: {line} {error}"
            )
        opened = time.monotonic()
        idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(100)]
        half = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(50)]
        for sock in half:
            sock.sendall(b"POST /v1/embed HTTP/1.1\r\nHost: x\r\nContent-Le")
        stalled = [head(port, 1000) for _ in range(50)]
        for sock in stalled:
            sock.sendall(b'{"texts": ["a')
        results = all_closed(idle + half + stalled, 200.0)
        groups = (
            ("idle", idle, results[:100]),
            ("half-header", half, results[100:150]),
            ("stalled", stalled, results[150:]),
        )
        for name, socks, closed in groups:
            times = sorted(t - opened for t, _ in closed)
            first = {r[:12].decode(errors="replace") or "(nothing)" for _, r in closed}
            print(
                f"{len(socks)} {name} connections closed after {times[0]:.1f}-{times[-1]:.1f} s; "
                f"they were sent: {', '.join(sorted(first))}"
            )
            for sock in socks:
                sock.close()
        stall = head(port, 1000)
        stall.sendall(b'{"te')
        time.sleep(0.5)
        start = time.monotonic()
        server.send_signal(signal.SIGTERM)
        code = server.wait(120)
        took = time.monotonic() - start
        _, answer = until_closed(stall, 5)
        status = answer.split(b"\r\n", 1)[0].decode(errors="replace")
        print(f"SIGTERM with a stalled upload open: exit {code} after {took:.2f} s; the stalled client got: {status}")
    finally:
        if server.poll() is None:
            server.kill()


if __name__ == "__main__":
    main()
