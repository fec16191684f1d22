"""Every committed raw result under bench/results names the engine and the commit that made it.

Issue 27: the tables of docs/benchmarks.md came from two engines (the bench scripts' retired
loop and ``binaryvae train``); a reader must be able to tell which one made each number.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results"
FILES = sorted(RESULTS.rglob("*.json"))
COMMIT = re.compile(r"^[0-9a-f]{7,40}$")


def test_there_are_results_to_check():
    assert len(FILES) > 100


def _untagged(path: Path) -> str | None:
    engine = json.loads(path.read_text()).get("engine") or {}
    if not (isinstance(engine.get("name"), str) and len(engine["name"]) > 10):
        return f"{path.relative_to(RESULTS)}: no engine name"
    commit = engine.get("commit")
    commits = commit if isinstance(commit, list) else [commit]
    if not (commits and all(isinstance(c, str) and COMMIT.match(c) for c in commits)):
        return f"{path.relative_to(RESULTS)}: commit {commit!r}"
    return None


def test_every_result_names_engine_and_commit():
    bad = [m for m in map(_untagged, FILES) if m]
    assert not bad, bad


def test_a_single_commit_is_the_one_the_run_recorded():
    """Where a result records the commit it ran at (machine.git_commit), the engine's commit is
    that one (a rerun that rewrote the file must not keep the old tag)."""
    bad = []
    for path in FILES:
        data = json.loads(path.read_text())
        made = (data.get("machine") or {}).get("git_commit")
        tagged = data["engine"]["commit"]
        if made and isinstance(tagged, str) and tagged != made:
            bad.append(f"{path.relative_to(RESULTS)}: {tagged} != {made}")
    assert not bad, bad


def test_the_retired_loop_is_named_where_it_trained():
    """The 125-epoch claim runs came from bench/_common.py's train_steps, the estimator study's
    from binaryvae train: the tags say so (a wrong tag here would misattribute a table)."""
    claim = json.loads(next((RESULTS / "claim125" / "runs").glob("*.json")).read_text())
    study = json.loads(next((RESULTS / "estimator_study").glob("*.json")).read_text())
    assert "train_steps" in claim["engine"]["name"]
    assert claim["engine"]["commit"] == claim["machine"]["git_commit"]
    assert study["engine"]["name"].startswith("binaryvae train")
