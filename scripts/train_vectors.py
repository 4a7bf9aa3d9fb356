"""Train static word2vec vectors on the pretraining corpus and package them for spaCy.

Usage: python scripts/train_vectors.py --corpus corpus/pretrain/train.txt --output corpus/vectors
           [--dim 300] [--epochs 5] [--seed 0] [--min-count 5] [--window 5]

The corpus has one tokenized sentence per line, tokens separated by spaces.
Writes (atomically) <output>/w2v.txt (word2vec text format) and <output>/static_model,
a spaCy pipeline made by ``spacy init vectors`` for ``[initialize] vectors`` in
configs/*_static.cfg. Vectors are keyed by the exact token text (ORTH): spaCy 3.8
saves a non-ORTH ``--attr`` only for floret vectors, so LOWER would be lost on reload.
Skip-gram (sg=1) with one worker thread and a fixed seed, so the same corpus and seed give the same vectors
bit for bit (several threads interleave their updates in the order the OS schedules them: two 2-thread trainings
differ; gensim 4.4 draws the start vectors from numpy's seeded generator, so PYTHONHASHSEED does not matter).
``<output>/vectors.json`` records the settings, the training time and the SHA-256 of the vector table
(``static_model/vocab/vectors``), the checksum ``scripts/train_run.py`` writes into the record of every run that
uses the vectors.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

from gensim.models import Word2Vec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vectors_checksum import vectors_checksum  # noqa: E402  (scripts/, beside this file)

# one thread: the only way gensim's updates happen in a fixed order (a second thread would roughly halve the wall
# time on an idle 2-core machine, see docs/experiment/index.md, but gives different vectors on every run)
WORKERS = 1


class TokenizedLines:
    """Restartable iterable of token lists from a one-sentence-per-line file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __iter__(self) -> Iterator[list[str]]:
        with self.path.open(encoding="utf-8") as f:
            for line in f:
                tokens = line.split()
                if tokens:
                    yield tokens


def train_word2vec(
    sentences: TokenizedLines, dim: int, epochs: int, seed: int, min_count: int, window: int
) -> Word2Vec:
    """Skip-gram word2vec over ``sentences``."""
    return Word2Vec(
        sentences=sentences,
        vector_size=dim,
        sg=1,
        window=window,
        min_count=min_count,
        epochs=epochs,
        seed=seed,
        workers=WORKERS,
    )


def save_word2vec_text(model: Word2Vec, path: Path) -> None:
    """Write the vectors in word2vec text format through a temporary file and os.replace."""
    tmp = path.with_name(f".{path.name}.tmp")
    model.wv.save_word2vec_format(str(tmp), binary=False)
    os.replace(tmp, path)


def init_spacy_vectors(w2v_path: Path, model_dir: Path) -> None:
    """Run ``spacy init vectors en`` into a temporary folder, then swap it in at ``model_dir``."""
    tmp_dir = Path(tempfile.mkdtemp(dir=model_dir.parent, prefix=f".{model_dir.name}."))
    try:
        cmd = [sys.executable, "-m", "spacy", "init", "vectors", "en", str(w2v_path), str(tmp_dir)]
        subprocess.run(cmd, check=True)
        tmp_dir.chmod(0o755)
        if model_dir.exists():
            old = Path(tempfile.mkdtemp(dir=model_dir.parent, prefix=f".{model_dir.name}.old."))
            os.replace(model_dir, old / model_dir.name)
            shutil.rmtree(old)
        os.replace(tmp_dir, model_dir)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True, help="tokenized text, one sentence per line")
    parser.add_argument("--output", type=Path, required=True, help="output folder")
    parser.add_argument("--dim", type=int, default=300, help="vector width")
    parser.add_argument("--epochs", type=int, default=5, help="passes over the corpus")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--min-count", type=int, default=5, help="drop words rarer than this")
    parser.add_argument("--window", type=int, default=5, help="context window on each side")
    args = parser.parse_args()
    if not args.corpus.is_file():
        parser.error(f"corpus file not found: {args.corpus}")

    args.output.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    model = train_word2vec(TokenizedLines(args.corpus), args.dim, args.epochs, args.seed, args.min_count, args.window)
    elapsed = time.perf_counter() - start
    w2v_path = args.output / "w2v.txt"
    save_word2vec_text(model, w2v_path)
    init_spacy_vectors(w2v_path, args.output / "static_model")
    checksum = vectors_checksum(args.output / "static_model")
    record = {
        "sha256": checksum,
        "words": len(model.wv),
        "corpus_tokens": model.corpus_total_words,
        "dim": args.dim,
        "epochs": args.epochs,
        "seed": args.seed,
        "min_count": args.min_count,
        "window": args.window,
        "workers": WORKERS,
        "train_seconds": round(elapsed, 1),
    }
    (args.output / "vectors.json").write_text(json.dumps(record, indent=1) + "\n")
    print(
        f"word2vec sg=1 dim={args.dim} epochs={args.epochs} workers={WORKERS}: {len(model.wv)} words "
        f"(min_count={args.min_count}) from {model.corpus_total_words} tokens in {elapsed:.0f}s "
        f"-> {w2v_path}, {args.output / 'static_model'} (vectors sha256 {checksum[:16]})"
    )


if __name__ == "__main__":
    main()
