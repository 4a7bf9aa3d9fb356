"""Released ELMo models by name or URL: the tables of released models (``releases``, ``manylangs_releases``),
the download cache and its integrity checks.

The only part of spacy-elmo that touches the network; ``bilm/`` reads local files only.
"""

from .cache import IntegrityError, cache_dir
from .download import DownloadError, fetch, offline
from .loading import load_bilm
from .releases import MODELS, ReleasedModel
from .spec import ModelSpec, download_model

__all__ = [
    "MODELS",
    "DownloadError",
    "IntegrityError",
    "ModelSpec",
    "ReleasedModel",
    "cache_dir",
    "download_model",
    "fetch",
    "load_bilm",
    "offline",
]
