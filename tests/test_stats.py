"""binaryvae.stats against independent references: the printed t table and scipy (t.ppf, sem,
ttest_rel's interval), a brute-force enumeration of the Wilcoxon signed-rank null distribution,
and a hand-computed Holm example."""

from __future__ import annotations

import itertools
import math
import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sst

from binaryvae import stats

# the printed table of t_{0.975, df} (any statistics textbook), an independent reference
TABLE = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 9: 2.262, 10: 2.228, 12: 2.179,
         15: 2.131, 20: 2.086, 30: 2.042, 60: 2.000, 120: 1.980}  # fmt: skip


@pytest.mark.parametrize("df", sorted(TABLE))
def test_t975_matches_the_printed_table(df):
    assert stats.t975(df) == pytest.approx(TABLE[df], abs=6e-4)
    assert stats.t975(df) == pytest.approx(sst.t.ppf(0.975, df), rel=1e-12)


@pytest.mark.parametrize("df", [11, 13, 17, 27, 45, 100])
def test_t975_between_table_entries_lies_between_them(df):
    below = max(k for k in TABLE if k < df)
    above = min(k for k in TABLE if k > df)
    assert TABLE[above] <= stats.t975(df) <= TABLE[below]


def test_t975_needs_one_degree_of_freedom():
    with pytest.raises(ValueError):
        stats.t975(0)


def test_mean_se_is_scipys_sem_and_its_edge_cases():
    xs = [1.3, -0.2, 2.4, 0.9, 1.1, 7.5]
    mean, se = stats.mean_se(xs)
    assert mean == pytest.approx(np.mean(xs), rel=1e-14)
    assert se == pytest.approx(sst.sem(xs), rel=1e-12)  # ddof = 1
    assert se == pytest.approx(np.std(xs, ddof=1) / math.sqrt(len(xs)), rel=1e-12)
    # non-finite values and None are dropped before anything is computed
    assert stats.mean_se([*xs, None, float("nan"), float("inf")]) == (mean, se)
    assert stats.mean_se([4.5]) == (4.5, None)  # one value: no spread, no s.e.
    assert stats.mean_se([]) == (None, None)
    assert stats.mean_se([None, float("nan")]) == (None, None)


def test_t_interval_against_scipy():
    diffs = [1.3, -0.2, 2.4, 0.9, 1.1]
    got = stats.t_interval(diffs)
    lo, hi = sst.t.interval(0.95, len(diffs) - 1, loc=statistics.mean(diffs),
                            scale=sst.sem(diffs))  # fmt: skip
    assert got["mean"] == pytest.approx(statistics.mean(diffs))
    assert got["ci95"] == pytest.approx([lo, hi], rel=1e-12)
    assert got["n"] == 5 and got["t"] == pytest.approx(sst.t.ppf(0.975, 4))
    one = stats.t_interval([1.0])
    assert one == {"mean": 1.0, "se": None, "n": 1}  # one value: no interval


def test_paired_difference_is_ttest_rel_with_its_interval():
    x = {0: -251.1, 1: -251.0, 2: -251.3, 3: -250.7, 7: -249.0}
    y = {2: -252.9, 0: -252.0, 1: -251.9, 3: -253.1, 5: -240.0}  # 7 and 5 have no partner
    got = stats.paired(x, y)
    seeds = [0, 1, 2, 3]
    a, b = [x[s] for s in seeds], [y[s] for s in seeds]
    ref = sst.ttest_rel(a, b)
    ci = ref.confidence_interval(0.95)
    assert got["keys"] == seeds and got["n"] == 4
    assert got["diffs"] == pytest.approx([u - v for u, v in zip(a, b, strict=True)])
    assert got["ci95"] == pytest.approx([ci.low, ci.high], rel=1e-10)
    assert got["p_t"] == pytest.approx(ref.pvalue, rel=1e-10)
    assert got["se"] == pytest.approx(sst.sem(np.subtract(a, b)), rel=1e-12)
    assert got["wilcoxon_p"] == pytest.approx(0.125)  # 4 positive differences: 2 / 2^4
    # a seed with NaN on one side is not a pair
    holed = stats.paired({0: 1.0, 1: float("nan"), 2: 3.0}, {0: 0.0, 1: 0.0, 2: 1.0})
    assert holed["keys"] == [0, 2] and holed["diffs"] == [1.0, 2.0]
    single = stats.paired({0: 2.0}, {0: 1.0})
    assert single["mean"] == 1.0 and single["se"] is None and "wilcoxon_p" not in single


