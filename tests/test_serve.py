"""The HTTP service (``spacy-elmo serve``): endpoints in process, batching, overload, a real uvicorn, Ray Serve."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette", reason='needs the serve extra: pip install "spacy-elmo[serve]"')
httpx = pytest.importorskip("httpx")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from spacy_elmo._compat import has_ray  # noqa: E402
from spacy_elmo.bilm import kernels  # noqa: E402
from spacy_elmo.serve import create_app, playground  # noqa: E402
from spacy_elmo.serve.batcher import Batcher  # noqa: E402
from spacy_elmo.serve.tokenizers import make_tokenizer  # noqa: E402

from .serving import embed_scope, free_port, metric_samples, serving, values, wait_ready  # noqa: E402

# A request's vectors vs ``embed_sentences`` of the same sentences in other batches: products over other row counts
# round differently, within 1e-5 through oneDNN's packed kernels and up to ~3e-5 with PyTorch's generic ones
# (measured: 2.5e-5 with SPACY_ELMO_KERNELS=plain).
BATCHING_ATOL = 5e-5 if kernels.mode() == "plain" else 1e-5

ROOT = Path(__file__).resolve().parents[1]
NPY = {"accept": "application/x-npy"}


def from_npy(response) -> list[np.ndarray]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-npy"
    array = np.load(io.BytesIO(response.content), allow_pickle=False)
    lengths = [int(n) for n in response.headers["x-sentence-lengths"].split(",")]
    return np.split(array, np.cumsum(lengths)[:-1], axis=-2)


def requests_of(sentences: list[list[str]], n: int) -> list[list[list[str]]]:
    """``n`` requests of 1-3 sentences each, cycling through ``sentences``."""
    out, k = [], 0
    for i in range(n):
        size = 1 + i % 3
        out.append([sentences[(k + j) % len(sentences)] for j in range(size)])
        k += size
    return out


@pytest.mark.parametrize("workers", [1, 2])
def test_concurrent_requests_get_their_own_vectors_in_order(parity_bilm, parity_sentences, workers):
    app = create_app(parity_bilm, max_wait_ms=50, max_batch_tokens=4096, workers=workers)
    requests = requests_of(parity_sentences, 30)

    async def main():
        async with serving(app) as client:
            posts = [client.post("/v1/embed", json={"sentences": r}) for r in requests]
            responses = await asyncio.gather(*posts)
            return responses, (await client.get("/metrics")).text

    responses, metrics = asyncio.run(main())
    for request, response in zip(requests, responses):
        got = values(response)
        expected = parity_bilm.embed_sentences(request)
        assert [e["tokens"] for e in response.json()["embeddings"]] == request
        assert [g.shape for g in got] == [e.shape for e in expected]
        assert max(float(np.abs(g - e).max()) for g, e in zip(got, expected)) <= BATCHING_ATOL
    samples = metric_samples(metrics)
    batches = samples[("spacy_elmo_batch_requests_count", ())]
    assert samples[("spacy_elmo_batch_requests_sum", ())] == 30
    assert batches < 30  # requests were batched together
    tokens = sum(len(s) for r in requests for s in r)
    assert samples[("spacy_elmo_tokens_total", ())] == tokens  # the warm-up is not counted
    assert samples[("spacy_elmo_requests_total", (("endpoint", "embed"), ("status", "200")))] == 30
    assert app.state.service.extra_info["serving"]["workers"] == workers


def test_a_batch_is_recorded_before_its_answers_are_handed_back():
    recorded = []

    def record(requests, sentences, tokens, seconds):
        time.sleep(0.2)  # a slow recorder: an answer handed back first would be read before this returns
        recorded.append((requests, sentences, tokens))

    batcher = Batcher(
        lambda sentences: [np.zeros((3, len(s), 2), np.float32) for s in sentences],
        max_batch_tokens=64,
        max_wait_ms=0,
        max_queue=4,
        on_batch=record,
    )

    async def main():
        rows = await batcher.submit([["a", "b"], ["c"]])
        return [r.shape for r in rows], list(recorded)

    shapes, seen = asyncio.run(main())
    batcher.close(5)
    assert shapes == [(3, 2, 2), (3, 1, 2)]
    assert seen == [(1, 2, 3)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's")
def test_the_heap_trimmer_returns_freed_pages_and_keeps_its_interval():
    from spacy_elmo.serve.heap import HeapTrimmer

    def rss_mb() -> float:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    large = bytearray(8 * 2**20)  # freeing a block this large makes glibc serve 4 MB blocks from its heap after
    del large
    blocks = [bytearray(4 * 2**20) for _ in range(50)]
    last = blocks[-1]  # held: the 49 freed blocks below it are not at the heap's top, so free() keeps them
    del blocks
    before = rss_mb()
    trimmer = HeapTrimmer(every_s=0.0)
    assert trimmer.available and trimmer.after_batch() and trimmer.trims == 1
    assert before - rss_mb() >= 150  # 196 MB measured; without the trim the pages stay
    assert len(last) == 4 * 2**20
    patient = HeapTrimmer(every_s=3600.0)
    assert not patient.after_batch() and patient.trims == 0


def test_output_layouts_json_and_npy(parity_bilm, parity_sentences):
    app = create_app(parity_bilm)
    sentences = parity_sentences[:3]
    layers = parity_bilm.embed_sentences(sentences)
    weights = [0.5, 0.25, 0.25]
    expected = {
        "all": layers,
        "top": [a[-1] for a in layers],
        "average": [a.mean(axis=0) for a in layers],
        "weights": [np.tensordot(np.array(weights, dtype=np.float32), a, axes=1) for a in layers],
    }

    async def main():
        async with serving(app) as client:
            out = {}
            for name in expected:
                body = {"sentences": sentences, "output": weights if name == "weights" else name}
                out[name] = (
                    await client.post("/v1/embed", json=body),
                    await client.post("/v1/embed", json=body, headers=NPY),
                )
            return out

    for name, (as_json, as_npy) in asyncio.run(main()).items():
        assert as_json.json()["output"] == name and as_npy.headers["x-output"] == name
        for got in (values(as_json), from_npy(as_npy)):
            assert [g.shape for g in got] == [e.shape for e in expected[name]]
            assert max(float(np.abs(g - e).max()) for g, e in zip(got, expected[name])) <= BATCHING_ATOL


def test_json_values_parse_back_to_the_very_float32_of_the_npy_response(parity_bilm, parity_sentences):
    """orjson writes float32 shortest-exact: parsed as float32 the JSON numbers are the ``.npy`` bits, and the body
    is smaller than Python's float64 repr of the same values."""
    app = create_app(parity_bilm)
    body = {"sentences": parity_sentences[:3], "output": "all"}

    async def main():
        async with serving(app) as client:
            return await client.post("/v1/embed", json=body), await client.post("/v1/embed", json=body, headers=NPY)

    as_json, as_npy = asyncio.run(main())
    assert as_json.headers["content-type"] == "application/json"
    for got, exact in zip(values(as_json), from_npy(as_npy)):
        assert got.dtype == np.float32 and np.array_equal(got, exact)
    as_float64_repr = json.dumps([a.tolist() for a in from_npy(as_npy)], separators=(",", ":"))
    assert len(as_json.content) < 0.75 * len(as_float64_repr)


