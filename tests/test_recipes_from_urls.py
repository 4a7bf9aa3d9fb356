"""The seed recipes of test_allennlp_api.py run on URLs, as AllenNLP users write them.

The recipe code is reused unchanged; only its module-level ``options_file`` / ``weight_file`` become
the seed's URLs with the host replaced by a local mirror (127.0.0.1).
"""

import pytest

from spacy_elmo import ElmoEmbedder

from . import test_allennlp_api as recipes
from .model_server import SEED_OPTIONS, SEED_WEIGHTS

RECIPE_TESTS = [
    "test_text_classifier_recipe",
    "test_ner_recipe",
    "test_word_sense_recipe",
    "test_sentence_similarity_recipe",
    "test_training_step_updates_the_scalar_mix_and_leaves_the_frozen_bilm",
]


@pytest.mark.parametrize("name", RECIPE_TESTS)
def test_seed_recipe_with_urls(name, mirror, monkeypatch, model_cache):
    options_url, weights_url = mirror.url(SEED_OPTIONS), mirror.url(SEED_WEIGHTS)
    monkeypatch.setattr(recipes, "options_file", options_url)
    monkeypatch.setattr(recipes, "weight_file", weights_url)
    test = getattr(recipes, name)
    if name == "test_sentence_similarity_recipe":
        test(ElmoEmbedder(options_url, weights_url))
    elif name.startswith("test_training_step"):
        test("classifier")
        test("ner")
    else:
        test()
    assert mirror.requests == [SEED_OPTIONS, SEED_WEIGHTS]  # downloaded once, then from the cache
    assert len([p for p in model_cache.rglob("*") if p.is_file()]) == 4
