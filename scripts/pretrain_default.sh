#!/usr/bin/env bash
# Pretrain the bundled default English biLM on corpus/pretrain (scripts/prepare_corpus.py) and export it.
#   scripts/pretrain_default.sh OUTPUT_DIR DEVICE MINUTES [INIT_FROM]
# e.g. `runs/default cuda 6.3` for a new model, `runs/default2 cuda 4.3 runs/default` to continue one.
# The exported options.json + weights.hdf5 + vocab.txt (+ lm_head.pt, metrics.json) go into OUTPUT_DIR;
# copy the first three into spacy_elmo/data/default/ to make them the package's default model.
set -euo pipefail
output=${1:-runs/default}
device=${2:-cpu}
minutes=${3:-60}
if [ -n "${4:-}" ]; then
    model=(--init-from "$4" --lr 1.5e-3 --warmup-steps 100 --batch-tokens 32768)
else
    model=(--options configs/bilm/default_options.json --vocab-size 50000 --min-count 3 --lr 2e-3 --batch-tokens 16384)
fi
if [ "$device" = "cpu" ]; then model+=(--batch-tokens 4096 --precision bf16); fi  # bf16 autocast: 2x fp32 on CPU
python3 -m spacy_elmo pretrain corpus/pretrain/train.txt "$output" \
    --heldout corpus/pretrain/heldout.txt "${model[@]}" --max-length 64 \
    --optimizer adam --clip 1.0 --dropout 0.1 \
    --max-minutes "$minutes" --max-epochs 50 --eval-every 1000 --checkpoint-every 500 \
    --seed 0 --device "$device"
