"""Optional dependencies: flags saying whether they are installed, without importing them."""

from __future__ import annotations

import importlib.util

has_ray = importlib.util.find_spec("ray") is not None
RAY_MISSING = 'Ray is not installed: pip install "spacy-elmo[ray]" (or pip install "ray[data]")'

#: what ``serve --ray`` says when Ray Serve is missing or cannot be imported (``ray[data]`` lacks grpcio, fastapi...)
RAY_SERVE_MISSING = 'serve --ray needs Ray Serve: pip install "spacy-elmo[ray-serve]"'

has_serve = all(importlib.util.find_spec(name) is not None for name in ("starlette", "uvicorn", "prometheus_client"))
SERVE_MISSING = 'the service needs Starlette, uvicorn and prometheus_client: pip install "spacy-elmo[serve]"'
