"""Word-sense separation by ELMo token vectors: WordNet example sentences and the "bank" check.

WordNet 3.0 (Debian ``wordnet-base``) illustrates many senses with example sentences. For every word
that has examples (containing the word exactly once) under two or more senses, with two or more
examples under at least one of them, each triplet (anchor, positive: another example of the anchor's
sense, negative: an example of another sense of the word) is scored: separated when the cosine of the
word's vector in the anchor and the positive is larger than in the anchor and the negative. Chance is
0.5; a static vector (the same for every occurrence) never separates. Accuracy over all triplets
(micro) and averaged over words (macro), for each layer and for the average of the layers
(``Token._.elmo`` with ``mix="average"``). The sentences are tokenized by spaCy's English tokenizer.

    python scripts/word_sense.py --assets assets --output results/word_sense.json [--options null --weights null]

``--options`` / ``--weights`` ``null`` (the default) use the bundled default biLM.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import numpy
import spacy
from evaluation import cosine, elmo_pipeline, optional_path
from spacy.language import Language
from spacy.tokens import Doc

from assets import SourceUnavailable, debian_package
from spacy_elmo.util.atomic import write_text

Example = Tuple[Tuple[str, ...], int]  # (tokens, position of the word)
Triplet = Tuple[str, Example, Example, Example]  # (word, anchor, positive, negative)
DATA_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
BANK = (
    ("He went to the bank to deposit money", 4),
    ("The bank approved the loan", 1),
    ("They fished by the bank of the river", 4),
)


def read_examples(wordnet: Path, tokenize: Callable[[str], List[str]]) -> Dict[str, Dict[str, List[Example]]]:
    """``word -> sense (file:offset) -> examples`` from WordNet's ``data.*`` files.

    A data line is ``offset lex_filenum ss_type w_cnt(hex) word lex_id ... | gloss; "example"; ...``;
    the licence header lines start with two spaces. Multi-word lemmas are skipped.
    """
    examples: Dict[str, Dict[str, List[Example]]] = defaultdict(lambda: defaultdict(list))
    for name in DATA_FILES:
        path = wordnet / name
        if not path.is_file():
            raise ValueError(f"{path}: not found (expected WordNet 3.0 data files in {wordnet})")
        for line in path.read_text(encoding="latin-1").splitlines():
            if line.startswith("  ") or " | " not in line:
                continue
            head, gloss = line.split(" | ", 1)
            fields = head.split()
            words = {fields[4 + 2 * i].lower() for i in range(int(fields[3], 16))}
            for sentence in re.findall(r'"([^"]+)"', gloss):
                tokens = tokenize(sentence)
                lowered = [t.lower() for t in tokens]
                for word in sorted(words):
                    if "_" not in word and lowered.count(word) == 1:
                        examples[word][f"{name}:{fields[0]}"].append((tuple(tokens), lowered.index(word)))
    return examples


def make_triplets(examples: Dict[str, Dict[str, List[Example]]]) -> List[Triplet]:
    """Every (word, anchor, positive, negative) with anchor != positive of one sense, negative of another."""
    triplets = []
    for word, senses in sorted(examples.items()):
        for sense, items in senses.items():
            for anchor, positive in itertools.permutations(items, 2):
                for other, negatives in senses.items():
                    if other != sense:
                        triplets.extend((word, anchor, positive, negative) for negative in negatives)
    return triplets


def separation(triplets: Sequence[Triplet], vector: Callable[[Example], numpy.ndarray]) -> Dict[str, float]:
    """Micro (all triplets) and macro (mean over words) fraction of separated triplets."""
    per_word: Dict[str, List[bool]] = defaultdict(list)
    for word, anchor, positive, negative in triplets:
        a = vector(anchor)
        per_word[word].append(cosine(a, vector(positive)) > cosine(a, vector(negative)))
    return {
        "micro": float(numpy.mean([x for hits in per_word.values() for x in hits])),
        "macro": float(numpy.mean([numpy.mean(hits) for hits in per_word.values()])),
    }


def layer_vectors(nlp: Language, sentences: Sequence[Tuple[str, ...]]) -> Dict[Tuple[str, ...], numpy.ndarray]:
    """Each sentence's ``Doc._.elmo_layers`` ``(n_layers, tokens, dim)``."""
    docs = nlp.pipe(Doc(nlp.vocab, words=list(words)) for words in sentences)
    return {words: doc._.elmo_layers for words, doc in zip(sentences, docs)}


def wordnet_scores(nlp: Language, triplets: Sequence[Triplet]) -> Dict[str, object]:
    """Separation per layer and for the average of the layers."""
    layers = layer_vectors(nlp, sorted({ex[0] for t in triplets for ex in t[1:]}))
    n_layers = next(iter(layers.values())).shape[0]
    scores: Dict[str, object] = {
        "words": len({t[0] for t in triplets}),
        "triplets": len(triplets),
        "sentences": len(layers),
    }
    for layer in range(1, n_layers):
        scores[f"layer{layer}"] = separation(triplets, lambda ex, k=layer: layers[ex[0]][k, ex[1]])
    scores["average"] = separation(triplets, lambda ex: layers[ex[0]][:, ex[1]].mean(axis=0))
    return scores


def bank_check(nlp: Language) -> Dict[str, object]:
    """The "bank" check: is money-"bank" closer to loan-"bank" than to river-"bank"?"""
    tokens = [doc[i] for doc, (_, i) in zip(nlp.pipe(text for text, _ in BANK), BANK)]
    money, loan, river = tokens
    result: Dict[str, object] = {"loan": money.similarity(loan), "river": money.similarity(river)}
    for layer in range(1, money.doc._.elmo_layers.shape[0]):
        vectors = [t.doc._.elmo_layers[layer, t.i] for t in tokens]
        result[f"layer{layer}"] = {"loan": cosine(vectors[0], vectors[1]), "river": cosine(vectors[0], vectors[2])}
    result["passes"] = bool(result["loan"] > result["river"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assets", type=Path, default=Path("assets"), help="where wordnet-base is downloaded")
    parser.add_argument("--options", type=optional_path, default=None, help="biLM options.json (null: bundled)")
    parser.add_argument("--weights", type=optional_path, default=None, help="biLM weights.hdf5 (null: bundled)")
    parser.add_argument("--output", type=Path, default=Path("results/word_sense.json"), help="JSON to write")
    parser.add_argument("--bank-only", action="store_true", help='print only the "bank" check (no WordNet, no file)')
    args = parser.parse_args()
    if args.bank_only:
        print(json.dumps(bank_check(elmo_pipeline(args.options, args.weights)), indent=2))
        return
    try:
        wordnet = debian_package(args.assets, "wordnet-base") / "usr" / "share" / "wordnet"
    except SourceUnavailable as err:
        raise SystemExit(f"WordNet (Debian wordnet-base) is needed: {err}") from None
    tokenizer = spacy.blank("en").tokenizer
    try:
        triplets = make_triplets(read_examples(wordnet, lambda text: [t.text for t in tokenizer(text)]))
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    nlp = elmo_pipeline(args.options, args.weights)
    results = {"wordnet": wordnet_scores(nlp, triplets), "bank": bank_check(nlp)}
    write_text(args.output, json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
