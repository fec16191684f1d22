"""The statistics the benchmark tables quote, through `binaryvae.stats` (tested there against
scipy and brute force; the study tables' paired differences in tests/test_reproduce.py):
bench/_common.py's mean ± s.e. against scipy, and its Runs: line."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import pytest
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import _common  # noqa: E402


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


def test_every_result_a_bench_script_writes_names_its_engine_and_commit(tmp_path):
    """bench/_common.write_json tags a result with what made it (the script, or the name the
    caller gives) and the commit its machine record names, so a rerun keeps
    tests/test_bench_results_provenance.py true; an existing tag is kept."""
    import json

    _common.write_json(tmp_path / "a.json", {"machine": {"git_commit": "abc1234"}, "x": 1})
    tag = json.loads((tmp_path / "a.json").read_text())["engine"]
    assert tag["commit"] == "abc1234" and tag["name"].startswith("bench/")
    named = _common.engine_tag({"machine": {"git_commit": "abc1234"}}, "reference code")
    assert named["engine"] == {"name": "reference code", "commit": "abc1234"}
    kept = {"engine": {"name": "x", "commit": "def5678"}}
    assert _common.engine_tag(kept, "other") is kept


def test_rerun_against_bench_pairs_seeds_and_uses_the_old_seeds_t_interval(tmp_path):
    """bench/rerun_against_bench.py: the old runs' 95% interval is scipy's t interval over all
    their seeds, the rerun's mean is over the seeds it has, and the per-seed differences pair
    equal seeds; a cell without old files is left out; the committed claim rerun reproduces
    the docs' row (StepLogistic's ten seeds inside the old interval, -85.67 to +94.77 nats)."""
    import json

    import rerun_against_bench as rab

    rerun, old = tmp_path / "rerun", tmp_path / "old"
    rerun.mkdir(), old.mkdir()
    values_old = {0: -300.0, 1: -310.0, 2: -290.0, 3: -305.0}
    values_new = {1: -311.5, 3: -301.0}
    for s, v in values_old.items():
        (old / f"diss_fashion-mnist_logistic_s{s}_e125_n8.json").write_text(
            json.dumps({"discrete_elbo": v, "log_px": v + 20, "gap": 20.0 + s})
        )
    for s, v in values_new.items():
        summary = {"test_discrete_elbo": v, "test_log_px_exact": v + 19, "test_exact_gap": 19.0}
        for cell in ("fashion-mnist_logistic_elbo_8bit", "fashion-mnist_steplogistic_elbo_8bit"):
            (rerun / f"{cell}_seed{s}.json").write_text(
                json.dumps({"cell": cell, "seed": s, "summary": summary})
            )
    rows = rab.compare("dissertation-claim", rerun, old)
    assert {r["cell"] for r in rows} == {"fashion-mnist_logistic_elbo_8bit"}  # no old files
    row = next(r for r in rows if r["measure"] == "discrete ELBO (exact)")
    xs = list(values_old.values())
    lo, hi = stats.t.interval(0.95, len(xs) - 1, loc=statistics.mean(xs), scale=stats.sem(xs))
    assert row["old_interval"] == [pytest.approx(lo), pytest.approx(hi)]
    assert row["rerun_mean"] == pytest.approx(statistics.mean(values_new.values()))
    assert row["rerun_se"] == pytest.approx(stats.sem(list(values_new.values())))
    assert row["per_seed_difference"] == {1: pytest.approx(-1.5), 3: pytest.approx(4.0)}
    assert lo <= -306.25 <= hi and row["inside"] is True
    gap = next(r for r in rows if r["measure"] == "gap")  # old 20-23, rerun 19: outside
    assert gap["old_interval"][0] > 19.0 and gap["inside"] is False

    committed = rab.compare("dissertation-claim")
    step = next(r for r in committed if r["cell"] == "fashion-mnist_steplogistic_elbo_8bit"
                and r["measure"] == "discrete ELBO (exact)")  # fmt: skip
    diffs = step["per_seed_difference"].values()
    assert step["inside"] and round(min(diffs), 2) == -85.67 and round(max(diffs), 2) == 94.77
