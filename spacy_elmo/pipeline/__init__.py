"""The spaCy side of spacy-elmo: the ``"elmo"`` component, its extension attributes and vector hooks."""

from .component import ElmoComponent, make_elmo
from .extensions import install_extensions
from .hooks import set_vector_hooks
from .warm_cache import warm_sequence_cache

__all__ = ["ElmoComponent", "install_extensions", "make_elmo", "set_vector_hooks", "warm_sequence_cache"]
