"""The bias diagnostic on unbiased estimators: what the gradient records read at K draws.

Trains each family for one epoch on mnist-mini (8 bits, ``--hidden 32``, ``--grad-every 30``;
the setting of the report that found the yardstick "off") once per number of draws K
(``--grad-samples``) and prints, for every measurement, the noise norm ``grad_bias_noise``
(it falls as 1/sqrt(K): a norm, not a ratio), the ratio of norms bias / noise, the squared
ratio ``grad_bias_sq_ratio`` (near 1 at any K for an unbiased estimator), the bias test's
``grad_bias_z`` (about N(0, 1) for an unbiased estimator) and ``grad_noise_dims``
(`binaryvae.diagnostics.gradients` derives them). Training is the same at every K: the
measurement has its own generator.

    python bench/bias_calibration.py --threads 1
    python bench/bias_calibration.py --quick          # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _common  # noqa: E402

FAMILIES = ("bernoulli-disarm", "bernoulli-reinforce-loo")
KEYS = ("grad_bias_noise", "grad_bias_sq_ratio", "grad_bias_z", "grad_noise_dims")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--families", default=",".join(FAMILIES))
    p.add_argument("--samples", default="16,64,512", help="numbers of draws K")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs-dir", default=str(HERE.parent.parent / "bias-calibration-runs"))
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="smoke test: one family, K = 4 and 8")
    args = p.parse_args(argv)
    default_runs = args.runs_dir == p.get_default("runs_dir")
    _common.quick_folders(args, p, ("out",))
    if args.quick:
        args.families, args.samples = "bernoulli-disarm", "4,8"
        if default_runs:  # inside the temporary folder, beside the result files
            args.runs_dir = str(Path(args.out) / "runs")
    return args


def train(args, family: str, k: int) -> list[dict]:
    """One run of ``family`` measuring with K = ``k`` draws: its gradient records."""
    out = Path(args.runs_dir) / f"{family}_K{k}_s{args.seed}"
    if not (out / "summary.json").is_file():
        cmd = [sys.executable, "-m", "binaryvae", "train", "--dataset", "mnist-mini",
               "--family", family, "--latent-dim", "8", "--hidden", "32", "--epochs", "1",
               "--grad-every", "30", "--grad-samples", str(k), "--seed", str(args.seed),
               "--threads", str(args.threads), "--out", str(out), "--no-report", "--quiet",
               "--force"]  # fmt: skip
        env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", OMP_NUM_THREADS=str(args.threads))
        print(" ".join(cmd), flush=True)
        if subprocess.run(cmd, env=env).returncode != 0:
            raise SystemExit(f"{out.name}: binaryvae train failed")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [g for row in rows for g in row.get("gradient") or []]


def render(summary: dict) -> str:
    head = ["family", "K", "step", "noise norm (grad_bias_noise)", "bias / noise (norms)",
            "bias^2 / noise^2 (grad_bias_sq_ratio)", "z (grad_bias_z)", "noise dims"]  # fmt: skip
    rows = [[r["family"], r["grad_samples"], r["step"], f"{r['grad_bias_noise']:.3f}",
             f"{r['grad_bias_norm'] / r['grad_bias_noise']:.3f}",
             f"{r['grad_bias_sq_ratio']:.3f}", f"{r['grad_bias_z']:+.2f}",
             f"{r['grad_noise_dims']:.0f}"] for r in summary["rows"]]  # fmt: skip
    return "\n".join([
        f"Machine: {_common.machine_line(summary['machine'])}",
        f"Command: `{summary['command']}`", "",
        "mnist-mini, 8 bits, --hidden 32, 1 epoch, measured every 30 steps on the first "
        "batch of test images (128) with K draws, against the exact discrete-ELBO gradient.", "",
        _common.markdown_table(head, rows),
    ])  # fmt: skip


def main(argv=None) -> int:
    args = parse_args(argv)
    rows = []
    for family in args.families.split(","):
        for k in (int(s) for s in args.samples.split(",")):
            for g in train(args, family, k):
                rows.append({"family": family, **{key: g[key] for key in (
                    "step", "grad_samples", "grad_bias_norm", *KEYS)}})  # fmt: skip
    summary = {"benchmark": "bias_calibration", "command": _common.command_line(),
               "machine": _common.machine_info(), "rows": rows}  # fmt: skip
    name = "bias_calibration" + ("_quick" if args.quick else "")
    _common.write_table(Path(args.out), name, summary, render(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
