"""biLM pretraining on raw tokenized text: vocabulary, corpus batches, LM loss, loop, checkpoints."""

from .loop import TrainConfig, train

__all__ = ["TrainConfig", "train"]
