"""Released ELMo models by name or URL: the registry, the download cache and its integrity checks.

The only part of spacy-elmo that touches the network; ``bilm/`` reads local files only.
"""

from .cache import IntegrityError, cache_dir
from .download import DownloadError, fetch, offline
from .loading import download_model, load_bilm, resolve_files
from .registry import MODELS, ReleasedModel

__all__ = [
    "MODELS",
    "DownloadError",
    "IntegrityError",
    "ReleasedModel",
    "cache_dir",
    "download_model",
    "fetch",
    "load_bilm",
    "offline",
    "resolve_files",
]
