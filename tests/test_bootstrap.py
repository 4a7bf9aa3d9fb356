"""``scripts/bootstrap.py``: the paired bootstrap over test documents, on constructed cases whose answer is known
in closed form (binomial and multinomial sums), and its pooling over seeds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy
import pytest

binom = pytest.importorskip("scipy.stats", reason='needs the project extra: pip install "spacy-elmo[project]"').binom

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from bootstrap import counts_of, ner_f1, paired_bootstrap, significance, textcat_macro_f1  # noqa: E402

N = 1000


def ner_run(found: numpy.ndarray) -> numpy.ndarray:
    """One gold entity per document; the run finds it where ``found`` (tp) and misses it elsewhere (fn)."""
    return numpy.stack([found, numpy.zeros(len(found)), ~found], axis=1).astype("float64")


def test_interval_is_the_binomial_interval():
    # A finds every entity (F1 1); B finds k of N. A resample's B F1 is 2k'/(k' + N) with k' ~ Binomial(N, k/N),
    # monotone in k', so the 95% interval of A - B is 1 - f(the binomial's 97.5% / 2.5% quantiles).
    k = 700
    a = ner_run(numpy.ones(N, bool))
    b = ner_run(numpy.arange(N) < k)
    result = paired_bootstrap([a], [b], ner_f1, resamples=20_000)
    f1_b = lambda found: 2 * found / (found + N)  # noqa: E731
    assert result["difference"] == pytest.approx(1 - f1_b(k))
    low, high = 1 - f1_b(binom.ppf(0.975, N, k / N)), 1 - f1_b(binom.ppf(0.025, N, k / N))
    step = f1_b(k + 1) - f1_b(k)  # one document more or less
    assert result["low"] == pytest.approx(low, abs=1.5 * step)
    assert result["high"] == pytest.approx(high, abs=1.5 * step)
    assert result["flip_share"] == 0.0 and result["real"]


def test_sign_flip_share_is_the_multinomial_probability():
    # 60 documents only A gets right, 40 only B, the rest both: A - B > 0 on a resample exactly when it draws more
    # of the first kind than of the second. P(n1 <= n2) for (n1, n2) ~ Multinomial(N, 0.06, 0.04): given
    # m = n1 + n2 ~ Binomial(N, 0.1), n1 ~ Binomial(m, 0.6).
    only_a, only_b = numpy.arange(N) < 60, (numpy.arange(N) >= 60) & (numpy.arange(N) < 100)
    a, b = ner_run(~only_b), ner_run(~only_a)
    result = paired_bootstrap([a], [b], ner_f1, resamples=40_000, seed=3)
    m = numpy.arange(N + 1)
    exact = float(numpy.sum(binom.pmf(m, N, 0.1) * binom.cdf(m // 2, m, 0.6)))
    assert 0.01 < exact < 0.05
    assert result["flip_share"] == pytest.approx(exact, abs=4 * numpy.sqrt(exact * (1 - exact) / 40_000))
    assert result["real"] == (result["low"] > 0)


def test_identical_rows_differ_by_nothing_and_seeds_pool_by_their_mean():
    rng = numpy.random.default_rng(0)
    runs = [ner_run(rng.random(N) < p) for p in (0.5, 0.6, 0.7)]
    same = paired_bootstrap(runs, list(reversed(runs)), ner_f1, resamples=1000)
    assert same["difference"] == 0.0 and same["low"] == pytest.approx(0.0, abs=1e-12) == same["high"]
    assert same["flip_share"] == 1.0 and not same["real"]
    # two seeds of A against one of B: the observed difference is the mean of A's F1 minus B's
    pooled = paired_bootstrap(runs[:2], runs[2:], ner_f1, resamples=1000)
    scores = [ner_f1(run.sum(axis=0)[None])[0] for run in runs]
    assert pooled["difference"] == pytest.approx((scores[0] + scores[1]) / 2 - scores[2])
    assert pooled["seeds_a"] == 2 and pooled["seeds_b"] == 1
    with pytest.raises(ValueError, match="different numbers of documents"):
        paired_bootstrap([runs[0][:10]], [runs[1]], ner_f1, resamples=10)


def test_textcat_counts_give_spacys_macro_f1():
    # gold fresh fresh rotten rotten, predicted fresh rotten rotten fresh: per class P = R = F1 = 0.5
    record = {"task": "textcat", "labels": ["fresh", "rotten"], "gold": [0, 0, 1, 1], "pred": [0, 1, 1, 0]}
    counts = counts_of(record)
    assert counts.tolist() == [[1, 0, 0, 0, 0, 0], [0, 0, 1, 0, 1, 0], [0, 0, 0, 1, 0, 0], [0, 1, 0, 0, 0, 1]]
    assert textcat_macro_f1(counts.sum(axis=0)[None])[0] == pytest.approx(0.5)
    ner = {"task": "ner", "labels": ["LOC", "PER"], "docs": [[[0, 1, 0, 1], [1, 0, 2, 0]], []]}
    assert counts_of(ner).tolist() == [[1, 2, 1], [0, 0, 0]]


def test_significance_reads_records_and_refuses_other_test_files(tmp_path: Path):
    gold = [0] * 50 + [1] * 50
    for features, wrong in (("baseline", 30), ("elmo", 10)):
        pred = [1 - g if i < wrong else g for i, g in enumerate(gold)]
        for seed in (0, 1):
            folder = tmp_path / f"textcat_{features}" / f"seed{seed}"
            folder.mkdir(parents=True)
            record = {"task": "textcat", "test_sha256": "x", "labels": ["a", "b"], "gold": gold, "pred": pred}
            (folder / "per_doc.json").write_text(json.dumps(record))
    (row,) = significance(tmp_path, resamples=2000)
    assert (row["task"], row["a"], row["b"]) == ("textcat", "elmo", "baseline")
    assert row["seeds_a_list"] == [0, 1] and row["difference"] > 0.15 and row["real"]
    other = json.loads((tmp_path / "textcat_elmo" / "seed1" / "per_doc.json").read_text())
    other["test_sha256"] = "y"
    (tmp_path / "textcat_elmo" / "seed1" / "per_doc.json").write_text(json.dumps(other))
    with pytest.raises(SystemExit, match="different test files"):
        significance(tmp_path, resamples=10)