def test_texts_are_split_on_whitespace_or_by_a_spacy_tokenizer(parity_bilm):
    plain = create_app(parity_bilm)
    spacy_app = create_app(parity_bilm, tokenizer=make_tokenizer("en"))
    body = {"texts": ["Hello, world!", "  two\twords \n"]}

    async def main(app):
        async with serving(app) as client:
            return await client.post("/v1/embed", json=body)

    assert [e["tokens"] for e in asyncio.run(main(plain)).json()["embeddings"]] == [
        ["Hello,", "world!"],
        ["two", "words"],
    ]
    response = asyncio.run(main(spacy_app))
    assert [e["tokens"] for e in response.json()["embeddings"]] == [["Hello", ",", "world", "!"], ["two", "words"]]
    expected = parity_bilm.embed_sentences([["Hello", ",", "world", "!"], ["two", "words"]])
    assert max(float(np.abs(g - e).max()) for g, e in zip(values(response), expected)) <= BATCHING_ATOL
    with pytest.raises(ValueError, match="tokenizer 'zz9' is neither 'whitespace', a spaCy language code"):
        make_tokenizer("zz9")


@pytest.mark.parametrize("mix", ["average", "top", [0.2, 0.3, 0.5]])
def test_similarity_equals_doc_similarity_of_the_component(parity_bilm, parity_files, mix):
    spacy = pytest.importorskip("spacy")
    from spacy.tokens import Doc

    options, weights = parity_files
    nlp = spacy.blank("en")
    nlp.add_pipe("elmo", config={"options_file": str(options), "weight_file": str(weights), "mix": mix})
    first, second = "The bank of the river was muddy .", "She sat on the bank by the water"
    docs = [nlp.get_pipe("elmo")(Doc(nlp.vocab, words=text.split())) for text in (first, second)]
    expected = docs[0].similarity(docs[1])
    app = create_app(parity_bilm)

    async def main():
        async with serving(app) as client:
            body = {"texts": [first, second], **({} if mix == "average" else {"mix": mix})}
            return await client.post("/v1/similarity", json=body)

    response = asyncio.run(main())
    assert response.status_code == 200, response.text
    assert response.json()["tokens"] == [first.split(), second.split()]
    assert abs(response.json()["similarity"] - expected) <= BATCHING_ATOL
    assert 0.0 < expected < 0.999


