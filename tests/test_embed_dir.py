"""``spacy-elmo embed-dir`` without Ray: outputs equal ``embed``'s, resume, partial outputs, bad files."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from spacy_elmo import _compat
from spacy_elmo.cli import app
from spacy_elmo.embed import EmbedSettings, embed_dir, shards
from spacy_elmo.hub import ModelSpec

from .helpers import CORPUS, SETTINGS, assert_same_as_embed, read_h5, write_corpus


@pytest.mark.parametrize(
    "workers,output_format",
    [(1, "all"), pytest.param(2, "average", marks=pytest.mark.slow)],  # 2: spawns workers
)
def test_outputs_equal_embed(parity_bilm, tmp_path, workers, output_format):
    input_dir = write_corpus(tmp_path / "in")
    settings = EmbedSettings(**{**SETTINGS.__dict__, "output_format": output_format, "batch_size": 3})
    summary = embed_dir(input_dir, tmp_path / "out", settings, workers=workers, shard_lines=4, progress=False)
    assert (summary.files, summary.skipped, summary.failed) == (3, 0, {})
    assert (summary.sentences, summary.tokens) == (15, sum(len(line.split()) for v in CORPUS.values() for line in v))
    assert_same_as_embed(parity_bilm, input_dir, tmp_path / "out", CORPUS, output_format)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [".embed-dir", "big.hdf5", "empty.hdf5", "small.hdf5"]  # part files and their folders are gone
    records = sorted(p.name for p in (tmp_path / "out" / ".embed-dir").iterdir())
    assert records == ["big.json", "empty.json", "lock", "small.json"]  # lock: held while a run works
    assert "3 files embedded, 0 skipped" in str(summary) and "15 sentences" in str(summary)


def test_second_run_skips_finished_files_and_redoes_changed_ones(tmp_path, monkeypatch):
    input_dir, output_dir = write_corpus(tmp_path / "in"), tmp_path / "out"
    embed_dir(input_dir, output_dir, SETTINGS, shard_lines=4, progress=False)
    monkeypatch.setattr(shards.ShardEmbedder, "__init__", lambda *a: pytest.fail("a finished file was re-embedded"))
    summary = embed_dir(input_dir, output_dir, SETTINGS, shard_lines=4, progress=False)
    assert (summary.files, summary.skipped, summary.sentences) == (0, 3, 0)
    monkeypatch.undo()
    (input_dir / "small.txt").write_text("changed input\n", encoding="utf-8")
    summary = embed_dir(input_dir, output_dir, SETTINGS, shard_lines=4, progress=False)
    assert (summary.files, summary.skipped, summary.sentences) == (1, 2, 1)
    assert json.loads(read_h5(output_dir / "small.hdf5")["sentence_to_index"]) == {"changed input": "0"}
    top = EmbedSettings(**{**SETTINGS.__dict__, "output_format": "top"})  # other settings: other outputs
    assert embed_dir(input_dir, output_dir, top, shard_lines=4, progress=False).files == 3


def test_interrupted_run_leaves_no_finished_looking_output_and_resumes(parity_bilm, tmp_path, monkeypatch):
    input_dir, output_dir = write_corpus(tmp_path / "in", {"big": CORPUS["big"]}), tmp_path / "out"
    embed = shards.ShardEmbedder.__call__

    def crash_on_third_shard(self, shard):
        if shard.first == 8:
            raise OSError("disk full")
        return embed(self, shard)

    monkeypatch.setattr(shards.ShardEmbedder, "__call__", crash_on_third_shard)
    summary = embed_dir(input_dir, output_dir, SETTINGS, shard_lines=4, progress=False)
    assert summary.failed == {str(input_dir / "big.txt"): "disk full"} and summary.files == 0
    assert not (output_dir / "big.hdf5").exists() and not (output_dir / ".embed-dir" / "big.json").exists()
    monkeypatch.undo()
    summary = embed_dir(input_dir, output_dir, SETTINGS, shard_lines=4, progress=False)
    assert (summary.files, summary.sentences) == (1, 4)  # only the missing shard (lines 9-12) ran again
    assert_same_as_embed(parity_bilm, input_dir, output_dir, ["big"])
    assert sorted(p.name for p in (output_dir / ".embed-dir").iterdir()) == ["big.json", "lock"]  # parts removed
    # an output without its record (crash between the rename and the record) is not finished
    (output_dir / ".embed-dir" / "big.json").unlink()
    assert embed_dir(input_dir, output_dir, SETTINGS, shard_lines=4, progress=False).files == 1


def test_bad_files_are_reported_and_the_others_finish(tmp_path):
    input_dir = write_corpus(tmp_path / "in", {"good": ["a b", "c"], "blank": ["a b", "   ", "c"]})
    (input_dir / "latin1.txt").write_bytes("ok\ncaf\u00e9 au lait\n".encode("latin-1"))
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "embed-dir",
            str(input_dir),
            str(tmp_path / "out"),
            "--options",
            SETTINGS.model.options_file,
            "--weights",
            SETTINGS.model.weight_file,
        ],
    )
    assert result.exit_code == 1
    assert f"{input_dir / 'blank.txt'}: line 2 is blank" in result.output
    assert f"{input_dir / 'latin1.txt'}: line 2 is not valid UTF-8" in result.output
    assert "1 files embedded, 0 skipped (finished before), 2 failed" in result.output
    assert "3 tokens" in result.output and "tokens/s" in result.output
    assert sorted(p.name for p in (tmp_path / "out").glob("*.hdf5")) == ["good.hdf5"]


def test_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="input directory not found"):
        embed_dir(tmp_path / "nope", tmp_path / "out", SETTINGS)
    with pytest.raises(ValueError, match="workers must be an int >= 1"):
        embed_dir(tmp_path, tmp_path / "out", SETTINGS, workers=0)
    with pytest.raises(ValueError, match="shard_lines must be an int >= 1"):
        embed_dir(tmp_path, tmp_path / "out", SETTINGS, shard_lines=0)
    not_both = (
        r"give either model \(a name or a directory\) or options_file \+ weight_file, not both; found model='small'"
    )
    with pytest.raises(ValueError, match=not_both):
        ModelSpec("small", "options.json")
    with pytest.raises(ValueError, match="output_format must be one of"):
        EmbedSettings(output_format="mean")
    monkeypatch.setattr(_compat, "has_ray", False)
    result = CliRunner().invoke(app, ["embed-dir", str(tmp_path), str(tmp_path / "out"), "--ray", "local"])
    assert result.exit_code == 1 and 'pip install "spacy-elmo[ray]"' in result.output
