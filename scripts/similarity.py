"""Document and word similarity of ELMo vs static word2vec vectors against human judgements.

- Lee et al. (2005), 50 news documents: Pearson r between the mean human similarity and
  ``doc.similarity`` (cosine of mean vectors) over the 1,225 off-diagonal pairs. The gold matrix
  ``similarities0-1.txt`` holds the upper triangle only; it is mirrored before use. ELMo rows: the
  ``elmo`` component's vectors for each mix (layer 0 .. top, and the average of all layers).
- WordSim-353 and SimLex-999: Spearman rho between the human score and the cosine of the two
  words' vectors. ELMo: layer 0 (the context-free character-CNN layer) of each word embedded alone.
  Static vectors cover only the words of the word2vec vocabulary: both methods are also scored
  on the pairs the static vectors cover.

    python scripts/similarity.py --similarity corpus/similarity --vectors corpus/vectors/static_model \\
        --output results/similarity.json [--options null --weights null]

``--options`` / ``--weights`` ``null`` (the default) use the bundled default biLM.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy
import spacy
from evaluation import cosine, elmo_pipeline, optional_path
from scipy.stats import pearsonr, spearmanr
from spacy.language import Language
from spacy.tokens import Doc

from spacy_elmo.util.atomic import write_text

WORD_SETS = {"wordsim353": "wordsim353.tsv", "simlex999": "simlex999.txt"}


def read_lee(folder: Path) -> Tuple[List[str], numpy.ndarray]:
    """The 50 Lee documents and the symmetric ``(50, 50)`` human similarity matrix."""
    texts = [line.strip() for line in (folder / "lee.cor").read_text(encoding="utf8").splitlines() if line.strip()]
    rows = [
        [float(x) for x in line.split()]
        for line in (folder / "similarities0-1.txt").read_text().splitlines()
        if line.strip()
    ]
    matrix = numpy.asarray(rows, dtype="float64")
    if matrix.shape != (len(texts), len(texts)):
        raise ValueError(f"similarities0-1.txt is {matrix.shape}, expected ({len(texts)}, {len(texts)})")
    upper = numpy.triu(matrix, k=1)
    return texts, upper + upper.T + numpy.eye(len(texts))


def read_word_pairs(path: Path) -> List[Tuple[str, str, float]]:
    """``(word1, word2, human score)`` from a tab-separated file with ``#`` comment lines."""
    pairs = []
    for line in path.read_text(encoding="utf8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        a, b, score = line.split("\t")[:3]
        pairs.append((a, b, float(score)))
    return pairs


def off_diagonal(matrix: numpy.ndarray) -> numpy.ndarray:
    """The ``n * (n - 1) / 2`` entries above the diagonal of an ``(n, n)`` matrix."""
    return matrix[numpy.triu_indices(matrix.shape[0], k=1)]


def similarity_matrix(vectors: Sequence[numpy.ndarray]) -> numpy.ndarray:
    """Pairwise cosine ``(n, n)`` of ``n`` vectors ``(dim,)``."""
    n = len(vectors)
    return numpy.asarray([[cosine(vectors[i], vectors[j]) for j in range(n)] for i in range(n)])


def lee_scores(texts: List[str], gold: numpy.ndarray, elmo: Language, static: Language) -> Dict[str, float]:
    """Pearson r per method over the off-diagonal pairs."""
    human = off_diagonal(gold)
    elmo_docs = list(elmo.pipe(texts))
    scores = {
        "elmo_average (doc.similarity)": _pearson(human, [[a.similarity(b) for b in elmo_docs] for a in elmo_docs])
    }
    n_layers = elmo_docs[0]._.elmo_layers.shape[0]
    for layer in range(n_layers):
        vectors = [doc._.elmo_layers[layer].mean(axis=0) for doc in elmo_docs]
        scores[f"elmo_layer{layer}"] = _pearson(human, similarity_matrix(vectors))
    static_docs = list(static.pipe(texts))
    scores["static (doc.similarity)"] = _pearson(human, [[a.similarity(b) for b in static_docs] for a in static_docs])
    return scores


def _pearson(human: numpy.ndarray, predicted: Sequence[Sequence[float]]) -> float:
    return float(pearsonr(human, off_diagonal(numpy.asarray(predicted, dtype="float64")))[0])


def elmo_word_vectors(nlp: Language, words: Sequence[str]) -> Dict[str, numpy.ndarray]:
    """Layer 0 ``(dim,)`` of each word embedded alone (a one-token Doc)."""
    docs = nlp.pipe(Doc(nlp.vocab, words=[word]) for word in words)
    return {word: doc._.elmo_layers[0, 0] for word, doc in zip(words, docs)}


def word_scores(pairs: List[Tuple[str, str, float]], elmo: Language, static: Language) -> Dict[str, object]:
    """Spearman rho of ELMo layer 0 (all pairs, covered pairs) and static vectors (covered pairs)."""
    words = sorted({w for a, b, _ in pairs for w in (a, b)})
    elmo_vectors = elmo_word_vectors(elmo, words)
    covered = [(a, b, s) for a, b, s in pairs if static.vocab.has_vector(a) and static.vocab.has_vector(b)]

    def rho(subset: List[Tuple[str, str, float]], vector) -> float:
        return float(spearmanr([s for _, _, s in subset], [cosine(vector(a), vector(b)) for a, b, _ in subset])[0])

    return {
        "pairs": len(pairs),
        "covered_pairs": len(covered),
        "spearman": {
            "elmo_layer0 (all pairs)": rho(pairs, elmo_vectors.__getitem__),
            "elmo_layer0 (covered pairs)": rho(covered, elmo_vectors.__getitem__),
            "static (covered pairs)": rho(covered, lambda w: static.vocab.get_vector(w)),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--similarity", type=Path, default=Path("corpus/similarity"), help="gold files folder")
    parser.add_argument(
        "--vectors", type=Path, default=Path("corpus/vectors/static_model"), help="spaCy vectors pipeline"
    )
    parser.add_argument("--options", type=optional_path, default=None, help="biLM options.json (null: bundled)")
    parser.add_argument("--weights", type=optional_path, default=None, help="biLM weights.hdf5 (null: bundled)")
    parser.add_argument("--output", type=Path, default=Path("results/similarity.json"), help="JSON to write")
    args = parser.parse_args()
    elmo = elmo_pipeline(args.options, args.weights)
    static = spacy.load(args.vectors)
    texts, gold = read_lee(args.similarity)
    results: Dict[str, object] = {
        "lee": {
            "documents": len(texts),
            "pairs": len(off_diagonal(gold)),
            "pearson": lee_scores(texts, gold, elmo, static),
        }
    }
    for name, filename in WORD_SETS.items():
        results[name] = word_scores(read_word_pairs(args.similarity / filename), elmo, static)
    write_text(args.output, json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