BAD_INPUTS = [
    ("/v1/embed", b"{not json", 400, "the body is not valid JSON: unexpected character: line 1 column 2 (char 1)"),
    ("/v1/embed", b"\xff\xfe", 400, "the body is not valid JSON: str is not valid UTF-8"),
    ("/v1/embed", b'{"texts": ["a"], "output": [NaN, 1, 1]}', 400, "the body is not valid JSON: unexpected character"),
    ("/v1/embed", [["a"]], 400, "the body must be a JSON object, found array"),
    ("/v1/embed", {}, 400, "give either 'sentences' (token lists) or 'texts' (strings), exactly one of them"),
    ("/v1/embed", {"sentences": [["a"]], "texts": ["a"]}, 400, "give either 'sentences'"),
    ("/v1/embed", {"sentences": [["a"]], "layers": 2}, 400, "unknown field 'layers'; expected 'sentences', 'texts'"),
    ("/v1/embed", {"sentences": "a b"}, 400, "sentences must be a list, found string"),
    ("/v1/embed", {"sentences": []}, 400, "sentences is empty: give at least one"),
    ("/v1/embed", {"sentences": [[]]}, 400, "sentences[0] is empty: give at least one token"),
    (
        "/v1/embed",
        {"sentences": [["a"], "b c"]},
        400,
        "sentences[1] must be a list of token strings, found string: split it into tokens, or send it in 'texts'",
    ),
    ("/v1/embed", {"sentences": [["a", 3]]}, 400, "sentences[0][1] must be a string token, found number"),
    ("/v1/embed", {"sentences": [["a", None]]}, 400, "sentences[0][1] must be a string token, found null"),
    ("/v1/embed", {"sentences": [["a", " "]]}, 400, "sentences[0][1] is an empty or whitespace-only token"),
    ("/v1/embed", {"texts": ["a", 5]}, 400, "texts[1] must be a string, found number"),
    ("/v1/embed", {"texts": ["a", "  "]}, 400, "texts[1] has no tokens"),
    ("/v1/embed", {"texts": []}, 400, "texts is empty: give at least one"),
    (
        "/v1/embed",
        {"texts": ["a"], "output": "bottom"},
        400,
        "output must be one of ('all', 'top', 'average') or a list of per-layer weights, found 'bottom'",
    ),
    ("/v1/embed", {"texts": ["a"], "output": 1}, 400, "output must be one of ('all', 'top', 'average')"),
    ("/v1/embed", {"texts": ["a"], "output": [1, 2]}, 400, "output has 2 weights, but the model has 3 layers"),
    ("/v1/embed", {"texts": ["a"], "output": [1, "x", 2]}, 400, "output[1] must be a finite number, found string"),
    ("/v1/embed", {"texts": ["a"], "output": [1, True, 2]}, 400, "output[1] must be a finite number, found boolean"),
    ("/v1/embed", {"texts": ["w " * 20]}, 413, "the request has 20 tokens, more than the limit of 16"),
    ("/v1/similarity", {"texts": ["a b"]}, 400, "texts must hold exactly 2 items, found 1"),
    ("/v1/similarity", {"sentences": [["a"], ["b"], ["c"]]}, 400, "sentences must hold exactly 2 items, found 3"),
    ("/v1/similarity", {"texts": ["a", "b"], "mix": 3}, 400, "mix=3 is not a layer of the model, which has 3 layers"),
    ("/v1/similarity", {"texts": ["a", "b"], "mix": "mean"}, 400, "mix must be 'average', 'top', a layer index"),
    ("/v1/similarity", {"texts": ["a", "b"], "mix": True}, 400, "mix must be 'average', 'top', a layer index"),
    ("/v1/similarity", {"texts": ["a", "b"], "output": "top"}, 400, "unknown field 'output'"),
    ("/v1/similarity", {"texts": ["w " * 9, "w " * 8]}, 413, "the request has 17 tokens, more than the limit of 16"),
]