def brute_force_wilcoxon_p(diffs: list[float]) -> float:
    """Two-sided exact p of the signed-rank statistic: zeros dropped, average ranks of |d|,
    T+ = sum of the ranks of the positive differences, its null distribution from all 2^n
    equally likely sign assignments; p = min(1, 2 min(P(T+ <= t), P(T+ >= t)))."""
    d = [v for v in diffs if v != 0]
    order = sorted(range(len(d)), key=lambda i: abs(d[i]))
    ranks = [0.0] * len(d)
    i = 0
    while i < len(d):  # average ranks over runs of equal |d|
        j = i
        while j + 1 < len(d) and abs(d[order[j + 1]]) == abs(d[order[i]]):
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    t_obs = sum(r for r, v in zip(ranks, d, strict=True) if v > 0)
    null = [sum(r for r, s in zip(ranks, signs, strict=True) if s)
            for signs in itertools.product((False, True), repeat=len(d))]  # fmt: skip
    low = sum(t <= t_obs + 1e-9 for t in null) / len(null)
    high = sum(t >= t_obs - 1e-9 for t in null) / len(null)
    return min(1.0, 2 * min(low, high))


CASES = [
    [1.3, -0.2, 2.4, 0.9, 1.1],  # no ties
    [0.5, 1.5, 2.5],  # n = 3, all positive: the smallest p possible, 0.25
    [-3.0, 1.0, 2.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0],  # n = 10
    [1.0, 1.0, -1.0, 2.0, 3.0, -3.0, 4.0],  # ties
    [0.0, 1.0, -2.0, 3.0, 4.0, 5.0],  # a zero (dropped)
    [0.0, 0.0, 2.0, 2.0, -1.0, 3.0, 3.0, 5.0],  # zeros and ties
]


@pytest.mark.parametrize("diffs", CASES)
def test_wilcoxon_p_equals_the_enumerated_null_distribution(diffs):
    assert stats.wilcoxon_p(diffs) == pytest.approx(brute_force_wilcoxon_p(diffs), rel=1e-9)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(-4, 4), min_size=2, max_size=9))
def test_wilcoxon_p_equals_enumeration_for_any_small_sample(values):
    diffs = [v / 2 for v in values]  # small integers: many ties and zeros
    if not any(diffs):
        assert stats.wilcoxon_p(diffs) is None
    else:
        assert stats.wilcoxon_p(diffs) == pytest.approx(brute_force_wilcoxon_p(diffs), rel=1e-9)


def test_wilcoxon_p_is_none_without_a_test_to_make():
    assert stats.wilcoxon_p([]) is None
    assert stats.wilcoxon_p([2.5]) is None  # n < 2
    assert stats.wilcoxon_p([0.0, 0.0, 0.0]) is None  # every difference zero
    assert stats.wilcoxon_p([1.0, float("nan")]) is None  # one finite difference
    assert stats.wilcoxon_p([0.0, 0.0, 1.0]) == 1.0  # one nonzero difference: p = 1


def test_holm_by_hand():
    # sorted: 0.01 (x4 = 0.04), 0.02 (x3 = 0.06), 0.03 (x2 = 0.06), 0.20 (x1 = 0.20)
    got = stats.holm([0.03, 0.20, 0.01, 0.02])
    assert got == pytest.approx([0.06, 0.20, 0.04, 0.06])
    # the running maximum keeps the adjusted values in the order of the raw ones:
    # sorted: 0.001 (x3 = 0.003), 0.04 (x2 = 0.08), 0.045 (x1 = 0.045 -> max 0.08)
    assert stats.holm([0.045, 0.001, 0.04]) == pytest.approx([0.08, 0.003, 0.08])
    assert stats.holm([0.5, 0.6]) == [1.0, 1.0]  # capped at 1
    assert stats.holm([None, 0.02, 0.04]) == [None, pytest.approx(0.04), pytest.approx(0.04)]
    assert stats.holm([]) == []


def test_multiple_comparison_note_says_k_the_expected_false_positives_and_holm():
    labels = ["L1", "L2", "L3", "L4", "L5"]
    note = stats.multiple_comparison_note([0.03, 0.20, 0.01, 0.02, None], labels)
    assert note.startswith("4 pairwise comparisons; at a 5% level each, about 0.2 false ")
    assert "Holm-adjusted p-values (paired t tests): L1 0.06; L2 0.2; L3 0.04; L4 0.06;" in note
    assert "L5" not in note  # no p-value: not a comparison
    assert stats.multiple_comparison_note([0.01, None], ["a", "b"]) == ""  # one comparison
    with pytest.raises(ValueError):
        stats.multiple_comparison_note([0.1], ["a", "b"])


def test_format_p():
    assert [stats.format_p(p) for p in (None, 0.25, 0.03125, 0.0004, 1.0)] == [
        "—",
        "0.25",
        "0.031",
        "< 0.001",
        "1",
    ]
