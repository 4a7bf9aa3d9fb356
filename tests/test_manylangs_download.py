"""ELMoForManyLangs' released models: the name table, the safe atomic zip unpacker, and fetching a zip in the
published layout from a 127.0.0.1 server through the cache."""

from __future__ import annotations

import json
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest

from spacy_elmo.bilm.model_dir import load_directory
from spacy_elmo.hub import IntegrityError, download
from spacy_elmo.hub.cache import hash_file
from spacy_elmo.hub.manylangs_releases import MANY_LANGS, NLPL_BASE, fetch_many_langs, many_langs_model, unpack_zip

from .model_server import MirrorServer

MANYLANGS = Path(__file__).parent / "data" / "manylangs"


def test_the_44_released_languages():
    assert len(MANY_LANGS) == 44
    assert sorted(m.number for m in MANY_LANGS.values()) == list(range(136, 180))
    assert (
        many_langs_model("many-langs/zh").url()
        == NLPL_BASE + "179.zip"
        == "http://vectors.nlpl.eu/repository/11/179.zip"
    )
    assert many_langs_model("many-langs/de").url().endswith("/142.zip")
    assert many_langs_model("many-langs/ja").url().endswith("/160.zip")
    # the README lists Bokmål before Dutch, but the numbers go the other way
    assert (many_langs_model("many-langs/nl").number, many_langs_model("many-langs/nb").number) == (164, 165)
    assert many_langs_model("many-langs/grc").language == "Ancient Greek"
    with pytest.raises(ValueError, match=r"unknown ELMoForManyLangs model 'many-langs/zz'; did you mean"):
        many_langs_model("many-langs/zz")


def make_zip(path: Path, members: dict[str, bytes], symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if symlink is not None:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return path


def published_zip(path: Path, prefix: str = "") -> Path:
    """The fixture model in the published layout: the model files at the zip's root (or under ``prefix``)."""
    members = {prefix + f.name: f.read_bytes() for f in sorted((MANYLANGS / "words").iterdir())}
    members[prefix + "meta.json"] = b'{"id": 179}'
    return make_zip(path, members)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_unpack_zip_is_complete_and_idempotent(tmp_path):
    archive = published_zip(tmp_path / "179.zip")
    target = unpack_zip(archive, tmp_path / "179")
    assert sorted(p.name for p in target.iterdir()) == sorted(
        [*(p.name for p in (MANYLANGS / "words").iterdir()), "meta.json"]
    )
    assert (target / "encoder.pkl").read_bytes() == (MANYLANGS / "words" / "encoder.pkl").read_bytes()
    assert stat.S_IMODE(target.stat().st_mode) & 0o755 == 0o755
    (target / "meta.json").write_text("kept")
    assert unpack_zip(archive, target) == target and (target / "meta.json").read_text() == "kept"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "members, symlink, message",
    [
        ({"config.json": b"{}", "../evil.txt": b"x"}, None, r"member '\.\./evil\.txt' points outside"),
        ({"a/../../evil.txt": b"x"}, None, r"points outside"),
        ({"/etc/evil.txt": b"x"}, None, r"member '/etc/evil\.txt' has an absolute path"),
        ({"C:/evil.txt": b"x"}, None, r"has an absolute path"),
        ({"config.json": b"{}"}, "link", r"member 'link' is a symbolic link"),
    ],
)
def test_unpack_zip_refuses_unsafe_members(tmp_path, members, symlink, message):
    archive = make_zip(tmp_path / "bad.zip", members, symlink)
    (tmp_path / "out").mkdir()
    with pytest.raises(ValueError, match=message):
        unpack_zip(archive, tmp_path / "out" / "model")
    assert list((tmp_path / "out").iterdir()) == []
    assert not (tmp_path / "evil.txt").exists()


