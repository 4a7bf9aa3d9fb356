#!/usr/bin/env python
"""Four ways to serve on K cores, at 8 and 32 clients, ``.npy`` and JSON responses, interleaved in rounds so that a
change of the machine's load hits every design alike:

- one process, one batch worker thread next to the event loop, one torch thread (the baseline);
- the same with K torch threads (each batch's products split over the cores);
- one process, K batch worker threads (``serve --workers K``), one torch thread each: K batches at once on one
  model, sharing its token cache, the queue and the event loop (and the GIL between torch operators);
- K server processes, each with its own event loop, batcher and biLM (what ``uvicorn --workers K`` or K
  replicas behind a balancer give), so that no event loop competes with a biLM for its process's GIL.

    python benchmarks/bench_serve_designs.py --text PATH/lee_background.cor --processes 2 --requests 600 --rounds 2

The K processes are K ``spacy-elmo serve`` on their own ports, the clients spread over them evenly (a kernel's
SO_REUSEPORT balancing, without its unevenness). Every server but the second design runs one torch thread per
batch worker. Also prints offline
``embed_sentences`` at one thread (batch 64, warm cache) on the same sentences, the bound of the ``.npy`` target.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import NPY, Server, cpu_header, load, make_requests, offline, sentences_of  # noqa: E402

from spacy_elmo import load_bilm  # noqa: E402


async def spread(servers: list[Server], bodies: list[bytes], clients: int, headers: dict, max_seconds: float) -> dict:
    """``clients`` clients split evenly over ``servers``, each share of the bodies to its server."""
    k = len(servers)
    shares = await asyncio.gather(
        *(load(s.url, bodies[i::k], clients // k, headers, max_seconds) for i, s in enumerate(servers))
    )
    return {"results": [r for share in shares for r in share["results"]], "wall": max(s["wall"] for s in shares)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--text", type=Path, required=True)
    parser.add_argument(
        "--processes", type=int, default=2, help="K: cores the designs use (threads, workers, processes)"
    )
    parser.add_argument("--requests", type=int, default=600, help="requests per run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", default="8,32")
    parser.add_argument("--max-seconds", type=float, default=600)
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    print("\n".join(cpu_header()))
    sentences = sentences_of(args.text)
    levels = [int(c) for c in args.clients.split(",")]
    requests = make_requests(sentences, args.requests, 0)
    bodies = [json.dumps({"sentences": r, "output": "all"}).encode() for r in requests]
    tokens = [sum(len(s) for s in r) for r in requests]
    off = offline(load_bilm(), [s for r in requests for s in r], 20_000, 2048, "fp32")
    print(f"offline embed_sentences, one thread, batch 64: {off['warm']:.0f} tokens/s (warm cache)")
    k = args.processes
    designs = {
        "1 worker": [Server([])],
        f"1 worker, {k} torch threads": [Server([], env={"OMP_NUM_THREADS": str(k)})],
        f"{k} workers": [Server([], "--workers", str(k))],
        f"{k} processes": [Server([]) for _ in range(k)],
    }
    for servers in designs.values():  # warm every server's token cache on the same sentences
        asyncio.run(spread(servers, bodies, len(servers), NPY, args.max_seconds))
    speeds: dict[tuple[str, int, str], list[float]] = {}
    print(
        "\n| round | design | clients | response | tokens/s | statuses | load average |\n|---|---|---|---|---|---|---|"
    )
    for round_ in range(args.rounds):
        for clients in levels:
            for name, servers in designs.items():
                for response, headers in ((".npy", NPY), ("JSON", {})):
                    out = asyncio.run(spread(servers, bodies, clients, headers, args.max_seconds))
                    done = sum(tokens[i] for status, _, i in out["results"] if status == 200)
                    statuses: dict[str, int] = {}
                    for status, _, _ in out["results"]:
                        statuses[str(status)] = statuses.get(str(status), 0) + 1
                    speed = done / out["wall"]
                    speeds.setdefault((name, clients, response), []).append(speed)
                    print(
                        f"| {round_ + 1} | {name} | {clients} | {response} | {speed:.0f} | {statuses} | "
                        f"{os.getloadavg()[0]:.1f} |",
                        flush=True,
                    )
    for servers in designs.values():
        for server in servers:
            server.stop()
    print("\nmedians over the rounds:")
    for (name, clients, response), values in speeds.items():
        print(f"  {name}, {clients} clients, {response}: {statistics.median(values):.0f} tokens/s")
    for name in designs:
        for clients in levels:
            npy = statistics.median(speeds[(name, clients, ".npy")])
            as_json = statistics.median(speeds[(name, clients, "JSON")])
            print(
                f"{name}, {clients} clients: JSON / .npy {as_json / npy:.2f} (target >= 0.8 at 32); "
                f".npy / offline one thread {npy / off['warm']:.2f} (target >= 0.8)"
            )
    first, *others = list(designs)
    for name in others:
        for clients in levels:
            for response in (".npy", "JSON"):
                ratio = statistics.median(speeds[(name, clients, response)]) / statistics.median(
                    speeds[(first, clients, response)]
                )
                print(f"{name} / {first}, {clients} clients, {response}: {ratio:.2f}x")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
