"""Training throughput next to another CPU-bound process, by thread count and OpenMP wait policy.

On 2 cores, OpenMP threads that spin-wait (libgomp's default) can lose 4x or more when any
other process is busy. This script runs ``bench_train_speed.py`` (plain loop and one binaryvae
family, same process, alternating) in a fresh process per condition - the wait policy is read
once when the OpenMP runtime starts, so it cannot change inside a process - with and without a
competing busy-loop process (pure Python, one core), and prints images/s per condition and the
thread default it recommends.

    BINARYVAE_DATA_DIR=$DATA python bench/bench_contention.py
    python bench/bench_contention.py --quick      # smoke test: one condition, tiny budget
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _common  # noqa: E402

# (competitor, threads, OMP_WAIT_POLICY or None for the runtime's default)
CONDITIONS = [
    ("quiet", 1, None),
    ("quiet", 2, None),
    ("quiet", 2, "PASSIVE"),
    ("busy", 1, None),
    ("busy", 2, None),
    ("busy", 1, "PASSIVE"),
    ("busy", 2, "PASSIVE"),
]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--family", default="steplogistic", help="the binaryvae family timed")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--out", default=str(_common.REPO / "bench" / "results"))
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: one condition (busy, 1 thread, PASSIVE), tiny budget",
    )
    args = p.parse_args(argv)
    _common.quick_folders(args, p)
    return args


def run_condition(args, competitor: str, threads: int, policy: str | None, tmp: Path) -> dict:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    env.pop("OMP_NUM_THREADS", None)
    tag = f"_{competitor}_{policy or 'default'}"
    cmd = [
        sys.executable,
        str(HERE / "bench_train_speed.py"),
        "--families",
        args.family,
        "--threads",
        str(threads),
        "--out",
        str(tmp),
        "--tag",
        tag,
    ]
    if args.quick:
        cmd.append("--quick")
    else:
        cmd += [
            "--repeats",
            str(args.repeats),
            "--steps",
            str(args.steps),
            "--dataset",
            args.dataset,
        ]
    busy = None
    if competitor == "busy":
        busy = subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"import sys; sys.path.insert(0, {str(HERE)!r}); import _common; "
                "_common.busy_loop(3600)",
            ]
        )
        time.sleep(0.5)
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    finally:
        if busy is not None:
            busy.terminate()
            busy.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    result = json.loads((tmp / f"speed_{threads}t_tuned{tag}.json").read_text())
    return {
        "competitor": competitor,
        "threads": threads,
        "omp_wait_policy": policy or "default",
        "arms": {r["arm"]: r["images_per_s_median"] for r in result["results"]},
        "ratio_vs_plain": {r["arm"]: r["ratio_vs_plain_median"] for r in result["results"]},
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    conditions = [("busy", 1, "PASSIVE")] if args.quick else CONDITIONS
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for competitor, threads, policy in conditions:
            rows.append(run_condition(args, competitor, threads, policy, Path(tmp)))
            r = rows[-1]
            print(
                f"{competitor:5s} threads={threads} OMP_WAIT_POLICY={r['omp_wait_policy']:8s} "
                + "  ".join(f"{k}={v:,.0f}/s" for k, v in r["arms"].items()),
                flush=True,
            )

    import torch  # only for the machine description

    del torch
    info = _common.machine_info()
    out = {
        "benchmark": "contention",
        "command": _common.command_line(),
        "machine": info,
        "family": args.family,
        "conditions": rows,
        "recommendation": recommend(rows, args.family),
    }
    _common.write_json(
        Path(args.out) / ("contention_quick.json" if args.quick else "contention.json"), out
    )
    print(render(out))
    return 0


def recommend(rows: list[dict], family: str) -> str:
    """The setting that is best in the worst case (busy), with its quiet-machine cost."""

    def ips(comp, t, pol):
        for r in rows:
            if (r["competitor"], r["threads"], r["omp_wait_policy"]) == (comp, t, pol):
                return r["arms"].get(family)
        return None

    settings = [
        (t, pol)
        for _, t, pol in {(r["competitor"], r["threads"], r["omp_wait_policy"]) for r in rows}
    ]
    settings = sorted(set(settings))
    scored = []
    for t, pol in settings:
        busy, quiet = ips("busy", t, pol), ips("quiet", t, pol)
        if busy is not None:
            scored.append((busy, quiet, t, pol))
    if not scored:
        return "no busy condition measured"
    scored.sort(reverse=True)
    busy, quiet, t, pol = scored[0]
    text = f"under contention the best is {t} thread(s) with OMP_WAIT_POLICY={pol} ({busy:,.0f}/s)"
    if quiet is not None:
        best_quiet = max(
            (r["arms"][family], r["threads"], r["omp_wait_policy"])
            for r in rows
            if r["competitor"] == "quiet"
        )
        text += (
            f"; on a quiet machine that setting gives {quiet:,.0f}/s against the quiet best "
            f"{best_quiet[0]:,.0f}/s ({best_quiet[1]} thread(s), {best_quiet[2]})"
        )
    return text


def render(out: dict) -> str:
    arms = list(out["conditions"][0]["arms"])
    head = (
        ["competitor", "threads", "OMP_WAIT_POLICY"]
        + [f"{a} images/s" for a in arms]
        + [f"{out['family']} / plain"]
    )
    rows = [
        [r["competitor"], r["threads"], r["omp_wait_policy"]]
        + [f"{r['arms'][a]:,.0f}" for a in arms]
        + [f"{r['ratio_vs_plain'][out['family']]:.2f}"]
        for r in out["conditions"]
    ]
    return "\n".join(
        [
            f"Machine: {_common.machine_line(out['machine'])}",
            f"Command: `{out['command']}`",
            "",
            _common.markdown_table(head, rows),
            "",
            f"Recommendation: {out['recommendation']}",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