def test_every_bad_input_gets_its_status_and_a_message_naming_the_field(parity_bilm):
    app = create_app(parity_bilm, max_request_tokens=16)

    async def main():
        async with serving(app) as client:
            out = []
            for path, body, _, _ in BAD_INPUTS:
                content = body if isinstance(body, bytes) else json.dumps(body).encode()
                out.append(await client.post(path, content=content))
            out.append(await client.get("/v1/embed"))
            out.append(await client.get("/v2/embed"))
            out.append(await client.post("/v1/embed", json={"texts": ["still", "fine"]}))
            return out, (await client.get("/metrics")).text

    responses, metrics = asyncio.run(main())
    for (_, body, status, message), response in zip(BAD_INPUTS, responses):
        assert (response.status_code, response.json()["status"]) == (status, status), (body, response.text)
        assert response.json()["error"].startswith(message), (body, response.json()["error"])
    assert [r.status_code for r in responses[-3:]] == [405, 404, 200]
    assert responses[-3].json()["error"] == "Method Not Allowed: GET /v1/embed"
    assert responses[-2].json()["error"] == "Not Found: GET /v2/embed"
    samples = metric_samples(metrics)
    assert samples[("spacy_elmo_requests_total", (("endpoint", "embed"), ("status", "400")))] == 22
    assert samples[("spacy_elmo_requests_total", (("endpoint", "embed"), ("status", "413")))] == 1
    assert samples[("spacy_elmo_requests_total", (("endpoint", "similarity"), ("status", "400")))] == 6


def test_create_app_rejects_bad_settings(parity_bilm):
    with pytest.raises(ValueError, match="max_batch_tokens must be an integer >= 1, found 0"):
        create_app(parity_bilm, max_batch_tokens=0)
    with pytest.raises(ValueError, match=r"max_wait_ms must be a number of milliseconds in \[0, 60000\], found -1"):
        create_app(parity_bilm, max_wait_ms=-1)
    with pytest.raises(ValueError, match=r"precision must be one of \('fp32', 'bf16', 'int8'\), found 'fp16'"):
        create_app(parity_bilm, precision="fp16")


class Gate:
    """Wraps ``bilm.embed_sentences``: calls block until ``released`` is set; records every call's sentences;
    ``fail_next`` makes the next call raise."""

    def __init__(self, bilm, monkeypatch):
        self.original = bilm.embed_sentences
        self.calls: list[list[list[str]]] = []
        self.entered = threading.Event()
        self.released = threading.Event()
        self.fail_next = False
        monkeypatch.setattr(bilm, "embed_sentences", self)

    def __call__(self, sentences, *args, **kwargs):
        self.calls.append([list(s) for s in sentences])
        self.entered.set()
        self.released.wait(30)
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("out of memory")
        return self.original(sentences, *args, **kwargs)


def test_a_full_queue_rejects_at_once_while_admitted_requests_finish(parity_bilm, parity_sentences, monkeypatch):
    app = create_app(parity_bilm, max_wait_ms=0, max_batch_tokens=1, max_queue=3)
    requests = requests_of(parity_sentences, 12)

    async def main():
        async with serving(app) as client:
            gate = Gate(parity_bilm, monkeypatch)
            first = asyncio.ensure_future(client.post("/v1/embed", json={"sentences": requests[0]}))
            while not gate.entered.is_set():
                await asyncio.sleep(0.005)
            queued = [asyncio.ensure_future(client.post("/v1/embed", json={"sentences": r})) for r in requests[1:4]]
            while app.state.batcher.depth < 3:
                await asyncio.sleep(0.005)
            start = time.perf_counter()
            rejected = await asyncio.gather(*[client.post("/v1/embed", json={"sentences": r}) for r in requests[4:]])
            rejected_in = time.perf_counter() - start
            gate.released.set()
            admitted = await asyncio.gather(first, *queued)
            return admitted, rejected, rejected_in, (await client.get("/metrics")).text

    admitted, rejected, rejected_in, metrics = asyncio.run(main())
    assert rejected_in < 2.0  # answered while the worker was still blocked
    for response in rejected:
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert response.json()["error"] == "the queue is full (3 requests waiting); retry after 1 s"
    for request, response in zip(requests[:4], admitted):
        expected = parity_bilm.embed_sentences(request)
        assert max(float(np.abs(g - e).max()) for g, e in zip(values(response), expected)) <= BATCHING_ATOL
    samples = metric_samples(metrics)
    assert samples[("spacy_elmo_requests_total", (("endpoint", "embed"), ("status", "503")))] == 8
    assert samples[("spacy_elmo_queue_depth", ())] == 0


