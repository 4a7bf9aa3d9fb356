#!/usr/bin/env python
"""Load test of ``spacy-elmo serve``: an asyncio load generator (httpx) against a real server on
127.0.0.1, real sentences (1-3 per request) at 1, 8, 32 and 128 concurrent clients.

    python benchmarks/bench_serve.py --text PATH/lee_background.cor            # bundled model, full run
    python benchmarks/bench_serve.py --model original --requests 1:100,8:300,32:1500,128:600 ...
    python benchmarks/bench_serve.py --text PATH/lee_background.cor --soak 50000 --soak-plot soak.png

Prints per run: tokens/s, p50 / p95 / p99 latency, responses by status, the batch-size histogram (from the
server's /metrics), the server's RSS; in the same run, on the same sentences: offline ``embed_sentences``
throughput in this process (batch 64, the server idle), the service with batching disabled
(``--max-batch-tokens 1 --max-wait-ms 0``), JSON instead of ``.npy`` responses, and an overload run against
a server with a small ``--max-queue``. ``--soak N``: only a memory soak instead, N one-sentence requests from 32
clients against a fresh server, its RSS and token-cache entries sampled every 1,000 answers (a CSV and a plot).
"original" is the released ELMo architecture (2x4096_512_2048cnn_2xhighway)
with random weights (as in bench_bilm.py), saved to a temporary directory and served from there.

The text: one document per line (``--text``; e.g. gensim's ``test/test_data/lee_background.cor``, from
``pip download --no-deps gensim==4.4.0``), split into sentences and word/punctuation tokens. Every loop is
bounded by its request count and by ``--max-seconds``; the load generator shares the machine's CPUs with the
server, as the header says.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import cpu_flags, load_text, rss_mb  # noqa: E402
from spacy_elmo import load_bilm  # noqa: E402
from spacy_elmo.bilm import BiLM, kernels  # noqa: E402
from spacy_elmo.hub.releases import MODELS  # noqa: E402

ORIGINAL = MODELS["original"].options  # 2x4096_512_2048cnn_2xhighway, built with random weights here
NPY = {"accept": "application/x-npy"}
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'A-Z])")
TOKEN = re.compile(r"\w+(?:[-'.]\w+)*|[^\w\s]")


def sentences_of(path: Path, lo: int = 3, hi: int = 60) -> list[list[str]]:
    """Sentences of ``lo`` to ``hi`` tokens from a text with one document per line."""
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        for sentence in SENTENCE_END.split(line.strip()):
            tokens = TOKEN.findall(sentence)
            if lo <= len(tokens) <= hi:
                out.append(tokens)
    return out


def make_requests(sentences: list[list[str]], n: int, seed: int) -> list[list[list[str]]]:
    rng = random.Random(seed)
    return [rng.sample(sentences, rng.randint(1, 3)) for _ in range(n)]


def cpu_header() -> list[str]:
    top = subprocess.run(["ps", "-eo", "pcpu,rss,comm", "--sort=-pcpu"], capture_output=True, text=True).stdout
    return [
        f"CPU: {kernels.cpu_name()} | {os.cpu_count()} logical CPUs | flags: {cpu_flags()} | "
        f"capability {torch.backends.cpu.get_cpu_capability()} | torch {torch.__version__} "
        f"({torch.get_num_threads()} threads) | Python {platform.python_version()}",
        f"load average at start: {load_text()}; busiest processes:",
        *("    " + line for line in top.splitlines()[1:6]),
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m spacy_elmo serve`` on 127.0.0.1 in a subprocess (its log in a temporary file; ``env``: variables
    set for it on top of this process's)."""

    def __init__(self, model_args: list[str], *extra: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
        command = [sys.executable, "-m", "spacy_elmo", "serve", *model_args, "--port", str(self.port), *extra]
        self.process = subprocess.Popen(
            command,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited: {Path(self.log.name).read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/ready", timeout=2, trust_env=False).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise SystemExit("the server was not ready within 300 s")

    def rss(self) -> float:
        return rss_mb(self.process.pid)

    def metrics(self) -> dict[str, float]:
        text = httpx.get(self.url + "/metrics", timeout=10, trust_env=False).text
        return {
            s.name + json.dumps(s.labels, sort_keys=True): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(60)
        os.unlink(self.log.name)
        return code


async def load(url: str, bodies: list[bytes], clients: int, headers: dict, max_seconds: float) -> dict:
    """Send ``bodies`` from ``clients`` concurrent clients (each sends its next request when the last is answered)."""
    results: list[tuple[object, float]] = []
    indices = iter(range(len(bodies)))
    deadline = time.monotonic() + max_seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client_loop(client: httpx.AsyncClient) -> None:
        for i in indices:
            if time.monotonic() > deadline:
                return
            start = time.perf_counter()
            try:
                response = await client.post("/v1/embed", content=bodies[i], headers=headers)
                status: object = response.status_code
                if status == 200 and not response.content:
                    status = "empty body"
            except httpx.HTTPError as error:
                status = type(error).__name__
            results.append((status, time.perf_counter() - start, i))

    headers = {"content-type": "application/json", **headers}
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120, trust_env=False) as client:
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
        wall = time.perf_counter() - start
    return {"results": results, "wall": wall}


def percentiles(values: list[float]) -> str:
    if not values:
        return "-"
    q = np.percentile(np.array(values) * 1000, [50, 95, 99])
    return " / ".join(f"{x:.0f}" for x in q)


def batch_histogram(before: dict, after: dict) -> tuple[str, float]:
    """Requests per batch between two /metrics scrapes: bucket counts and the mean."""
    name = "spacy_elmo_batch_requests_bucket"
    buckets = sorted(
        ((json.loads(k[len(name) :])["le"], after[k] - before.get(k, 0.0)) for k in after if k.startswith(name)),
        key=lambda item: float(item[0]),
    )
    counts, previous = [], 0.0
    for le, cumulative in buckets:
        if cumulative - previous:
            counts.append(f"<={le.replace('.0', '')}:{cumulative - previous:.0f}")
        previous = cumulative
    n = after["spacy_elmo_batch_requests_count{}"] - before.get("spacy_elmo_batch_requests_count{}", 0.0)
    total = after["spacy_elmo_batch_requests_sum{}"] - before.get("spacy_elmo_batch_requests_sum{}", 0.0)
    return " ".join(counts), total / n if n else 0.0


def run_level(server: Server, label: str, requests: list, clients: int, headers: dict, args) -> dict:
    bodies = [json.dumps({"sentences": r, "output": args.output}).encode() for r in requests]
    tokens = [sum(len(s) for s in r) for r in requests]
    before, rss_before = server.metrics(), server.rss()
    outcome = asyncio.run(load(server.url, bodies, clients, headers, args.max_seconds))
    after, rss_after = server.metrics(), server.rss()
    statuses: dict[str, int] = {}
    for status, _, _ in outcome["results"]:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    ok = [(lat, i) for status, lat, i in outcome["results"] if status == 200]
    rejected = [lat for status, lat, _ in outcome["results"] if status in (429, 503)]
    done_tokens = sum(tokens[i] for _, i in ok)
    histogram, mean_batch = batch_histogram(before, after)
    prefix = "spacy_elmo_requests_total"
    server_counts = {
        json.loads(k[len(prefix) :])["status"]: after[k] - before.get(k, 0.0)
        for k in after
        if k.startswith(prefix) and json.loads(k[len(prefix) :])["endpoint"] == "embed"
    }
    row = {
        "label": label,
        "clients": clients,
        "requests": len(outcome["results"]),
        "tokens_per_s": done_tokens / outcome["wall"],
        "latency_ms": percentiles([lat for lat, _ in ok]),
        "p99_s": float(np.percentile([lat for lat, _ in ok], 99)) if ok else float("nan"),
        "rejected_ms": percentiles(rejected),
        "statuses": statuses,
        "mean_batch": mean_batch,
        "histogram": histogram,
        "rss": (rss_before, rss_after),
        "wall": outcome["wall"],
    }
    print(
        f"| {label} | {clients} | {row['requests']} | {row['tokens_per_s']:.0f} | {row['latency_ms']} | "
        f"{' '.join(f'{k}:{v}' for k, v in sorted(statuses.items()))} | {row['rejected_ms']} | {mean_batch:.1f} | "
        f"{rss_before:.0f} -> {rss_after:.0f} | {outcome['wall']:.0f} |",
        flush=True,
    )
    answered = " ".join(f"{k}:{v:.0f}" for k, v in sorted(server_counts.items()) if v)
    print(
        f"|   batch sizes (requests per batch): {histogram}; the server's count of its answers: {answered} |",
        flush=True,
    )
    return row


def offline(bilm: BiLM, sentences: list[list[str]], max_tokens: int, batch_tokens: int, precision: str) -> dict:
    """``embed_sentences`` at batch 64 on the first ``max_tokens`` tokens of ``sentences``: tokens/s with the
    token cache empty (cold) and on a second pass (warm, as in a long-running server); and the seconds of one
    full batch (``batch_tokens`` tokens in one call)."""
    subset, total = [], 0
    for s in sentences:
        if total >= max_tokens:
            break
        subset.append(s)
        total += len(s)
    bilm.embed_sentences(subset[:64], precision=precision)  # warm-up
    bilm.set_token_cache_size(bilm.token_cache_size)  # empty cache, as the server starts
    speeds = []
    for _ in ("cold", "warm"):
        start = time.perf_counter()
        bilm.embed_sentences(subset, batch_size=64, precision=precision)
        speeds.append(total / (time.perf_counter() - start))
    full, count = [], 0
    for s in sentences:
        if count + len(s) > batch_tokens:
            break
        full.append(s)
        count += len(s)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        bilm.embed_sentences(full, batch_size=len(full), precision=precision)
        times.append(time.perf_counter() - start)
    return {"cold": speeds[0], "warm": speeds[1], "tokens": total, "full_s": statistics.median(times), "full": count}


SOAK_EVERY = 1000


async def soak_load(server: Server, bodies: list[bytes], clients: int, headers: dict, max_seconds: float) -> dict:
    """``load`` that also samples the server's RSS (``/proc``) and token-cache entries (``/metrics``) every
    ``SOAK_EVERY`` answers, and once before the first request."""
    statuses: dict[str, int] = {}
    samples: list[tuple[int, float, float, float]] = []  # (answers, seconds, RSS MB, token cache entries)
    indices = iter(range(len(bodies)))
    deadline = time.monotonic() + max_seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    start = time.perf_counter()
    answered = 0

    async def sample(scraper: httpx.AsyncClient) -> None:
        text = (await scraper.get("/metrics")).text
        entries = next(
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "spacy_elmo_token_cache_entries"
        )
        samples.append((answered, time.perf_counter() - start, server.rss(), entries))

    async def client_loop(client: httpx.AsyncClient, scraper: httpx.AsyncClient) -> None:
        nonlocal answered
        for i in indices:
            if time.monotonic() > deadline:
                return
            try:
                response = await client.post("/v1/embed", content=bodies[i], headers=headers)
                status = str(response.status_code) if response.content else "empty body"
            except httpx.HTTPError as error:
                status = type(error).__name__
            statuses[status] = statuses.get(status, 0) + 1
            answered += 1
            if answered % SOAK_EVERY == 0:
                await sample(scraper)

    headers = {"content-type": "application/json", **headers}
    async with (
        httpx.AsyncClient(base_url=server.url, limits=limits, timeout=120, trust_env=False) as client,
        httpx.AsyncClient(base_url=server.url, timeout=30, trust_env=False) as scraper,
    ):
        await sample(scraper)
        await asyncio.gather(*(client_loop(client, scraper) for _ in range(clients)))
    return {"statuses": statuses, "samples": samples, "wall": time.perf_counter() - start}


def soak(sentences: list[list[str]], model_args: list[str], limits: list[str], args) -> None:
    """``args.soak`` one-sentence ``.npy`` requests from 32 clients against a fresh server; prints the RSS curve and
    the growth between answer 5,000 and the end, writes ``--soak-csv`` and ``--soak-plot``."""
    rng = random.Random(args.seed)
    requests = [[rng.choice(sentences)] for _ in range(args.soak)]
    bodies = [json.dumps({"sentences": r, "output": args.output}).encode() for r in requests]
    server = Server(model_args, *limits)
    outcome = asyncio.run(soak_load(server, bodies, 32, NPY, args.max_seconds))
    print(f"server exit status after SIGTERM: {server.stop()}")
    samples = outcome["samples"]
    print("\n| answers | seconds | server RSS MB | token cache entries |\n| ---: | ---: | ---: | ---: |")
    for answered, seconds, rss, entries in samples:
        print(f"| {answered} | {seconds:.0f} | {rss:.1f} | {entries:.0f} |")
    answered = sum(outcome["statuses"].values())
    tokens = sum(len(r[0]) for r in requests[:answered])
    print(
        f"\n{answered} answers in {outcome['wall']:.0f} s ({tokens / outcome['wall']:.0f} tokens/s); "
        f"responses by status: {outcome['statuses']}"
    )
    after = [s for s in samples if s[0] >= 5000]
    if after:
        growth = samples[-1][2] - after[0][2]
        print(
            f"server RSS at answer {after[0][0]}: {after[0][2]:.1f} MB, at the end ({samples[-1][0]}): "
            f"{samples[-1][2]:.1f} MB, growth {growth:+.1f} MB (target <= 10); highest {max(s[2] for s in samples):.1f}"
        )
    failed = {k: v for k, v in outcome["statuses"].items() if k not in ("200", "503", "429")}
    print(f"failed admitted requests (answers other than 200 / 503 / 429): {sum(failed.values())} {failed}")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.soak_csv:
        rows = ["answers,seconds,rss_mb,token_cache_entries"]
        rows += [f"{a},{t:.2f},{r:.2f},{e:.0f}" for a, t, r, e in samples]
        args.soak_csv.write_text("\n".join(rows) + "\n")
    if args.soak_plot:
        plot_soak(samples, args.soak_plot)


def plot_soak(samples: list[tuple[int, float, float, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    answers = [s[0] for s in samples]
    figure, rss_axis = plt.subplots(figsize=(8, 4), dpi=110)
    rss_axis.plot(answers, [s[2] for s in samples], marker=".", color="tab:blue", label="server RSS (MB)")
    rss_axis.set_xlabel("requests answered")
    rss_axis.set_ylabel("server RSS (MB)", color="tab:blue")
    rss_axis.grid(alpha=0.3)
    cache_axis = rss_axis.twinx()
    cache_axis.plot(answers, [s[3] for s in samples], color="tab:orange", label="token cache entries")
    cache_axis.set_ylabel("token cache entries", color="tab:orange")
    figure.legend(loc="lower right", bbox_to_anchor=(0.88, 0.15))
    rss_axis.set_title("spacy-elmo serve: memory over a soak (32 clients, one sentence per request)")
    figure.tight_layout()
    figure.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--text", type=Path, required=True, help="one document per line (e.g. lee_background.cor)")
    parser.add_argument("--model", default="default", choices=("default", "original"))
    parser.add_argument("--requests", default="1:400,8:3000,32:20000,128:4000", help="clients:requests,...")
    parser.add_argument("--nobatch-requests", type=int, default=2000, help="at 32 clients, batching disabled")
    parser.add_argument("--json-requests", type=int, default=2000, help="at 32 clients, JSON responses")
    parser.add_argument("--overload-requests", type=int, default=4000, help="at 128 clients, --max-queue 16")
    parser.add_argument("--offline-tokens", type=int, default=100_000, help="tokens embedded offline at most")
    parser.add_argument("--max-batch-tokens", type=int, default=2048)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--output", default="all", help="all, top or average")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--max-seconds", type=float, default=1200, help="a run stops sending after this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads, here and in the server (OMP_NUM_THREADS)"
    )
    parser.add_argument("--workers", type=int, default=1, help="the server's --workers (batches at once)")
    parser.add_argument(
        "--warm-pass",
        action="store_true",
        help="send the longest run's requests once, unmeasured, before the runs: the server's token cache then "
        "holds what the offline warm pass's does",
    )
    parser.add_argument("--soak", type=int, default=0, help="only a memory soak of this many requests (32 clients)")
    parser.add_argument("--soak-csv", type=Path, help="the soak's samples as CSV")
    parser.add_argument("--soak-plot", type=Path, help="the soak's RSS curve as a PNG (needs matplotlib)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)

    print("\n".join(cpu_header()))
    sentences = sentences_of(args.text)
    levels = [tuple(int(x) for x in item.split(":")) for item in args.requests.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        if args.model == "original":
            torch.manual_seed(args.seed)
            BiLM(ORIGINAL).eval().save(tmp)
            model_args = ["--options", f"{tmp}/options.json", "--weights", f"{tmp}/weights.hdf5"]
            bilm = load_bilm(f"{tmp}/options.json", f"{tmp}/weights.hdf5")
        else:
            model_args, bilm = [], load_bilm()
        params = sum(p.numel() for p in bilm.parameters()) / 1e6
        if args.soak:
            del bilm
            print(f"model: {args.model} ({params:.1f}M parameters); soak of {args.soak} requests, 32 clients")
            limits = ["--max-batch-tokens", str(args.max_batch_tokens), "--max-wait-ms", str(args.max_wait_ms)]
            soak(sentences, model_args, limits + ["--precision", args.precision, "--workers", str(args.workers)], args)
            return
        print(
            f"model: {args.model} ({params:.1f}M parameters, {bilm.n_layers} layers x {bilm.dim}); "
            f"text: {args.text.name}, {len(sentences)} sentences; output {args.output}; precision {args.precision}; "
            f"--max-batch-tokens {args.max_batch_tokens} --max-wait-ms {args.max_wait_ms} --workers {args.workers}"
        )
        longest = max(levels, key=lambda level: level[1])
        main_requests = make_requests(sentences, longest[1], args.seed)
        off = offline(
            bilm, [s for r in main_requests for s in r], args.offline_tokens, args.max_batch_tokens, args.precision
        )
        print(
            f"offline embed_sentences (batch 64, this process, server not started) over the first {off['tokens']} "
            f"tokens of the longest run: {off['cold']:.0f} tokens/s with the token cache empty, {off['warm']:.0f} "
            f"on a second pass (cache warm); one full batch ({off['full']} tokens): {off['full_s'] * 1000:.0f} ms"
        )
        del bilm
        limits = ["--max-batch-tokens", str(args.max_batch_tokens), "--max-wait-ms", str(args.max_wait_ms)]
        limits += ["--precision", args.precision, "--workers", str(args.workers)]
        print(
            "\n| run | clients | requests | tokens/s | p50 / p95 / p99 ms | responses by status | "
            "rejections p50 / p95 / p99 ms | requests per batch | server RSS MB | s |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        rows = {}
        server = Server(model_args, *limits)
        if args.warm_pass:
            bodies = [json.dumps({"sentences": r, "output": args.output}).encode() for r in main_requests]
            warm = asyncio.run(load(server.url, bodies, 32, NPY, args.max_seconds))
            print(f"| warm pass (not measured) | 32 | {len(warm['results'])} | | | | | | | {warm['wall']:.0f} |")
        for clients, n in levels:
            reqs = main_requests if (clients, n) == longest else make_requests(sentences, n, args.seed + clients)
            rows[clients] = run_level(server, "batching, .npy", reqs, clients, NPY, args)
        if args.json_requests:
            rows["json"] = run_level(server, "batching, JSON", main_requests[: args.json_requests], 32, {}, args)
        print(f"server exit status after SIGTERM: {server.stop()}")
        if args.nobatch_requests:
            server = Server(model_args, *limits[4:], "--max-batch-tokens", "1", "--max-wait-ms", "0")
            rows["nobatch"] = run_level(
                server, "no batching, .npy", main_requests[: args.nobatch_requests], 32, NPY, args
            )
            print(f"server exit status after SIGTERM: {server.stop()}")
        if args.overload_requests:
            server = Server(model_args, *limits, "--max-queue", "16")
            rows["overload"] = run_level(
                server, "overload (--max-queue 16)", main_requests[: args.overload_requests], 128, NPY, args
            )
            print(f"server exit status after SIGTERM: {server.stop()}")

    print(f"\nload average at end: {load_text()}")
    if 32 in rows:
        r32 = rows[32]
        ratios = f"{r32['tokens_per_s'] / off['warm']:.2f} (warm cache), {r32['tokens_per_s'] / off['cold']:.2f} (cold)"
        print(f"32 clients / offline tokens/s: {ratios} (target >= 0.80)")
        bound = 3 * (off["full_s"] + args.max_wait_ms / 1000)
        print(
            f"p99 at 32 clients: {r32['p99_s'] * 1000:.0f} ms; 3 x (full batch + max wait) = {bound * 1000:.0f} ms "
            f"(ratio {r32['p99_s'] / bound:.2f}, target <= 1)"
        )
        growth = r32["rss"][1] - r32["rss"][0]
        print(f"server RSS growth over the {r32['requests']} requests at 32 clients: {growth:+.0f} MB (target <= 50)")
    if "nobatch" in rows and 32 in rows:
        print(
            f"batching / no batching at 32 clients: {rows[32]['tokens_per_s'] / rows['nobatch']['tokens_per_s']:.2f}x"
        )
    failed = {
        label: {k: v for k, v in row["statuses"].items() if k not in ("200", "503", "429")}
        for label, row in rows.items()
    }
    print(f"responses other than 200 / 503 / 429: {failed}")


if __name__ == "__main__":
    main()
