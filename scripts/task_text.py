"""Unlabelled, tokenized text of a task split for `spacy-elmo adapt`: one document per line.

  python scripts/task_text.py corpus/ner/train.spacy corpus/adapt/ner_train.txt
  python scripts/task_text.py corpus/textcat/train.spacy corpus/adapt/textcat_train.txt --plots --assets assets

Only the token texts are written (no labels). ``--plots`` adds the Rotten Tomatoes plot summaries
(unlabelled; read as scripts/prepare_corpus.py reads them). Give it train splits only for adaptation:
dev text is for held-out perplexity, test text never enters.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import spacy
from prepare_corpus import rotten_tomatoes_plots, tokenized_chunks
from spacy.tokens import DocBin

from assets import write_text


def split_lines(path: Path) -> list[str]:
    """The documents of a ``.spacy`` file as space-joined token texts (whitespace tokens dropped)."""
    nlp = spacy.blank("en")
    docs = DocBin().from_disk(path).get_docs(nlp.vocab)
    lines = [" ".join(t.text for t in doc if not t.is_space) for doc in docs]
    return [line for line in lines if line]


def plot_lines(assets: Path) -> list[str]:
    """The plot summaries, one sentence per line, tokenized like the pretraining corpus."""
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    return [line for chunk in tokenized_chunks(nlp, rotten_tomatoes_plots(assets)) for line in chunk]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("split", type=Path, help="a .spacy file (a task's train or dev split)")
    parser.add_argument("output", type=Path, help="the text file to write")
    parser.add_argument("--plots", action="store_true", help="add the Rotten Tomatoes plot summaries")
    parser.add_argument("--assets", type=Path, default=Path("assets"), help="download folder (for --plots)")
    args = parser.parse_args()
    lines = split_lines(args.split) + (plot_lines(args.assets) if args.plots else [])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_text(args.output, "\n".join(lines) + "\n")
    print(f"{args.output}: {len(lines)} lines, {sum(line.count(' ') + 1 for line in lines)} tokens")


if __name__ == "__main__":
    main()