def test_a_failed_batch_is_a_500_and_the_worker_goes_on(parity_bilm, monkeypatch):
    app = create_app(parity_bilm)

    async def main():
        async with serving(app) as client:
            gate = Gate(parity_bilm, monkeypatch)
            gate.released.set()
            gate.fail_next = True
            failed = await client.post("/v1/embed", json={"texts": ["a b"]})
            return failed, await client.post("/v1/embed", json={"texts": ["a b"]})

    failed, fine = asyncio.run(main())
    assert failed.status_code == 500
    assert failed.json()["error"] == "the biLM failed (RuntimeError); the server log has the details"
    assert np.abs(values(fine)[0] - parity_bilm.embed_sentences([["a", "b"]])[0]).max() <= BATCHING_ATOL


def test_the_work_of_a_cancelled_request_is_dropped():
    calls: list[list[list[str]]] = []
    entered, release = threading.Event(), threading.Event()

    def embed(sentences):
        calls.append(sentences)
        entered.set()
        release.wait(10)
        return [np.zeros((1, len(s), 2), np.float32) for s in sentences]

    batcher = Batcher(embed, max_batch_tokens=1, max_wait_ms=0, max_queue=10)

    async def main():
        running = asyncio.ensure_future(batcher.submit([["first"]]))
        while not entered.is_set():
            await asyncio.sleep(0.005)
        dropped = asyncio.ensure_future(batcher.submit([["gone"]]))
        kept = asyncio.ensure_future(batcher.submit([["kept", "too"]]))
        await asyncio.sleep(0.05)
        dropped.cancel()
        await asyncio.sleep(0.01)
        release.set()
        return await running, await kept, dropped.cancelled()

    first, kept, cancelled = asyncio.run(main())
    batcher.close(5)
    assert cancelled and [a.shape for a in first] == [(1, 1, 2)] and [a.shape for a in kept] == [(1, 2, 2)]
    assert calls == [[["first"]], [["kept", "too"]]]


def test_a_client_that_disconnects_has_its_work_dropped(parity_bilm, monkeypatch):
    """A raw ASGI call whose client disconnects while its request waits behind a blocked batch."""
    app = create_app(parity_bilm, max_wait_ms=0, max_batch_tokens=1)

    async def call(body: bytes, disconnect: asyncio.Event) -> list[dict]:
        sent: list[dict] = []
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive():
            if messages:
                return messages.pop(0)
            await disconnect.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        await app(embed_scope({"content-type": "application/json"}), receive, send)
        return sent

    async def main():
        async with serving(app):
            gate = Gate(parity_bilm, monkeypatch)
            stays, leaves = asyncio.Event(), asyncio.Event()
            first = asyncio.ensure_future(call(b'{"texts": ["first one"]}', stays))
            while not gate.entered.is_set():
                await asyncio.sleep(0.005)
            second = asyncio.ensure_future(call(b'{"texts": ["gone away"]}', leaves))
            while app.state.batcher.depth < 1:
                await asyncio.sleep(0.005)
            leaves.set()
            gone = await second
            gate.released.set()
            stays_answer = await first
            await asyncio.sleep(0.05)
            return gate.calls, gone, stays_answer

    calls, gone, answer = asyncio.run(main())
    assert calls == [[["first", "one"]]]
    assert gone[0]["status"] == 499 and answer[0]["status"] == 200


