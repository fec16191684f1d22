"""The statistics the benchmark tables quote, through `binaryvae.stats` (tested there against
scipy and brute force; the study tables' paired differences in tests/test_reproduce.py):
bench/_common.py's mean ± s.e. against scipy, and its Runs: line."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

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