def test_unpack_zip_leaves_nothing_when_it_fails(tmp_path):
    archive = published_zip(tmp_path / "good.zip")
    (tmp_path / "out").mkdir()
    with pytest.raises(ValueError, match=r"unpacks to [\d,]+ bytes, more than the limit of 1,000"):
        unpack_zip(archive, tmp_path / "out" / "model", max_bytes=1000)
    with zipfile.ZipFile(archive) as zf:  # damage the middle of encoder.pkl's compressed bytes
        names = zf.namelist()
        info = zf.getinfo("encoder.pkl")
    assert names.index("encoder.pkl") > 0  # files before it are unpacked first, then removed
    data = bytearray(archive.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + info.compress_size // 2
    data[start : start + 40] = bytes(b ^ 0xFF for b in data[start : start + 40])
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"damaged\.zip: (damaged zip archive|not a readable zip)"):
        unpack_zip(damaged, tmp_path / "out" / "model")
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"junk\.zip: not a readable zip archive"):
        unpack_zip(tmp_path / "junk.zip", tmp_path / "out" / "model")
    assert list((tmp_path / "out").iterdir()) == []


@pytest.fixture
def nlpl_server(tmp_path_factory):
    """A 127.0.0.1 server with the fixture model as repository/11/179.zip (files at the root) and
    repository/11/142.zip (files under one directory)."""
    root = tmp_path_factory.mktemp("nlpl")
    (root / "repository" / "11").mkdir(parents=True)
    published_zip(root / "repository" / "11" / "179.zip")
    published_zip(root / "repository" / "11" / "142.zip", prefix="de.model/")
    server = MirrorServer(root)
    yield server
    server.stop()


@pytest.mark.slow
def test_fetch_by_name_from_a_local_server(nlpl_server, model_cache, monkeypatch):
    base = nlpl_server.url("repository/11/")
    sentences = json.loads((MANYLANGS / "sentences.json").read_text(encoding="utf-8"))
    expected = load_directory(MANYLANGS / "words").embed_sentences(sentences)
    directory = fetch_many_langs("many-langs/zh", base=base)
    assert directory.is_relative_to(model_cache) and nlpl_server.requests == ["repository/11/179.zip"]
    got = load_directory(directory).embed_sentences(sentences)
    assert all(np.array_equal(a, b) for a, b in zip(got, expected))
    archive = directory.with_name("179.zip")
    assert hash_file(archive).is_file()  # sha256 recorded at the first download
    # later loads: from the cache, offline, the zip checked again
    monkeypatch.setenv("SPACY_ELMO_OFFLINE", "1")
    assert fetch_many_langs("many-langs/zh", base=base) == directory
    assert len(nlpl_server.requests) == 1
    with pytest.raises(download.DownloadError, match=r"'many-langs/de'.*SPACY_ELMO_OFFLINE=1"):
        fetch_many_langs("many-langs/de", base=base)
    monkeypatch.delenv("SPACY_ELMO_OFFLINE")
    # a zip that no longer matches its recorded sha256 is deleted with what was unpacked from it
    archive.write_bytes(archive.read_bytes()[:-1] + b"!")
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        fetch_many_langs("many-langs/zh", base=base)
    assert not archive.exists() and not directory.exists()
    assert fetch_many_langs("many-langs/zh", base=base) == directory  # downloaded and unpacked again
    # a zip holding the model under one directory
    german = fetch_many_langs("many-langs/de", base=base)
    assert german.name == "de.model" and (german / "char.dic").is_file()