def test_health_ready_info_and_metrics(parity_bilm):
    app = create_app(parity_bilm, max_batch_tokens=512, model_name="parity")

    async def main():
        async with serving(app) as client:
            out = {path: await client.get(path) for path in ("/health", "/ready", "/info", "/metrics")}
            await asyncio.to_thread(app.state.batcher.close)
            out["ready after close"] = await client.get("/ready")
            out["embed after close"] = await client.post("/v1/embed", json={"texts": ["a"]})
            return out

    out = asyncio.run(main())
    assert out["/health"].json() == {"status": "alive"}
    assert out["/ready"].json() == {"status": "ready"}
    info = out["/info"].json()
    assert info["model"] == "parity" and info["n_layers"] == 3 and info["dim"] == 64
    assert info["architecture"]["lstm"]["projection_dim"] == 32
    assert info["serving"]["max_batch_tokens"] == 512 and info["version"] == "0.1.0"
    assert {"cpu", "kernel_mode", "torch_threads"} <= set(info["kernels"])
    assert out["/metrics"].headers["content-type"].startswith("text/plain; version=")
    names = {family.name for family in text_string_to_metric_families(out["/metrics"].text)}
    assert {
        "spacy_elmo_requests",
        "spacy_elmo_request_seconds",
        "spacy_elmo_batch_requests",
        "spacy_elmo_batch_tokens",
        "spacy_elmo_queue_depth",
        "spacy_elmo_tokens",
        "spacy_elmo_tokens_per_second",
    } <= names
    samples = metric_samples(out["/metrics"].text)
    assert samples[("spacy_elmo_token_cache_entries", ())] == len(parity_bilm.token_cache) > 0
    status = Path("/proc/self/status")
    if status.is_file():  # Prometheus's process collector reads /proc (Linux)
        rss = next(int(line.split()[1]) * 1024 for line in status.read_text().splitlines() if line.startswith("VmRSS"))
        assert abs(samples[("process_resident_memory_bytes", ())] - rss) < 50e6
    assert out["ready after close"].status_code == 503
    assert out["embed after close"].status_code == 503
    assert out["embed after close"].json()["error"] == "the server is shutting down"


def test_cli_serve_rejects_a_model_with_files_and_a_bad_tokenizer():
    from typer.testing import CliRunner

    from spacy_elmo.cli import app

    result = CliRunner().invoke(app, ["serve", "--model", "small", "--options", "o.json", "--weights", "w.hdf5"])
    assert result.exit_code == 1
    assert "give either model (a name or a directory) or options_file + weight_file, not both" in result.output
    result = CliRunner().invoke(app, ["serve", "--tokenizer", "zz9", "--ray", "local"])
    assert result.exit_code == 1
    assert "error: tokenizer 'zz9' is neither 'whitespace', a spaCy language code nor a pipeline" in result.output
    if has_ray:
        result = CliRunner().invoke(app, ["serve", "--ray", "local", "--workers", "2"])
        assert result.exit_code == 1
        assert "error: --workers is the local server's: on Ray Serve scale with --replicas (found workers=2)" in (
            result.output
        )


@pytest.mark.slow  # a subprocess, so that Ray Serve's modules are not yet imported
def test_serve_ray_without_ray_serve_names_the_extra_that_brings_it():
    """Ray with only its data extra (``spacy-elmo[ray]``) has no grpcio: one line naming ``[ray-serve]``."""
    code = (
        "import sys; sys.modules['grpc'] = None; from spacy_elmo.cli import app; "
        "app(['serve', '--ray', 'local'], prog_name='spacy-elmo')"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-3000:]
    assert result.stderr.startswith('error: serve --ray needs Ray Serve: pip install "spacy-elmo[ray-serve]" (')
    assert "grpc" in result.stderr and result.stderr.count("\n") == 1


def test_the_ray_serve_extra_brings_grpcio_and_fastapi():
    """``spacy-elmo[ray-serve]`` asks for ``ray[serve]``, whose own requirements hold what Ray Serve imports."""
    from importlib import metadata

    from packaging.requirements import Requirement

    from .pip_check import _project_requirements

    problems: list[str] = []
    extra = _project_requirements({"ray-serve"}, problems)
    ray = [r for r in extra if r.name == "ray"]
    assert problems == [] and [sorted(r.extras) for r in ray] == [["serve"]]
    wanted = {Requirement(text) for text in metadata.requires("ray") or []}
    serve = {r.name for r in wanted if r.marker is not None and r.marker.evaluate({"extra": "serve"})}
    assert {"grpcio", "fastapi", "starlette", "uvicorn"} <= serve


