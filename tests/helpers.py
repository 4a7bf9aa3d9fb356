"""Shared test data and helpers (not a test module: tests import from here, never from each other)."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import h5py
import numpy as np
import spacy
from spacy.cli.init_pipeline import init_vectors_cli
from spacy.tokens import Doc, DocBin
from spacy.training import offsets_to_biluo_tags

from spacy_elmo.bilm import BiLMOptions
from spacy_elmo.embed import EmbedSettings, embed_file
from spacy_elmo.hub import ModelSpec

DATA = Path(__file__).parent / "data"
PARITY = DATA / "elmo_parity"
CONFIGS = Path(__file__).parent.parent / "configs"

# ---- the spaCy component -------------------------------------------------------------------------

TEXT = "The bank approved the loan. They fished by the river bank all day long. Then it rained."
TEXTS = [
    TEXT,
    "Short one.",
    "",
    "A much longer text with many words in it , repeated : " * 3,
    "Whitespace   tokens \n\n and  tabs\t here.",
]


def make_nlp(parity_files, **config) -> spacy.Language:
    nlp = spacy.blank("en")
    options, weights = parity_files
    nlp.add_pipe("elmo", config={"options_file": str(options), "weight_file": str(weights), **config})
    return nlp


# ---- tiny biLMs to train -------------------------------------------------------------------------

TINY = BiLMOptions(filters=((1, 4), (2, 8), (3, 8)), n_highway=1, char_dim=4, projection_dim=8, lstm_dim=24, n_layers=2)
NOUNS = ["dog", "cat", "bird", "farmer", "teacher", "child"]
VERBS = ["sees", "likes", "feeds", "finds"]
ADJ = ["small", "old", "happy", "green"]


def tiny_sentence(rng: random.Random) -> str:
    """A sentence of a tiny regular language: an LM learns it quickly."""
    words = ["the", rng.choice(ADJ), rng.choice(NOUNS), rng.choice(VERBS), "the", rng.choice(NOUNS)]
    if rng.random() < 0.5:
        words += ["in", "the", "park"]
    return " ".join(words + ["."])


def write_tiny_corpus(root: Path) -> dict[str, Path]:
    """A pretraining corpus for the tiny biLM in ``root``: 300 train and 40 held-out sentences (seed 0) and
    ``options.json`` of :data:`TINY`."""
    rng = random.Random(0)
    (root / "train.txt").write_text("\n".join(tiny_sentence(rng) for _ in range(300)) + "\n", encoding="utf-8")
    (root / "heldout.txt").write_text("\n".join(tiny_sentence(rng) for _ in range(40)) + "\n", encoding="utf-8")
    (root / "options.json").write_text(json.dumps(TINY.to_json()), encoding="utf-8")
    return {"train": root / "train.txt", "heldout": root / "heldout.txt", "options": root / "options.json"}


# ---- spacy train workspaces ----------------------------------------------------------------------

NER_EXAMPLES = [
    ("Barack Obama visited Paris yesterday", [(0, 12, "person"), (21, 26, "geo-loc")]),
    ("I love my new iPhone from Apple", [(14, 20, "product"), (26, 31, "company")]),
    ("Watching the Lakers game in Los Angeles tonight", [(13, 19, "sportsteam"), (28, 39, "geo-loc")]),
    ("Taylor Swift is on MTV again", [(0, 12, "person"), (19, 22, "company")]),
    ("nothing to see here lol", []),
    ("Going to London with Sarah", [(9, 15, "geo-loc"), (21, 26, "person")]),
]
TEXTCAT_EXAMPLES = [
    ("A smart , funny and moving film .", "fresh"),
    ("Dull , overlong and badly acted .", "rotten"),
    ("One of the best movies of the year .", "fresh"),
    ("A tedious mess with no redeeming qualities .", "rotten"),
    ("Charming performances carry this delightful story .", "fresh"),
    ("The plot makes no sense and the jokes fall flat .", "rotten"),
]


def ner_docs(nlp) -> list[Doc]:
    """``NER_EXAMPLES`` as Docs with their entities (WNUT-16 labels)."""
    docs = []
    for text, spans in NER_EXAMPLES:
        doc = nlp.make_doc(text)
        doc.ents = [doc.char_span(start, end, label=label) for start, end, label in spans]
        assert "-" not in offsets_to_biluo_tags(doc, spans)
        docs.append(doc)
    return docs


def _textcat_docs(nlp) -> list[Doc]:
    docs = []
    for text, label in TEXTCAT_EXAMPLES:
        doc = nlp.make_doc(text)
        doc.cats = {"fresh": float(label == "fresh"), "rotten": float(label == "rotten")}
        docs.append(doc)
    return docs


def _write_word2vec(path: Path, words: list[str], dim: int = 8) -> None:
    rng = np.random.RandomState(0)
    lines = [f"{len(words)} {dim}"]
    lines += [word + " " + " ".join(f"{x:.4f}" for x in rng.uniform(-1, 1, dim)) for word in words]
    path.write_text("\n".join(lines) + "\n", encoding="utf8")


def build_workspace(root: Path) -> Path:
    """Tiny ``{ner,textcat}/{train,dev}.spacy`` and a static vectors pipeline ``static_model`` under ``root``."""
    nlp = spacy.blank("en")
    words = set()
    for task, make_docs in (("ner", ner_docs), ("textcat", _textcat_docs)):
        docs = make_docs(nlp)
        words.update(token.text for doc in docs for token in doc)
        (root / task).mkdir()
        for split in ("train", "dev"):
            DocBin(docs=docs).to_disk(root / task / f"{split}.spacy")
    _write_word2vec(root / "w2v.txt", sorted(words))
    init_vectors_cli(
        lang="en",
        vectors_loc=root / "w2v.txt",
        output_dir=root / "static_model",
        prune=-1,
        truncate=0,
        mode="default",
        name=None,
        verbose=False,
        jsonl_loc=None,
        attr="ORTH",
    )
    return root


# ---- bulk embedding ------------------------------------------------------------------------------

PARITY_SPEC = ModelSpec(options_file=str(PARITY / "options.json"), weight_file=str(PARITY / "weights.hdf5"))
SETTINGS = EmbedSettings(model=PARITY_SPEC)
SENTENCES = [" ".join(s) for s in json.loads((PARITY / "sentences.json").read_text(encoding="utf-8"))]
# big: 13 lines in 4 shards of 4 (a repeated line too); small: one shard; empty: no line
CORPUS = {"big": SENTENCES[:11] + [SENTENCES[0], "a b c"], "small": ["Hello world", "  café  naïve "], "empty": []}


def write_corpus(directory: Path, files: dict[str, list[str]] = CORPUS) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for stem, lines in files.items():
        (directory / f"{stem}.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return directory


def read_h5(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        return {k: f[k].asstr()[0] if k == "sentence_to_index" else f[k][()] for k in f}


def assert_same_as_embed(bilm, input_dir: Path, output_dir: Path, stems, output_format: str = "all") -> None:
    """Each ``output_dir/<stem>.hdf5`` equals ``embed`` of ``input_dir/<stem>.txt``: keys, JSON map, values (1e-5)."""
    for stem in stems:
        reference = output_dir.parent / f"reference-{stem}.hdf5"
        embed_file(bilm, input_dir / f"{stem}.txt", reference, output_format, progress=False)
        expected, found = read_h5(reference), read_h5(output_dir / f"{stem}.hdf5")
        assert sorted(found) == sorted(expected), stem
        for key, value in expected.items():
            if key == "sentence_to_index":
                assert found[key] == value
            else:
                assert found[key].dtype == np.float32 and found[key].shape == value.shape
                np.testing.assert_allclose(found[key], value, rtol=1e-4, atol=1e-5)


# ---- running text and the int8 accuracy budget --------------------------------------------------

# per-token cosine of int8 to fp32 outputs: mean and 1st percentile
MEAN_COSINE, P1_COSINE = 0.995, 0.98


def running_text(tokens: int) -> list[list[str]]:
    """The first sentences of gensim's Lee background corpus (news text), split at . ! ? into words and
    punctuation, up to ``tokens`` tokens."""
    import gensim

    path = Path(gensim.__file__).parent / "test" / "test_data" / "lee_background.cor"
    sentences, total = [], 0
    for text in re.split(r"(?<=[.!?])\s+", path.read_text(encoding="utf-8")):
        words = re.findall(r"\w+|[^\w\s]", text)
        if words:
            sentences.append(words)
            total += len(words)
        if total >= tokens:
            return sentences
    raise AssertionError(f"{path} holds fewer than {tokens} tokens")


def cosines(reference: list[np.ndarray], found: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Per-token cosine of ``found`` to ``reference`` (``(n_layers, n_tokens, dim)`` each): top layer, layer average."""
    a = np.concatenate(reference, axis=1)
    b = np.concatenate(found, axis=1)

    def cos(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (x * y).sum(-1) / (np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1))

    return {"top": cos(a[-1], b[-1]), "average": cos(a.mean(0), b.mean(0))}
