"""Score a trained pipeline on the test split as ``spacy evaluate`` does, and keep what each test document got.

    python scripts/evaluate_run.py runs/ner_elmo/seed0/model-best corpus/ner/test.spacy \
        --output runs/ner_elmo/seed0/test_metrics.json --per-doc runs/ner_elmo/seed0/per_doc.json

``--output`` gets the scores ``spacy evaluate --output`` writes, computed the same way (one pass of
``Language.evaluate`` over the test examples read as ``spacy evaluate`` reads them), plus the scorer's other keys.
``--per-doc`` gets, for each test document in corpus order, what the paired bootstrap (``scripts/bootstrap.py``)
resamples: for NER the true positives, false positives and false negatives of each
entity type (``[type index, tp, fp, fn]``, types with all three zero left out; counted as spaCy's scorer counts
them), for textcat the gold and the predicted label (index into ``labels``). The per-document counts are summed
again and must give spaCy's own test scores, else the script stops with one line saying which score differs.
``test_sha256`` names the test file (and ``--limit``), so runs are only paired over the same documents.
``--limit N`` scores only the first N test documents (the quick run).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, Iterable, List

import spacy
from spacy.scorer import Scorer
from spacy.training import Corpus, Example

from spacy_elmo.util.atomic import write_text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bootstrap import counts_of, ner_f1, textcat_macro_f1  # noqa: E402  (scripts/, beside this file)


class KeepingScorer(Scorer):
    """spaCy's scorer that also keeps the scored examples (``Language.evaluate`` scores copies of its input)."""

    examples: List[Example]

    def score(self, examples: Iterable[Example], *, per_component: bool = False) -> Dict[str, Any]:
        self.examples = list(examples)
        return super().score(self.examples, per_component=per_component)


def ner_counts(example: Example, labels: Dict[str, int]) -> List[List[int]]:
    """``[[type index, tp, fp, fn], ...]`` of one example, counted as ``spacy.scorer.get_ner_prf`` counts: a
    predicted entity over tokens without gold annotation is neither right nor wrong."""
    counts: Dict[str, List[int]] = defaultdict(lambda: [0, 0, 0])
    if example.y.has_annotation("ENT_IOB"):
        golds = {(ent.label_, ent.start, ent.end) for ent in example.y.ents}
        align = example.alignment.x2y
        for ent in example.x.ents:
            indices = align[ent.start : ent.end]
            if len(indices) and all(token.ent_iob != 0 for token in example.y[indices[0] : indices[-1] + 1]):
                key = (ent.label_, int(indices[0]), int(indices[-1]) + 1)
                if key in golds:
                    counts[ent.label_][0] += 1
                    golds.remove(key)
                else:
                    counts[ent.label_][1] += 1
        for label, _, _ in golds:
            counts[label][2] += 1
    for label in counts:
        labels.setdefault(label, len(labels))
    return [[labels[label], *values] for label, values in sorted(counts.items(), key=lambda kv: labels[kv[0]])]


def per_doc_record(task: str, examples: List[Example], test_sha256: str) -> dict:
    """The per-document record of ``examples`` (see the module docstring)."""
    if task == "ner":
        labels: Dict[str, int] = {}
        docs = [ner_counts(example, labels) for example in examples]
        order = sorted(labels)  # the same label order for every run, whatever the documents' order
        remap = {labels[name]: i for i, name in enumerate(order)}
        docs = [sorted([[remap[c[0]], *c[1:]] for c in doc]) for doc in docs]
        return {"task": task, "test_sha256": test_sha256, "labels": order, "docs": docs}
    names = sorted({name for example in examples for name in example.reference.cats})
    index = {name: i for i, name in enumerate(names)}

    def top(cats: Dict[str, float]) -> int:
        return index[max(cats.items(), key=lambda item: item[1])[0]]

    return {
        "task": task,
        "test_sha256": test_sha256,
        "labels": names,
        "gold": [top(example.reference.cats) for example in examples],
        "pred": [top(example.predicted.cats) for example in examples],
    }


def check_against(record: dict, scores: Dict[str, Any]) -> None:
    """Exit with one line when the summed per-document counts do not give spaCy's score."""
    totals = counts_of(record).sum(axis=0)
    if record["task"] == "ner":
        name, mine, theirs = "ents_f", ner_f1(totals[None, :])[0], scores["ents_f"] or 0.0
    else:
        name, mine, theirs = "cats_macro_f", textcat_macro_f1(totals[None, :])[0], scores["cats_macro_f"]
    if abs(mine - theirs) > 1e-9:
        sys.exit(f"error: per-document counts give {name} {mine:.6f}, spaCy's scorer {theirs:.6f}")


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="trained pipeline (model-best)")
    parser.add_argument("data", type=Path, help="test split (.spacy)")
    parser.add_argument("--output", type=Path, required=True, help="scores JSON, as spacy evaluate --output")
    parser.add_argument("--per-doc", type=Path, required=True, help="per-document results JSON")
    parser.add_argument("--limit", type=int, default=0, help="only the first N test documents (0: all)")
    args = parser.parse_args()
    for path, what in ((args.model, "pipeline folder"), (args.data, "test .spacy file")):
        if not path.exists():
            sys.exit(f"error: {path}: no such {what}")
    nlp = spacy.load(args.model)
    task = "ner" if "ner" in nlp.pipe_names else "textcat" if "textcat" in nlp.pipe_names else None
    if task is None:
        sys.exit(f"error: {args.model}: pipeline has neither ner nor textcat (found {nlp.pipe_names})")
    examples = list(Corpus(args.data, gold_preproc=False, limit=args.limit)(nlp))
    scorer = KeepingScorer(nlp=nlp)
    scores = nlp.evaluate(examples, scorer=scorer)
    test_id = file_sha256(args.data) + (f":first{args.limit}" if args.limit else "")
    record = per_doc_record(task, scorer.examples, test_id)
    check_against(record, scores)
    write_text(args.output, json.dumps(scores, indent=2) + "\n")
    write_text(args.per_doc, json.dumps(record, separators=(",", ":")) + "\n")
    main_score = scores["ents_f"] if task == "ner" else scores["cats_macro_f"]
    print(f"{args.model}: {task} test {main_score:.4f} over {len(examples)} documents -> {args.output}, {args.per_doc}")


if __name__ == "__main__":
    main()
