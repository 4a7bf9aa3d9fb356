"""A local mirror of the released ELMo files, served over http on 127.0.0.1 for the download tests."""

from __future__ import annotations

import shutil
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from spacy_elmo.hub.releases import MODELS

from .helpers import DATA, PARITY

STATEFUL = DATA / "allennlp_stateful"
#: the URLs of AllenNLP's documented usage, with the host replaced by the local server's
SEED_OPTIONS = "models/elmo/2x4096_512_2048cnn/2x4096_512_2048cnn_elmo_options.json"
SEED_WEIGHTS = "models/elmo/2x4096_512_2048cnn/2x4096_512_2048cnn_elmo_weights.hdf5"


def build_mirror(root: Path) -> Path:
    """The release layout under ``root``: every released name holds the parity biLM, except
    ``medium``, which holds the stateful fixture's; plus the paths of AllenNLP's documented usage."""
    for name, model in MODELS.items():
        source = STATEFUL if name == "medium" else PARITY
        weights = "lm_weights.hdf5" if name == "medium" else "weights.hdf5"
        for relative, src in ((model.options_path, source / "options.json"), (model.weights_path, source / weights)):
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, root / relative)
    for relative, src in ((SEED_OPTIONS, PARITY / "options.json"), (SEED_WEIGHTS, PARITY / "weights.hdf5")):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, root / relative)
    return root


class _Handler(SimpleHTTPRequestHandler):
    server: "_Server"

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        path = self.path.lstrip("/")
        self.server.requests.append(path)
        if self.server.drops.get(path, 0) > 0:
            self.server.drops[path] -= 1
            data = (Path(self.directory) / path).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    requests: list[str]
    drops: dict[str, int]


class MirrorServer:
    """``http://127.0.0.1:PORT/`` serving ``root``; records request paths; ``drop(path)`` makes the next
    request of ``path`` send half the file and close the connection."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._server = _Server(("127.0.0.1", 0), partial(_Handler, directory=str(root)))
        self._server.requests, self._server.drops = [], {}
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}/"

    @property
    def requests(self) -> list[str]:
        return self._server.requests

    def drop(self, path: str, times: int = 1) -> None:
        self._server.drops[path] = times

    def url(self, path: str) -> str:
        return self.base + path

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