@pytest.mark.slow
def test_uvicorn_serves_and_drains_on_sigterm(parity_files, parity_bilm, parity_sentences):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    options, weights = parity_files
    command = [sys.executable, "-m", "spacy_elmo", "serve", "--options", str(options), "--weights", str(weights)]
    command += ["--port", str(port), "--max-wait-ms", "5000"]  # the 8 requests below wait for it (< 2048 tokens)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", SLOW_PROXY_START[0]: SLOW_PROXY_START[1]}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(url, process)
        requests = requests_of(parity_sentences, 8)

        async def main():
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                posts = [asyncio.ensure_future(client.post("/v1/embed", json={"sentences": r})) for r in requests]
                for _ in range(400):  # until all 8 are admitted, waiting for the batch to fill
                    depth = metric_samples((await client.get("/metrics")).text)[("spacy_elmo_queue_depth", ())]
                    if depth == len(requests):
                        break
                    await asyncio.sleep(0.01)
                process.send_signal(signal.SIGTERM)
                return depth, await asyncio.gather(*posts)

        depth, responses = asyncio.run(main())
        assert depth == 8
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    for request, response in zip(requests, responses):
        expected = parity_bilm.embed_sentences(request)
        assert max(float(np.abs(g - e).max()) for g, e in zip(values(response), expected)) <= BATCHING_ATOL
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/health", timeout=2)


