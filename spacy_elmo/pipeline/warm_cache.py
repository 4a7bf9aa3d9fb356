"""``spacy-elmo.warm_sequence_cache.v1``: fill the ``elmo`` component's sequence cache before training.

In ``spacy train`` a frozen, annotating ``elmo`` component sees each training batch on its own:
a few short Docs per biLM call, where the biLM runs several times slower per token than on
batches of ``batch_size`` sequences. This ``[initialize.after_init]`` callback runs the biLM
once over the training and dev corpora in large batches, so that every training step and
evaluation finds its sequences in the cache. The vectors are the same either way (a
sequence's output does not depend on its batch).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from spacy.language import Language
from spacy.util import minibatch, registry, resolve_dot_names

from .component import ElmoComponent
from .sequence_cache import MB

logger = logging.getLogger("spacy")


@registry.callbacks("spacy-elmo.warm_sequence_cache.v1")
def warm_sequence_cache(component: str = "elmo", batch_size: int = 256) -> Callable[[Language], Language]:
    """An ``after_init`` callback: embed the Docs of ``[training] train_corpus`` and ``dev_corpus``
    with the component ``component`` into its sequence cache, ``batch_size`` Docs per call.

    It stops early, with a warning, once the cache starts evicting or meets a sequence larger than the
    whole budget (``sequence_cache_mb`` is too small for the corpora); without a cache
    (``sequence_cache_mb = 0``) it does nothing.
    """

    def after_init(nlp: Language) -> Language:
        elmo = nlp.get_pipe(component)
        if not isinstance(elmo, ElmoComponent):
            raise ValueError(f"warm_sequence_cache: component {component!r} is not an 'elmo' component")
        cache = elmo.sequence_cache
        if cache is None:
            return nlp
        config = nlp.config.interpolate()
        training = config["training"]
        names = [name for name in (training["train_corpus"], training["dev_corpus"]) if _corpus_present(config, name)]
        for corpus in resolve_dot_names(config, names):
            for docs in minibatch((example.predicted for example in corpus(nlp)), size=batch_size):
                elmo.predict(list(docs))
                if cache.evictions or cache.too_large:
                    logger.warning(
                        "elmo: sequence_cache_mb = %s is too small to hold the training and dev corpora; "
                        "stopped filling the cache at %d sequences%s",
                        elmo.sequence_cache_mb,
                        len(cache),
                        f" ({cache.too_large} larger than the whole budget)" if cache.too_large else "",
                    )
                    return nlp
        logger.info("elmo: sequence cache filled with %d sequences (%.1f MiB)", len(cache), cache.nbytes / MB)
        return nlp

    return after_init


def _corpus_present(config: dict, dot_name: str) -> bool:
    """Whether the corpus ``dot_name`` (e.g. ``corpora.train``) has its data file; if not (a config
    initialized from code with other examples), say so: the cache then fills during training."""
    section = config
    for part in dot_name.split("."):
        section = section[part]
    path = section.get("path")
    if path is None or Path(path).exists():
        return True
    logger.warning("elmo: %s (%s) not found; the sequence cache fills as training goes instead", path, dot_name)
    return False
