#!/usr/bin/env python
"""Accuracy of ``precision="int8"`` (and bf16) against fp32: per-token cosine on running text.

    python benchmarks/int8_accuracy.py                   # 10,000 tokens, every model
    python benchmarks/int8_accuracy.py --tokens 2000 --models default

Text: gensim's Lee background corpus (news, installed with gensim's test data), split into
sentences at . ! ? and into words and punctuation. Models: "default" (the bundled model),
"original" (the released architecture with random weights, seed 0), "parity" (the AllenNLP
parity fixture in tests/data). For each precision: the mean, 1st percentile and minimum of the
cosine of each token's vector to its fp32 vector, for the top layer and the average of the
layers. The budget: mean >= 0.995 and 1st percentile >= 0.98. ``--precisions bf16,int8`` adds
bf16 for reference (how sensitive a model is), with plain kernels where oneDNN has no bf16
kernels (slow there).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spacy_elmo import load_bilm  # noqa: E402
from spacy_elmo.bilm import BiLM, kernels, onednn  # noqa: E402
from spacy_elmo.bilm.model import DEFAULT_MODEL_DIR  # noqa: E402
from spacy_elmo.hub.releases import MODELS  # noqa: E402
from tests.helpers import MEAN_COSINE, P1_COSINE, cosines, running_text  # noqa: E402

PARITY = ROOT / "tests" / "data" / "elmo_parity"


def model(name: str) -> BiLM:
    if name == "default":
        return load_bilm(DEFAULT_MODEL_DIR / "options.json", DEFAULT_MODEL_DIR / "weights.hdf5", token_cache_size=0)
    if name == "parity":
        return load_bilm(PARITY / "options.json", PARITY / "weights.hdf5", token_cache_size=0)
    torch.manual_seed(0)
    return BiLM(MODELS["original"].options).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=10_000)
    parser.add_argument("--models", default="default,original,parity")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precisions", default="int8", help="comma list of: bf16, int8 (compared with fp32)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sentences = running_text(args.tokens)
    described = kernels.describe()
    print(
        f"CPU {described['cpu']} ({described['cpu_features']}); int8 kernel {described['int8_kernel']}; "
        f"{sum(map(len, sentences))} tokens in {len(sentences)} sentences; budget mean >= {MEAN_COSINE}, "
        f"1st percentile >= {P1_COSINE}"
    )
    print(f"{'model':9} {'prec':5} {'layer':8} {'mean':>8} {'p1':>8} {'min':>8} {'in budget':>9} {'s':>6}")
    for name in args.models.split(","):
        bilm = model(name)
        fp32 = bilm.embed_sentences(sentences, batch_size=32)
        for prec in args.precisions.split(","):
            mode = "plain" if prec == "bf16" and not onednn.supports(torch.bfloat16) else kernels.mode()
            start = time.perf_counter()
            with kernels.forced(mode):
                found = bilm.embed_sentences(sentences, batch_size=32, precision=prec)
            seconds = time.perf_counter() - start
            for layer, cos in cosines(fp32, found).items():
                mean, p1 = float(cos.mean()), float(np.percentile(cos, 1))
                ok = "yes" if mean >= MEAN_COSINE and p1 >= P1_COSINE else "NO"
                print(
                    f"{name:9} {prec:5} {layer:8} {mean:8.5f} {p1:8.5f} {float(cos.min()):8.5f} {ok:>9} {seconds:6.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
