"""The checksum of a spaCy vectors pipeline's vector table, recorded with every run that uses static vectors.

python scripts/vectors_checksum.py corpus/vectors/static_model
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path


def vectors_checksum(model_dir: Path) -> str:
    """SHA-256 (hex) of ``<model_dir>/vocab/vectors``, the table ``spacy init vectors`` saved (rows in key
    order); raises SystemExit with one line when the file is missing."""
    table = Path(model_dir) / "vocab" / "vectors"
    if not table.is_file():
        raise SystemExit(f"error: {table}: no vector table (expected a spaCy pipeline made by spacy init vectors)")
    digest = hashlib.sha256()
    with table.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python scripts/vectors_checksum.py MODEL_DIR")
    print(vectors_checksum(Path(sys.argv[1])))
