"""scripts/word_sense.py: WordNet example parsing, triplets and their scoring (on a small WordNet-format file)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from word_sense import make_triplets, read_examples, separation  # noqa: E402

# WordNet 3.0 data-file lines (licence header, then `offset lex_filenum ss_type w_cnt word lex_id ... | gloss`)
NOUNS = """\
  1 This software and database is being provided to you, the LICENSEE, by "Princeton University"
09213565 17 n 01 bank 0 000 | sloping land; "they pulled the canoe up on the bank"; "he sat on the bank of the river"
08420278 14 n 03 depository_financial_institution 0 bank 0 banking_concern 0 000 | a financial institution; "he cashed a check at the bank"; "that bank holds the mortgage on my home"
08462320 14 n 01 bank 0 000 | a row; "a bank of switches"; "the bank bank"
04139859 06 n 01 savings_bank 0 000 | a container; "the savings bank"
"""  # noqa: E501 (verbatim WordNet data-file lines)


@pytest.fixture()
def wordnet(tmp_path) -> Path:
    (tmp_path / "data.noun").write_text(NOUNS, encoding="latin-1")
    for name in ("data.verb", "data.adj", "data.adv"):
        (tmp_path / name).write_text("  licence\n", encoding="latin-1")
    return tmp_path


def test_examples_hold_the_word_once_per_sense(wordnet):
    examples = read_examples(wordnet, str.split)
    # "the bank bank" (twice) and the multi-word lemmas are left out; one sense per synset
    assert list(examples) == ["bank"]
    senses = examples["bank"]
    assert sorted(len(items) for items in senses.values()) == [1, 2, 2]
    assert (("he", "cashed", "a", "check", "at", "the", "bank"), 6) in senses["data.noun:08420278"]


def test_triplets_pair_each_sense_with_the_others(wordnet):
    triplets = make_triplets(read_examples(wordnet, str.split))
    # 2 senses with 2 examples: 2 ordered (anchor, positive) pairs each, times 3 examples of other senses
    assert len(triplets) == 2 * 2 * 3
    for word, anchor, positive, _negative in triplets:
        assert word == "bank" and anchor != positive and anchor[0][anchor[1]] == "bank"


def test_separation_micro_and_macro():
    vectors = {"a": np.array([1.0, 0.0]), "p": np.array([0.9, 0.1]), "n": np.array([0.0, 1.0])}
    vector = lambda ex: vectors[ex[0]]  # noqa: E731
    good, bad = ("x", ("a",), ("p",), ("n",)), ("y", ("a",), ("n",), ("p",))
    assert separation([good, good, bad], vector) == {"micro": pytest.approx(2 / 3), "macro": pytest.approx(0.5)}


def test_missing_wordnet_file_is_named(wordnet):
    (wordnet / "data.adv").unlink()
    with pytest.raises(ValueError, match=r"data\.adv: not found \(expected WordNet 3\.0 data files in "):
        read_examples(wordnet, str.split)


def test_model_card_bank_figures_are_what_the_script_prints():
    """The bundled model card's "bank" cosines, as `scripts/word_sense.py --bank-only` computes them (3 decimals)."""
    import re

    from evaluation import elmo_pipeline
    from word_sense import bank_check

    card = (Path(__file__).resolve().parents[1] / "spacy_elmo" / "data" / "default" / "MODEL_CARD.md").read_text()
    text = " ".join(card.split())
    found = re.search(
        r"is (\S+) to \"The bank approved the loan\" and (\S+) to \"They fished by the bank of the river\" "
        r"\(per layer, biLSTM 1: (\S+) vs (\S+), biLSTM 2: (\S+) vs (\S+); `python scripts/word_sense.py --bank-only`",
        text,
    )
    assert found is not None, "the model card's bank sentence changed its form"
    bank = bank_check(elmo_pipeline(None, None))
    computed = [bank["loan"], bank["river"], *bank["layer1"].values(), *bank["layer2"].values()]
    assert list(found.groups()) == [f"{value:.3f}" for value in computed]
