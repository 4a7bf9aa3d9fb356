"""Downstream scores of trained ELMo pipelines with the biLM in fp32, bf16 and int8.

    python benchmarks/bf16_downstream.py runs/ner_elmo/seed0/model-best corpus/ner/test.spacy \
        runs/textcat_elmo/seed0/model-best corpus/textcat/test.spacy [--precisions fp32,bf16,int8]

Each (pipeline, test set) pair is evaluated once per precision, with the ``elmo`` component's
``precision`` set to it (fp32 first: the reference); prints the main scores, their difference
to fp32 and the evaluation time. A precision that runs as another one on this machine (see
``spacy-elmo info``) is labelled with what ran.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import spacy
import torch
from spacy.tokens import DocBin
from spacy.training import Example

from spacy_elmo.bilm import kernels
from spacy_elmo.bilm.precision import PRECISIONS, check_precision

SCORES = ("ents_f", "cats_macro_f", "cats_micro_f")


def evaluate(model: Path, test: Path, precision: str) -> tuple[dict[str, float], float]:
    nlp = spacy.load(model, config={"components": {"elmo": {"precision": precision}}})
    docs = list(DocBin().from_disk(test).get_docs(nlp.vocab))
    examples = [Example(nlp.make_doc(doc.text), doc) for doc in docs]
    started = time.perf_counter()
    scores = nlp.evaluate(examples)
    return {k: 100 * scores[k] for k in SCORES if scores.get(k) is not None}, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pairs", nargs="+", type=Path, help="MODEL TEST.spacy [MODEL TEST.spacy ...]")
    parser.add_argument("--precisions", default=",".join(PRECISIONS), help="comma list; fp32 is always first")
    args = parser.parse_args()
    if len(args.pairs) % 2:
        parser.error("give pairs of MODEL and TEST.spacy")
    others = [check_precision(p, "--precisions") for p in args.precisions.split(",") if p != "fp32"]
    ran = {p: kernels.runs_as(p, torch.device("cpu")) for p in others}
    labels = {p: p if ran[p] == p else f"{p}->{ran[p]}" for p in others}
    print(
        f"{'pipeline':45} {'score':13} {'fp32':>7} "
        + " ".join(f"{labels[p]:>10} {'diff':>6}" for p in others)
        + f" {'s fp32':>7} "
        + " ".join(f"{'s ' + p:>7}" for p in others)
    )
    for model, test in zip(args.pairs[::2], args.pairs[1::2]):
        fp32, t32 = evaluate(model, test, "fp32")
        results = {p: evaluate(model, test, p) for p in others}
        for key in fp32:
            print(
                f"{str(model):45} {key:13} {fp32[key]:7.2f} "
                + " ".join(f"{results[p][0][key]:10.2f} {results[p][0][key] - fp32[key]:+6.2f}" for p in others)
                + f" {t32:7.1f} "
                + " ".join(f"{results[p][1]:7.1f}" for p in others)
            )


if __name__ == "__main__":
    main()
