"""The playground page (``GET /``): served self-contained, turned off by ``playground=False``, and drawn by a real
headless Chromium from a real uvicorn, its heatmap cells equal to the cosines computed here."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette", reason='needs the serve extra: pip install "spacy-elmo[serve]"')
httpx = pytest.importorskip("httpx")

from spacy_elmo.bilm.mix import cosine, mean_mixed_vector, mix_weights  # noqa: E402
from spacy_elmo.serve import create_app  # noqa: E402
from spacy_elmo.serve.playground import page  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIRST = "I went to the bank to deposit my paycheck"
SECOND = "We sat on the bank of the river and watched the water"
# the served vectors come from a batch of their own; cosines of them vs of embed_sentences here: within 1e-5
COSINE_ATOL = 1e-4


def get(app, *paths: str, headers: dict | None = None) -> list:
    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            return [await client.get(path, headers=headers) for path in paths]

    return asyncio.run(main())


async def _post(app, path: str):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        return await client.post(path)


def test_the_page_is_self_contained_and_can_be_turned_off(parity_bilm):
    root, health = get(create_app(parity_bilm), "/", "/health")
    assert root.status_code == 200 and root.headers["content-type"] == "text/html; charset=utf-8"
    assert root.content == page() and health.status_code == 200
    # nothing from elsewhere: no external script, style, font or image, and the browser is told so
    assert root.headers["content-security-policy"].startswith("default-src 'none'; connect-src 'self';")
    text = root.text
    assert "http://" not in text and "https://" not in text and "<link" not in text and " src=" not in text
    assert 'fetch(path, { method: "POST"' in text and "dataset.cosine" in text
    assert [r.status_code for r in get(create_app(parity_bilm, playground=False), "/", "/health")] == [404, 200]
    # with a key the page (no data in it) still loads; what it asks for needs the key
    guarded = create_app(parity_bilm, api_key="k3y")
    assert [r.status_code for r in get(guarded, "/", "/info")] == [200, 401]
    # the page is one of the service's routes: GET only, and its requests are counted
    posted = asyncio.run(_post(create_app(parity_bilm), "/"))
    assert posted.status_code == 405
    metrics = get(create_app(parity_bilm), "/", "/metrics")[1].text
    assert 'spacy_elmo_requests_total{endpoint="playground",status="200"} 1.0' in metrics


class Drawn(HTMLParser):
    """What the page drew: heatmap row and column tokens, cells ``(row, col) -> data-cosine``, the document
    similarity, the status line and ``body[data-state]``."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[int, int], float] = {}
        self.columns: list[str] = []
        self.rows: list[str] = []
        self.similarity = float("nan")
        self.state = ""
        self.status = ""
        self._in: str | None = None
        self._section = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.state = a.get("data-state", "")
        elif tag in ("thead", "tbody"):
            self._section = tag
        elif tag == "td" and "data-cosine" in a:
            self.cells[int(a["data-row"]), int(a["data-col"])] = float(a["data-cosine"])
        elif tag == "th":
            self._in = self._section
        elif a.get("id") == "similarity":
            self.similarity = float(a["data-similarity"] or "nan")
        elif a.get("id") == "status":
            self._in = "status"

    def handle_data(self, data):
        if self._in == "thead" and data.strip():
            self.columns.append(data)
        elif self._in == "tbody" and data.strip():
            self.rows.append(data)
        elif self._in == "status":
            self.status += data

    def handle_endtag(self, tag):
        if tag in ("th", "div"):
            self._in = None


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI"):
        pytest.fail("no chromium on this CI machine: .ci/run installs it (apt-get install chromium)")
    pytest.skip("needs a headless Chromium (Debian: apt-get install chromium); CI installs it")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dump_dom(browser: str, url: str) -> Drawn:
    """The page's DOM after its scripts ran (virtual time lets the fetches finish before the dump)."""
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions"]
    command += ["--virtual-time-budget=30000", "--dump-dom", url]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    drawn = Drawn()
    drawn.feed(result.stdout)
    return drawn


@pytest.mark.slow
def test_chromium_draws_the_cosines_of_the_served_vectors(parity_files, parity_bilm):
    browser = chromium()
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    options, weights = parity_files
    command = [sys.executable, "-m", "spacy_elmo", "serve", "--options", str(options), "--weights", str(weights)]
    command += ["--port", str(port), "--max-wait-ms", "0"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                if httpx.get(url + "ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server was not ready within 120 s"
            time.sleep(0.2)
        drawn = {layer: dump_dom(browser, f"{url}?layer={layer}") for layer in ("2", "0", "average")}
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
    first, second = FIRST.split(), SECOND.split()
    layers_a, layers_b = parity_bilm.embed_sentences([first, second])  # (3, n_tokens, dim) each
    for layer, page_drawn in drawn.items():
        assert page_drawn.state == "done", (layer, page_drawn.status)
        assert page_drawn.rows == first and page_drawn.columns == second
        assert sorted(page_drawn.cells) == [(i, j) for i in range(len(first)) for j in range(len(second))]
        a, b = (x.mean(axis=0) if layer == "average" else x[int(layer)] for x in (layers_a, layers_b))
        expected = {(i, j): cosine(a[i], b[j]) for i in range(len(first)) for j in range(len(second))}
        worst = max(abs(page_drawn.cells[ij] - expected[ij]) for ij in expected)
        assert worst <= COSINE_ATOL, (layer, worst)
        mix = mix_weights("average" if layer == "average" else int(layer), 3)
        document = cosine(mean_mixed_vector(layers_a, mix), mean_mixed_vector(layers_b, mix))
        assert abs(page_drawn.similarity - document) <= COSINE_ATOL, layer
        assert page_drawn.status.startswith(f"{len(first)} x {len(second)} tokens")
    bank = (first.index("bank"), second.index("bank"))
    # the token layer is context-free: "bank" is one vector in both texts; the biLSTM's is not
    assert drawn["0"].cells[bank] == pytest.approx(1.0, abs=1e-6)
    assert drawn["2"].cells[bank] < 0.999
    assert not np.isclose(drawn["2"].similarity, drawn["0"].similarity)