#: Ray Serve gives its HTTP proxy 5 s to start; on two busy cores it can take longer, and Serve then gives up
SLOW_PROXY_START = ("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "60")


@pytest.mark.slow
@pytest.mark.skipif(not has_ray, reason='needs Ray Serve: pip install "spacy-elmo[ray-serve]"')
def test_ray_serve_deployment_answers(parity_files, parity_bilm, parity_sentences, monkeypatch):
    pytest.importorskip("ray.serve", reason='needs Ray Serve: pip install "ray[serve]"')
    import ray
    from ray import serve

    from spacy_elmo.hub import ModelSpec
    from spacy_elmo.serve.ray_serve import deployment

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    options, weights = parity_files
    monkeypatch.setenv(*SLOW_PROXY_START)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        spec = ModelSpec(options_file=str(options), weight_file=str(weights))
        serve.run(deployment(spec, max_wait_ms=50, max_request_tokens=100, api_key="k3y"), route_prefix="/")
        requests = requests_of(parity_sentences, 6)

        async def main():
            key = {"authorization": "Bearer k3y"}
            async with httpx.AsyncClient(base_url=url, timeout=60, headers=key) as client:
                posts = [client.post("/v1/embed", json={"sentences": r}) for r in requests]
                embedded = await asyncio.gather(*posts)
                similar = await client.post("/v1/similarity", json={"texts": ["a b", "a c"]})
                too_long = await client.post("/v1/embed", json={"texts": ["w " * 101]})
                return embedded, similar, too_long, await client.get("/info")

        embedded, similar, too_long, info = asyncio.run(main())
        health = httpx.get(url + "/health", timeout=30)
        no_key = httpx.post(url + "/v1/embed", json={"texts": ["a"]}, timeout=30)
        page = httpx.get(url + "/", timeout=30)  # the playground: open without the key
        post_page = httpx.post(url + "/", timeout=30)
    finally:
        serve.shutdown()
        ray.shutdown()
    for request, response in zip(requests, embedded):
        expected = parity_bilm.embed_sentences(request)
        assert max(float(np.abs(g - e).max()) for g, e in zip(values(response), expected)) <= BATCHING_ATOL
    assert similar.status_code == 200 and 0.0 < similar.json()["similarity"] <= 1.0
    assert too_long.status_code == 413
    assert too_long.json()["error"] == "the request has 101 tokens, more than the limit of 100"
    assert health.json() == {"status": "alive"} and info.json()["serving"]["ray"] is True and "k3y" not in info.text
    assert no_key.status_code == 401 and no_key.json()["error"].startswith("this server needs an API key")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.content == playground.page() and page.headers["content-security-policy"] == playground.POLICY
    assert post_page.status_code == 405 and no_key.headers["www-authenticate"] == 'Bearer realm="spacy-elmo"'


@pytest.mark.slow
@pytest.mark.skipif(not has_ray, reason='needs Ray Serve: pip install "spacy-elmo[ray-serve]"')
def test_serve_on_ray_exits_0_on_sigterm(parity_files):
    """`serve --ray local` stops on SIGTERM as the local server does: Serve and Ray shut down, exit code 0 (Ray's
    own SIGTERM handler, installed by ray.init, would abort the process with 134)."""
    pytest.importorskip("ray.serve", reason='needs Ray Serve: pip install "ray[serve]"')
    port = free_port()
    options, weights = parity_files
    command = [sys.executable, "-m", "spacy_elmo", "serve", "--ray", "local", "--port", str(port)]
    command += ["--options", str(options), "--weights", str(weights)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", SLOW_PROXY_START[0]: SLOW_PROXY_START[1]}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(f"http://127.0.0.1:{port}", process, timeout=400)
        process.send_signal(signal.SIGTERM)
        _, output = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output[-3000:]
    assert "SIGTERM received" not in output


def test_an_api_key_guards_every_route_but_health(parity_bilm):
    key = "s3cret-Key_0123"
    app = create_app(parity_bilm, api_key=key)
    body = {"texts": ["a b"]}

    async def main():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
                good = {"authorization": f"Bearer {key}"}
                while (await client.get("/ready", headers=good)).status_code != 200:
                    await asyncio.sleep(0.01)
                return {
                    "health": await client.get("/health"),
                    "no key": await client.post("/v1/embed", json=body),
                    "wrong key": await client.post("/v1/embed", json=body, headers={"authorization": "Bearer s3cret"}),
                    "basic": await client.post("/v1/embed", json=body, headers={"authorization": f"Basic {key}"}),
                    "metrics": await client.get("/metrics"),
                    "info": await client.get("/info"),
                    "ready": await client.get("/ready"),
                    "similarity": await client.post("/v1/similarity", json={"texts": ["a", "b"]}),
                    "embed": await client.post("/v1/embed", json=body, headers=good),
                    "lower case": await client.post("/v1/embed", json=body, headers={"authorization": f"bearer {key}"}),
                    "info with key": await client.get("/info", headers=good),
                }

    out = asyncio.run(main())
    assert out["health"].status_code == 200
    for name in ("no key", "wrong key", "basic", "metrics", "info", "ready", "similarity"):
        assert out[name].status_code == 401, name
        assert out[name].headers["www-authenticate"].startswith("Bearer")
        assert key not in out[name].text
    assert out["no key"].json() == {
        "error": "this server needs an API key: send the header 'Authorization: Bearer KEY'",
        "status": 401,
    }
    assert out["wrong key"].json()["error"] == "the API key in 'Authorization: Bearer ...' is not this server's"
    assert out["embed"].status_code == 200 and out["lower case"].status_code == 200
    assert np.abs(values(out["embed"])[0] - parity_bilm.embed_sentences([["a", "b"]])[0]).max() <= BATCHING_ATOL
    assert out["info with key"].status_code == 200 and key not in out["info with key"].text
    with pytest.raises(ValueError, match="the API key must be printable ASCII without spaces"):
        create_app(parity_bilm, api_key="two words")


def test_binding_beyond_loopback_without_a_key_warns():
    from typer.testing import CliRunner

    from spacy_elmo.cli import app
    from spacy_elmo.serve.auth import exposure_warning

    assert exposure_warning("127.0.0.1", None) is None and exposure_warning("localhost", None) is None
    assert exposure_warning("::1", None) is None and exposure_warning("0.0.0.0", "k") is None
    assert exposure_warning("0.0.0.0", None) == (
        "warning: serving on 0.0.0.0, reachable from other machines, without an API key: anyone who can reach "
        "the port can use it; set --api-key or SPACY_ELMO_API_KEY"
    )
    # the bad tokenizer stops the command after the warning, before anything binds
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--tokenizer", "zz9"], env={})
    assert result.output.splitlines()[0].startswith("warning: serving on 0.0.0.0, reachable from other machines")
    result = CliRunner().invoke(
        app, ["serve", "--host", "0.0.0.0", "--tokenizer", "zz9"], env={"SPACY_ELMO_API_KEY": "k"}
    )
    assert "warning" not in result.output and "tokenizer 'zz9'" in result.output


@pytest.mark.slow
def test_uvicorn_with_an_api_key_from_the_environment_never_logs_it(parity_files):
    key = "never-in-the-log-0451"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    options, weights = parity_files
    command = [sys.executable, "-m", "spacy_elmo", "serve", "--options", str(options), "--weights", str(weights)]
    command += ["--port", str(port), "--max-wait-ms", "0"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "SPACY_ELMO_API_KEY": key}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        statuses = [
            httpx.post(url + "/v1/embed", json={"texts": ["a b"]}, headers=headers, timeout=30).status_code
            for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": f"Bearer {key}"})
        ]
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert statuses == [401, 401, 200]
    assert process.returncode == 0
    assert "Uvicorn running on http://127.0.0.1" in output and key not in output
