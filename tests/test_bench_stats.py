"""The statistics the benchmark tables quote (bench/_common.py): Student-t 95% quantiles and
paired intervals, checked against scipy."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import pytest
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import _common  # noqa: E402


@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 9, 10, 12, 15, 20, 30, 60, 120])
def test_t975_matches_scipy_at_tabulated_df(df):
    assert _common.t975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=6e-4)


@pytest.mark.parametrize("df", [11, 13, 17, 27, 45, 100, 500])
def test_t975_between_entries_is_conservative(df):
    exact = stats.t.ppf(0.975, df)
    assert exact <= _common.t975(df) <= exact + 0.06


def test_t_interval_against_scipy():
    diffs = [1.3, -0.2, 2.4, 0.9, 1.1]
    got = _common.t_interval(diffs)
    lo, hi = stats.t.interval(0.95, len(diffs) - 1, loc=statistics.mean(diffs),
                              scale=stats.sem(diffs))  # fmt: skip
    assert got["mean"] == pytest.approx(statistics.mean(diffs))
    assert got["ci95"] == pytest.approx([lo, hi], abs=1e-3)
    assert "ci95" not in _common.t_interval([1.0])  # one value: no interval
    with pytest.raises(ValueError):
        _common.t975(0)
