"""Wall time of a 4-cell sweep on ``--executor ray`` against ``--executor local``.

The same command a user types, timed from start to exit (Python start-up, Ray start-up and
shutdown included), in a fresh output directory each time: 2 families x 2 latent sizes on the
shipped mnist-mini (the dissertation's network 784-512-256-128, batch 128), one seed per cell.
Arms:

- ``local``: cells one after the other in one process, 1 torch thread per run (the default,
  ``--cpus-per-run 1``);
- ``local-all``: the same with every core's threads per run (``--threads N``);
- ``ray``: a local Ray instance with every core, one task per cell, ``--cpus-per-run 1`` (as
  many cells at once as there are cores).

Rounds alternate the arms' order; the median of ``--repeats`` rounds is reported, with every
round's time. The script also checks that ``local`` and ``ray`` wrote the same numbers (same
thread count: they must agree to the last digit).

    python bench/bench_sweep.py                 # 3 rounds, 4 epochs per cell
    python bench/bench_sweep.py --quick         # smoke test: toy data, 1 epoch, 1 round
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _common  # noqa: E402

ARMS = ("local", "local-all", "ray")
TIMING = ("seconds_per_epoch", "eval_seconds_per_epoch", "summary_seconds", "summary_eval_seconds")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=4, help="epochs per cell (default 4)")
    p.add_argument("--repeats", type=int, default=3, help="rounds (median taken)")
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--families", default="steplogistic,bernoulli-sfe")
    p.add_argument("--latent-dims", default="4,8")
    p.add_argument("--dataset", default="mnist-mini")
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--quick", action="store_true", help="smoke test: toy data, 1 epoch, 1 round")
    args = p.parse_args(argv)
    _common.quick_folders(args, p)
    if args.quick:
        args.epochs, args.repeats, args.dataset = 1, 1, "toy"
    return args


def _ray_installed() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def command(args, arm: str, out: Path, cores: int) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "binaryvae",
        "sweep",
        "--out",
        str(out),
        "--families",
        args.families,
        "--latent-dims",
        args.latent_dims,
        "--dataset",
        args.dataset,
        "--epochs",
        str(args.epochs),
        "--seeds",
        "0",
        "--device",
        "cpu",
        "--quiet",
        "--no-report",
    ]
    if args.quick:
        cmd += ["--hidden", "16", "--batch-size", "500"]
    if arm == "local-all":
        cmd += ["--threads", str(cores)]
    if arm == "ray":
        cmd += ["--executor", "ray"]
    return cmd


def run_arm(args, arm: str, out: Path, cores: int) -> float:
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    cmd = command(args, arm, out, cores)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(
            f"{arm} failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}"
        )
    return seconds


def summaries(out: Path) -> dict:
    found = {}
    for path in sorted(out.glob("*/seed-*/summary.json")):
        data = json.loads(path.read_text())
        found[str(path.relative_to(out))] = {k: v for k, v in data.items() if k not in TIMING}
    return found


def main(argv=None) -> int:
    import torch

    args = parse_args(argv)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    if "ray" in arms and not _ray_installed():
        print("ray is not installed (pip install 'binaryvae[ray]'): the ray arm is left out")
        arms.remove("ray")
    info = _common.machine_info()
    capability = torch.backends.cpu.get_cpu_capability()
    cores = info["cores"]
    print(_common.machine_line(info))
    print(f"torch CPU capability: {capability}")
    cells = len(args.families.split(",")) * len(args.latent_dims.split(","))
    print(
        f"{cells}-cell grid: {args.families} x latent {args.latent_dims} on {args.dataset}, "
        f"{args.epochs} epochs, seed 0; arms {', '.join(arms)}; {args.repeats} round(s)"
    )
    times = {arm: [] for arm in arms}
    identical = None
    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as tmp:
        for r in range(args.repeats):
            order = arms[r % len(arms) :] + arms[: r % len(arms)]
            for arm in order:
                out = Path(tmp) / f"{arm}-{r}"
                seconds = run_arm(args, arm, out, cores)
                times[arm].append(seconds)
                print(f"round {r + 1} {arm}: {seconds:.1f} s", flush=True)
            if "local" in arms and "ray" in arms and identical is None:
                identical = summaries(Path(tmp) / f"local-{r}") == summaries(Path(tmp) / f"ray-{r}")
            for arm in order:
                shutil.rmtree(Path(tmp) / f"{arm}-{r}", ignore_errors=True)
    medians = {arm: _common.median(v) for arm, v in times.items()}
    base = medians.get("local")
    rows = []
    for arm in arms:
        ratio = f"{base / medians[arm]:.2f}x" if base else "—"
        rows.append([arm, f"{medians[arm]:.1f}", ", ".join(f"{t:.1f}" for t in times[arm]), ratio])
    table = _common.markdown_table(
        ["arm", "median wall time (s)", "rounds (s)", "speed vs local"], rows
    )
    print(table)
    if identical is not None:
        print(f"local and ray summaries identical (all but timings): {identical}")
    result = {
        "machine": info,
        "cpu_capability": capability,
        "command": _common.command_line(),
        "grid": {
            "families": args.families,
            "latent_dims": args.latent_dims,
            "dataset": args.dataset,
            "epochs": args.epochs,
            "seeds": [0],
        },
        "times_s": times,
        "median_s": medians,
        "local_ray_identical": identical,
        "loadavg_end": [round(v, 2) for v in os.getloadavg()],
    }
    name = "sweep_quick.json" if args.quick else "sweep.json"
    _common.write_json(Path(args.out) / name, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
