"""Downstream scores of trained ELMo pipelines with the biLM in fp32 and in bf16.

    python benchmarks/bf16_downstream.py runs/ner_elmo/seed0/model-best corpus/ner/test.spacy \
        runs/textcat_elmo/seed0/model-best corpus/textcat/test.spacy

Each (pipeline, test set) pair is evaluated twice, with the ``elmo`` component's ``precision`` set to
``"fp32"`` and ``"bf16"``; prints the main scores and their difference.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import spacy
from spacy.tokens import DocBin
from spacy.training import Example

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
    args = parser.parse_args()
    if len(args.pairs) % 2:
        parser.error("give pairs of MODEL and TEST.spacy")
    print(f"{'pipeline':45} {'score':13} {'fp32':>7} {'bf16':>7} {'diff':>6} {'s fp32':>7} {'s bf16':>7}")
    for model, test in zip(args.pairs[::2], args.pairs[1::2]):
        fp32, t32 = evaluate(model, test, "fp32")
        bf16, t16 = evaluate(model, test, "bf16")
        for key in fp32:
            print(
                f"{str(model):45} {key:13} {fp32[key]:7.2f} {bf16[key]:7.2f} {bf16[key] - fp32[key]:+6.2f} "
                f"{t32:7.1f} {t16:7.1f}"
            )


if __name__ == "__main__":
    main()
