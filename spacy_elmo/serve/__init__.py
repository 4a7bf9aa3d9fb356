"""``spacy-elmo serve``: an HTTP embedding service with dynamic batching (extra ``spacy-elmo[serve]``).

:func:`create_app` builds the Starlette ASGI app for a loaded biLM; :mod:`.ray_serve` (imported only
when used) deploys the same endpoints on Ray Serve.
"""

from .app import create_app, run

__all__ = ["create_app", "run"]
