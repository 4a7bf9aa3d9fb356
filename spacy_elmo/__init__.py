"""spacy-elmo: ELMo contextual word vectors for spaCy v3.

Importing this package does not import spaCy: the biLM and the AllenNLP-compatible
API are plain PyTorch. The spaCy component ``"elmo"`` and the ``spacy-elmo.*``
architectures are found by spaCy through entry points.
"""

from .allennlp import Elmo, ElmoEmbedder, batch_to_ids
from .bilm import BiLM, BiLMOptions, ScalarMix
from .hub import load_bilm

__all__ = ["BiLM", "BiLMOptions", "Elmo", "ElmoEmbedder", "ScalarMix", "batch_to_ids", "load_bilm"]
#: the package version: pyproject.toml reads it from here (``[tool.setuptools.dynamic]``), CHANGELOG.md names it
__version__ = "0.1.0"
