"""biLM pretraining on raw tokenized text: vocabulary, corpus batches, LM loss, loop, checkpoints."""

from .config import TrainConfig
from .loop import train

__all__ = ["TrainConfig", "train"]
