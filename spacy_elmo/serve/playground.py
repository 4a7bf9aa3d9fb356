"""``GET /``: the playground, one self-contained HTML page (``spacy_elmo/data/playground/index.html``: inline script
and style, nothing fetched from elsewhere, so it works offline) that compares two texts token by token through the
service's own ``/v1/embed`` and ``/v1/similarity``."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

PATH = "/"
#: the page may talk to its own origin only and run its own inline script and style
POLICY = "default-src 'none'; connect-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'"


@lru_cache(maxsize=1)
def page() -> bytes:
    """The page's bytes (read once from the package)."""
    return resources.files("spacy_elmo").joinpath("data/playground/index.html").read_bytes()


async def playground(request: Request) -> Response:
    return HTMLResponse(page(), headers={"Content-Security-Policy": POLICY, "Cache-Control": "no-cache"})
