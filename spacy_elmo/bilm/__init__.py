"""The ELMo biLM in pure PyTorch + h5py (no spaCy)."""

from .chars import batch_char_ids, token_char_ids
from .mix import ScalarMix
from .model import BiLM
from .options import BiLMOptions

__all__ = ["BiLM", "BiLMOptions", "ScalarMix", "batch_char_ids", "token_char_ids"]
