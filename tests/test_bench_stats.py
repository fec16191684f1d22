"""The statistics the benchmark tables quote (bench/_common.py): Student-t 95% quantiles against
the printed table, paired intervals against scipy."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import pytest
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import _common  # noqa: E402

# the printed table of t_{0.975, df} (any statistics textbook), an independent reference
TABLE = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 9: 2.262, 10: 2.228, 12: 2.179,
         15: 2.131, 20: 2.086, 30: 2.042, 60: 2.000, 120: 1.980}  # fmt: skip


@pytest.mark.parametrize("df", sorted(TABLE))
def test_t975_matches_the_printed_table(df):
    assert _common.t975(df) == pytest.approx(TABLE[df], abs=6e-4)


@pytest.mark.parametrize("df", [11, 13, 17, 27, 45, 100])
def test_t975_between_table_entries_lies_between_them(df):
    below = max(k for k in TABLE if k < df)
    above = min(k for k in TABLE if k > df)
    assert TABLE[above] <= _common.t975(df) <= TABLE[below]


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


def _machine(date, commit, flags, threads=1):
    return {"date_utc": date, "git_commit": commit, "cpu_flags": flags, "torch_threads": threads}


def test_runs_line_covers_every_result_file_not_just_the_first():
    avx2, avx512 = ["fma", "avx2"], ["fma", "avx2", "avx512f"]
    machines = [
        _machine("2026-12-06 18:31 UTC", "85edf2b", avx512, 2),
        _machine("2026-12-03 16:42 UTC", "5c3b58f", avx2),
        _machine("2026-12-03 20:02 UTC", "5c3b58f", avx2),
        None,  # a result file written before machines were recorded
        _machine("2026-12-06 19:00 UTC", None, avx512),
    ]
    line = _common.runs_line(machines)
    made = "made 2026-12-03 16:42 UTC to 2026-12-06 19:00 UTC;"
    assert line.startswith(f"Runs: 4 result file(s), {made}")
    assert "commit(s) 85edf2b, 5c3b58f, unknown;" in line  # order of first appearance
    assert "fma avx2 avx512f (2)" in line and "fma avx2 (2)" in line
    assert line.endswith("torch threads 1 (3), 2 (1)")
    one = _common.runs_line([_machine("2026-12-03 16:42 UTC", "5c3b58f", avx2)])
    assert "made 2026-12-03 16:42 UTC;" in one and " to " not in one
    assert _common.runs_line([]) == "Runs: none"
