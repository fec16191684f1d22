"""The statistics the benchmark tables quote, through `binaryvae.stats` (tested there against
scipy and brute force): the estimator study's paired table against scipy's paired t interval and
exact Wilcoxon test, bench/_common.py's mean ± s.e. against scipy, and its Runs: line."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import pytest
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import _common  # noqa: E402
import estimator_study  # noqa: E402


def _group(family, seeds, values):
    return {"net": "nonlinear", "family": family, "seeds": seeds, "iwae": values}


def test_estimator_tables_paired_difference_is_scipys_with_the_rank_test_beside_it():
    """The paired table (family minus DisARM by seed) through `binaryvae.stats`: the interval
    is scipy's ttest_rel interval, the p-value beside it scipy's exact Wilcoxon signed-rank."""
    ref = _group("bernoulli-disarm", [0, 1, 2, 3, 4], [-246.1, -246.0, -246.2, -245.9, -246.3])
    other = _group("steplogistic", [4, 0, 1, 2, 3], [-246.9, -246.5, -247.3, -246.6, -246.1])
    got = estimator_study.paired(ref, other, "iwae")
    b = dict(zip(other["seeds"], other["iwae"], strict=True))
    a = dict(zip(ref["seeds"], ref["iwae"], strict=True))
    seeds = other["seeds"]  # the order the differences are listed in
    t = stats.ttest_rel([b[s] for s in seeds], [a[s] for s in seeds])
    ci = t.confidence_interval(0.95)
    assert got["diffs"] == pytest.approx([b[s] - a[s] for s in seeds])
    assert got["ci95"] == pytest.approx([ci.low, ci.high], rel=1e-10)
    assert got["p_t"] == pytest.approx(t.pvalue, rel=1e-10)
    w = stats.wilcoxon([b[s] - a[s] for s in seeds], method="exact")
    assert got["wilcoxon_p"] == pytest.approx(w.pvalue)
    summary = {"machine": _common.machine_info(), "runs_line": "Runs: none", "command": "x",
               "rows": [], "paired_vs_disarm": [got | {"train_elbo": got}]}  # fmt: skip
    table = estimator_study.render(summary)
    row = next(line for line in table.splitlines() if line.startswith("| nonlinear"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3] == f"{got['mean']:+.2f} ± {got['se']:.2f}"
    assert cells[4] == f"t = 2.78: [{ci.low:+.2f}, {ci.high:+.2f}]"
    assert cells[5] == f"{w.pvalue:.2g}" == cells[8]
    # two claims (IWAE and ELBO) in the table: the multiple-comparison note says so
    assert "2 pairwise comparisons; at a 5% level each, about 0.1 false positives" in table


def test_fmt_mean_se_is_the_mean_and_scipys_sem():
    xs = [1.25, 2.5, 4.0, float("nan"), None]
    finite = [1.25, 2.5, 4.0]
    want = f"{statistics.mean(finite):.3f} ± {stats.sem(finite):.3f}"
    assert _common.fmt_mean_se(xs, 3) == want
    assert _common.fmt_mean_se([7.0]) == "7.00" and _common.fmt_mean_se([None]) == "n/a"


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
