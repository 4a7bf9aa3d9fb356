#!/usr/bin/env bash
# Re-learn the softmax (lm_head.pt) of the bundled default biLM with the biLM frozen, so that adapting or
# continuing the default model starts from a trained softmax. The biLM weights, and so every vector the
# package produces, stay bitwise the same: this script checks that before it installs anything.
#   scripts/relearn_default_head.sh OUTPUT_DIR DEVICE MINUTES [--install]
# e.g. `runs/default_head cpu 30 --install`. Rerunning resumes from OUTPUT_DIR/checkpoints.
# With --install, OUTPUT_DIR/lm_head.pt is copied to spacy_elmo/data/default/ (shipped with the package).
set -euo pipefail
output=${1:-runs/default_head}
device=${2:-cpu}
minutes=${3:-30}
install=${4:-}
precision=fp32
if [ "$device" = "cpu" ]; then precision=bf16; fi  # frozen biLM: bf16 only where the CPU has bf16 kernels
python3 -m spacy_elmo adapt default corpus/pretrain/train.txt "$output" \
    --heldout corpus/pretrain/heldout.txt --head-only --head-lr 2e-3 \
    --max-length 64 --batch-tokens 4096 --optimizer adam --clip 1.0 --dropout 0.1 \
    --max-minutes "$minutes" --max-epochs 50 --eval-every 500 --checkpoint-every 500 \
    --seed 0 --precision "$precision" --device "$device" --resume
python3 - "$output" <<'EOF'
"""The biLM in OUTPUT_DIR must be the bundled one to the bit: options, vocabulary, every weight dataset."""
import json
import sys
from pathlib import Path

import h5py
import numpy as np

from spacy_elmo.bilm.model import DEFAULT_MODEL_DIR

output = Path(sys.argv[1])
for name in ("options.json", "vocab.txt"):
    same = json.loads((output / name).read_text()) == json.loads((DEFAULT_MODEL_DIR / name).read_text()) \
        if name.endswith(".json") else (output / name).read_text() == (DEFAULT_MODEL_DIR / name).read_text()
    if not same:
        sys.exit(f"error: {output / name} differs from the bundled {name}")
with h5py.File(DEFAULT_MODEL_DIR / "weights.hdf5") as bundled, h5py.File(output / "weights.hdf5") as new:
    names = []
    bundled.visit(lambda n: names.append(n) if isinstance(bundled[n], h5py.Dataset) else None)
    for name in names:
        if name not in new or not np.array_equal(bundled[name][...], new[name][...]):
            sys.exit(f"error: {output}/weights.hdf5: dataset {name} differs from the bundled biLM's")
final = json.loads((output / "metrics.json").read_text())["final"]
print(f"biLM bitwise unchanged ({len(names)} datasets); held-out perplexity {final['ppl']:.1f} at step {final['step']}")
EOF
if [ "$install" = "--install" ]; then
    cp "$output/lm_head.pt" spacy_elmo/data/default/lm_head.pt
    echo "installed spacy_elmo/data/default/lm_head.pt"
fi
