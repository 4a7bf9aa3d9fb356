"""``embed-dir`` on Ray actors and ``embed_dataset`` for Ray Data, on a local two-CPU Ray cluster."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest

from spacy_elmo._compat import has_ray
from spacy_elmo.embed import embed_dir

from .helpers import CORPUS, SETTINGS, assert_same_as_embed, write_corpus

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not has_ray, reason='needs Ray: pip install "spacy-elmo[ray]"')]


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_outputs_equal_embed_and_a_second_run_skips_them(ray_cluster, parity_bilm, tmp_path):
    from spacy_elmo.embed.ray_actors import ray_runner

    input_dir = write_corpus(tmp_path / "in", {**CORPUS, "blank": ["a", "", "b"]})
    summary = embed_dir(
        input_dir, tmp_path / "out", SETTINGS, workers=2, shard_lines=4, runner=ray_runner("local"), progress=False
    )
    assert summary.files == 3 and summary.sentences == 15
    assert summary.failed == {
        str(input_dir / "blank.txt"): f"{input_dir / 'blank.txt'}: line 2 is blank; "
        "every line must hold one sentence (remove blank lines)"
    }
    assert_same_as_embed(parity_bilm, input_dir, tmp_path / "out", CORPUS)
    again = embed_dir(input_dir, tmp_path / "out", SETTINGS, workers=2, runner=ray_runner("local"), progress=False)
    assert (again.files, again.skipped, again.sentences, len(again.failed)) == (0, 3, 0, 1)


def test_ray_retries_the_task_of_a_killed_actor(ray_cluster, parity_bilm, tmp_path):
    from spacy_elmo.embed.ray_actors import ray_runner
    from spacy_elmo.embed.shards import ShardEmbedder

    marker = tmp_path / "crashed"

    class CrashOnce(ShardEmbedder):
        """Kills its actor process on the first shard any actor gets (once: the marker file says it happened)."""

        def __call__(self, shard):
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return super().__call__(shard)
            os._exit(1)

    input_dir = write_corpus(tmp_path / "in", {"big": CORPUS["big"]})
    summary = embed_dir(
        input_dir,
        tmp_path / "out",
        SETTINGS,
        workers=2,
        shard_lines=4,
        runner=ray_runner("local", embedder=CrashOnce),
        progress=False,
    )
    assert marker.exists()  # an actor died on its first task
    assert (summary.files, summary.sentences, summary.failed) == (1, 13, {})
    assert_same_as_embed(parity_bilm, input_dir, tmp_path / "out", ["big"])


def test_embed_dataset_writes_parquet(ray_cluster, parity_bilm, tmp_path):
    import pyarrow.parquet as pq

    from spacy_elmo.embed.ray_actors import embed_dataset

    sentences = [["The", "bank", "of", "the", "river", "."], ["Hello"], ["café", "naïve", "x", "y"]]
    rows = [{"id": i, "tokens": tokens} for i, tokens in enumerate(sentences)]
    ds = embed_dataset(
        ray_cluster.data.from_items(rows),
        "tokens",
        options_file=SETTINGS.model.options_file,
        weight_file=SETTINGS.model.weight_file,
        batch_size=2,
    )
    ds.write_parquet(str(tmp_path / "parquet"))
    table = pq.read_table(tmp_path / "parquet").sort_by("id")  # ray registered the tensor type
    assert table.column("tokens").to_pylist() == sentences
    found = table.column("elmo").combine_chunks().to_numpy()
    for vectors, layers in zip(found, parity_bilm.embed_sentences(sentences)):
        assert vectors.dtype == np.float32 and vectors.shape == layers.shape  # (3, n_tokens, 64)
        np.testing.assert_allclose(vectors, layers, rtol=0, atol=1e-5)


@pytest.mark.parametrize("output_format", ["top", "average"])
def test_dataset_batches_of_texts(parity_bilm, output_format):
    import pyarrow as pa

    from spacy_elmo.embed.ray_actors import _BatchEmbedder

    settings = replace(SETTINGS, output_format=output_format)
    texts = ["The bank of the river .", "Hello"]
    batch = _BatchEmbedder(settings, None, "text", "vectors")(pa.table({"text": texts, "id": [0, 1]}))
    assert batch.column("id").to_pylist() == [0, 1] and batch.column("text").to_pylist() == texts
    found = batch.column("vectors").chunk(0).to_numpy()
    for vectors, layers in zip(found, parity_bilm.embed_sentences([t.split() for t in texts])):
        expected = layers[-1] if output_format == "top" else layers.mean(axis=0)
        np.testing.assert_allclose(vectors, expected, rtol=0, atol=1e-5)
    with pytest.raises(TypeError, match="expected a text or a list of tokens, found int"):
        _BatchEmbedder(settings, None, "id", "vectors")(pa.table({"id": [3]}))