@pytest.mark.slow
def test_released_names_load_everywhere_a_model_is_accepted(nlpl_server, model_cache, monkeypatch):
    import spacy
    from typer.testing import CliRunner

    from spacy_elmo import ElmoEmbedder, load_bilm
    from spacy_elmo.cli import app

    monkeypatch.setenv("SPACY_ELMO_MANY_LANGS_MIRROR", nlpl_server.url("repository/11"))
    sentences = json.loads((MANYLANGS / "sentences.json").read_text(encoding="utf-8"))[:3]
    expected = load_directory(MANYLANGS / "words").embed_sentences(sentences)
    assert "no      Chinese" in CliRunner().invoke(app, ["models"]).output
    for got in (
        load_bilm("many-langs/zh").embed_sentences(sentences),
        ElmoEmbedder("many-langs/zh").embed_batch(sentences),
    ):
        assert all(np.array_equal(a, b) for a, b in zip(got, expected))
    assert nlpl_server.requests == ["repository/11/179.zip"]  # downloaded once, then from the cache
    monkeypatch.setenv("SPACY_ELMO_OFFLINE", "1")
    nlp = spacy.blank("zh")
    nlp.add_pipe("elmo", config={"model": "many-langs/zh"})
    doc = nlp.make_doc("".join(sentences[0]))
    assert nlp.get_pipe("elmo")(doc)._.elmo_layers.shape == (3, len(doc), expected[0].shape[-1])
    assert "yes     Chinese" in CliRunner().invoke(app, ["models"]).output
    with pytest.raises(ValueError, match=r"unknown ELMoForManyLangs model 'many-langs/zz'; did you mean"):
        load_bilm("many-langs/zz")
    monkeypatch.setenv("SPACY_ELMO_MANY_LANGS_MIRROR", "not a url")
    with pytest.raises(ValueError, match="SPACY_ELMO_MANY_LANGS_MIRROR must be a base URL"):
        load_bilm("many-langs/de")


def test_a_zip_of_a_model_directory_loads_like_the_directory(tmp_path, model_cache):
    from spacy_elmo import load_bilm

    from .helpers import PARITY

    sentences = json.loads((MANYLANGS / "sentences.json").read_text(encoding="utf-8"))[:4]
    # an ELMoForManyLangs directory at the zip's root, and an NLPL bilm-tf model (model.hdf5) under one folder
    many = published_zip(tmp_path / "many.zip")
    nlpl = make_zip(
        tmp_path / "nlpl.zip",
        {
            "english/options.json": (PARITY / "options.json").read_bytes(),
            "english/model.hdf5": (PARITY / "weights.hdf5").read_bytes(),
        },
    )
    for archive, directory in ((many, MANYLANGS / "words"), (nlpl, None)):
        expected = (
            load_directory(directory)
            if directory
            else load_bilm(*(PARITY / f for f in ("options.json", "weights.hdf5")))
        ).embed_sentences(sentences)
        got = load_bilm(str(archive)).embed_sentences(sentences)
        assert all(np.array_equal(a, b) for a, b in zip(got, expected)), archive.name
    assert len(list((model_cache / "unpacked").iterdir())) == 2
    load_bilm(str(many))  # unpacked once
    assert len(list((model_cache / "unpacked").iterdir())) == 2
    with pytest.raises(ValueError, match="model archive not found: .*missing.zip"):
        load_bilm(str(tmp_path / "missing.zip"))
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.zip: not a readable zip archive"):
        load_bilm(str(tmp_path / "bad.zip"))


def test_embed_dir_with_a_many_languages_model(tmp_path):
    from spacy_elmo.embed import EmbedSettings, embed_dir
    from spacy_elmo.hub import ModelSpec

    from .helpers import read_h5, write_corpus

    sentences = json.loads((MANYLANGS / "sentences.json").read_text(encoding="utf-8"))[:3]
    input_dir = write_corpus(tmp_path / "in", {"zh": [" ".join(s) for s in sentences]})
    settings = EmbedSettings(model=ModelSpec(str(MANYLANGS / "words")))
    summary = embed_dir(input_dir, tmp_path / "out", settings, progress=False)
    assert (summary.files, summary.failed) == (1, {})
    found = read_h5(tmp_path / "out" / "zh.hdf5")
    for i, layers in enumerate(load_directory(MANYLANGS / "words").embed_sentences(sentences)):
        np.testing.assert_allclose(found[str(i)], layers, rtol=0, atol=1e-6)
    assert embed_dir(input_dir, tmp_path / "out", settings, progress=False).skipped == 1
