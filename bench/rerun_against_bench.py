"""A study rerun through the product against the bench engine's committed runs, seed by seed.

Issue 27 moved the studies behind the docs from a second training engine in bench/ (removed in
0.2.0) to `binaryvae reproduce`; the old engine's raw results stay committed. This script puts
the two side by side for one study: for each cell of the rerun (the per-run JSON files that
`bench/study_results.py` writes) and each measure, the old runs' mean ± s.e. over all their
seeds with its Student-t 95% interval, the rerun's mean ± s.e. over the seeds it has, whether
that mean lies inside the old interval, and the per-seed differences (rerun minus old, same
seed; the engines draw in another order, so the same seed is not the same run unless the docs
say the draws were kept).

    python bench/rerun_against_bench.py dissertation-claim
    python bench/rerun_against_bench.py estimator-study
    python bench/rerun_against_bench.py dissertation-claim --rerun DIR   # another rerun folder
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _common  # noqa: E402
from binaryvae.runs.seeds import seed_text  # noqa: E402
from binaryvae.stats import mean_se, t_interval  # noqa: E402

RESULTS = HERE / "results"


def _claim_file(cell: str, seed: int) -> str:
    """fashion-mnist_<family>_<objective>_8bit -> the bench engine's diss_<dataset>_<family>_..."""
    dataset, family = cell.split("_")[:2]
    family = "concrete-bernoulli-elbo" if family == "concrete" else family
    return f"diss_{dataset}_{family}_s{seed}_e125_n8.json"


def _estimator_file(cell: str, seed: int) -> str:
    """fashion-mnist_<family>_elbo_200bit[_hidden-200x200] -> <dataset>_<network>_<family>..."""
    dataset, family = cell.split("_")[:2]
    net = "nonlinear" if cell.endswith("hidden-200x200") else "linear"
    if family.startswith("bernoulli-") and family != "bernoulli-st":
        family += "_elbo"  # the old engine named the exact families with their objective
    return f"{dataset}_{net}_{family}_lr0.0001_100000_s{seed}.json"


# study -> where both sides are, how a rerun cell names its old file, and the measures:
# label -> (key in the rerun's summary, key path in the old file, dot-separated)
STUDIES = {
    "dissertation-claim": {
        "rerun": RESULTS / "claim125-rerun",
        "old": RESULTS / "claim125" / "runs",
        "old_file": _claim_file,
        "measures": {
            "discrete ELBO (exact)": ("test_discrete_elbo", "discrete_elbo"),
            "exact log p(x)": ("test_log_px_exact", "log_px"),
            "gap": ("test_exact_gap", "gap"),
        },
    },
    "estimator-study": {
        "rerun": RESULTS / "estimator-study-rerun",
        "old": RESULTS / "estimator_study",
        "old_file": _estimator_file,
        "measures": {
            "test IWAE-100": ("test_iwae_k100", "summary.test_iwae"),
            "train ELBO": ("train_discrete_elbo", "train_discrete_elbo"),
        },
    },
}


def _get(obj: dict, dotted: str):
    for part in dotted.split("."):
        obj = obj[part]
    return obj


def compare(study: str, rerun: Path | None = None, old: Path | None = None) -> list[dict]:
    """One row per (cell, measure) of the rerun: see the module docstring. Cells of the rerun
    whose old files are missing are skipped (a rerun may cover a part of the study)."""
    spec = STUDIES[study]
    rerun, old = Path(rerun or spec["rerun"]), Path(old or spec["old"])
    runs: dict[str, dict[int, dict]] = {}
    for path in sorted(rerun.glob("*_seed*.json")):
        record = json.loads(path.read_text())
        runs.setdefault(record["cell"], {})[int(record["seed"])] = record["summary"]
    rows = []
    for cell, by_seed in sorted(runs.items()):
        old_runs = {}
        for seed in range(100):
            file = old / spec["old_file"](cell, seed)
            if file.exists():
                old_runs[seed] = json.loads(file.read_text())
        if not old_runs:
            continue
        for label, (new_key, old_key) in spec["measures"].items():
            before = [float(_get(old_runs[s], old_key)) for s in sorted(old_runs)]
            after = {s: float(summary[new_key]) for s, summary in sorted(by_seed.items())}
            old_stats = t_interval(before)  # needs two old seeds for its interval
            lo, hi = old_stats.get("ci95", (old_stats["mean"], old_stats["mean"]))
            mean_new, se_new = mean_se(list(after.values()))
            mean_old, se_old = old_stats["mean"], old_stats["se"]
            rows.append({
                "cell": cell, "measure": label,
                "old_seeds": sorted(old_runs), "old_mean": mean_old, "old_se": se_old,
                "old_interval": [lo, hi],
                "rerun_seeds": sorted(after), "rerun_mean": mean_new, "rerun_se": se_new,
                "inside": bool(lo <= mean_new <= hi),
                "per_seed_difference": {s: v - float(_get(old_runs[s], old_key))
                                        for s, v in after.items() if s in old_runs},
            })  # fmt: skip
    return rows


def table(rows: list[dict]) -> str:
    out = []
    for r in rows:
        diffs = list(r["per_seed_difference"].values())
        se_new = "" if r["rerun_se"] is None else f" ± {r['rerun_se']:.2f}"
        se_old = "" if r["old_se"] is None else f" ± {r['old_se']:.2f}"
        out.append([
            r["cell"], r["measure"],
            f"{r['old_mean']:.2f}{se_old} [{r['old_interval'][0]:.2f}, "
            f"{r['old_interval'][1]:.2f}] ({seed_text(r['old_seeds'])})",
            f"{r['rerun_mean']:.2f}{se_new} ({seed_text(r['rerun_seeds'])})",
            "yes" if r["inside"] else "no",
            f"{min(diffs):+.3g} to {max(diffs):+.3g}" if diffs else "",
        ])  # fmt: skip
    return _common.markdown_table(
        ["cell", "measure", "bench engine: mean ± s.e. [95% t interval] (seeds)",
         "product rerun: mean ± s.e. (seeds)", "rerun mean inside", "per seed, rerun - old"],
        out,
    )  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("study", choices=sorted(STUDIES))
    p.add_argument("--rerun", type=Path, default=None, help="the rerun's per-run JSON folder")
    p.add_argument("--old", type=Path, default=None, help="the bench engine's result folder")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead")
    args = p.parse_args(argv)
    rows = compare(args.study, args.rerun, args.old)
    if not rows:
        print(f"no cell of the rerun has old runs to compare with ({args.study})", file=sys.stderr)
        return 1
    print(json.dumps(rows, indent=1) if args.json else table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
