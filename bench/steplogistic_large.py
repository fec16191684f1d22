"""StepLogistic at large latent sizes on real data: the dissertation's open problem (section 5.3).

The dissertation could train StepLogistic only with 8 latent bits ("numerically unstable" at 56
and beyond). This script trains it through the normal training path (`binaryvae.runs.train_run`:
the NaN/inf guard stops a run at the first non-finite loss or gradient and names epoch and batch)
at n = 8, 56, 96 and 200 bits, with the dissertation's network (784-512-256-128 ReLU, mirrored
decoder, batch 128, Adam 1e-3, beta 10, grey levels), and reports per n: whether every step
stayed finite, the final test relaxed ELBO, the discrete ELBO of the binary model (hard bits),
the exact log p(x) (n <= 16) or the IWAE bound of the discrete model, and seconds per epoch.

    python bench/steplogistic_large.py                            # mnist-mini, 10 epochs
    python bench/steplogistic_large.py --dataset fashion-mnist --epochs 5   # Fashion-MNIST
        # as `binaryvae datasets` resolves it (e.g. BINARYVAE_DATA_DIR=DIR with DIR/fashion-mnist/)
    python bench/steplogistic_large.py --quick                    # smoke test
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _common  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist-mini")
    p.add_argument("--sizes", default="8,56,96,200", help="comma-separated latent sizes")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=HERE / "results", help="folder for the JSON result")
    p.add_argument(
        "--quick", action="store_true", help="tiny budget: 1 epoch, n = 8 and 200, small net"
    )
    args = p.parse_args(argv)
    _common.quick_folders(args, p)
    return args


def run_one(n: int, args: argparse.Namespace, workdir: Path) -> dict:
    from binaryvae.config import TrainConfig
    from binaryvae.evaluation import own_elbo
    from binaryvae.runs import TrainingDiverged, train_run

    fields = dict(dataset=args.dataset, family="steplogistic", latent_dim=n, epochs=args.epochs,
                  seed=args.seed, threads=args.threads, device="cpu")  # fmt: skip
    if args.quick:
        fields.update(hidden=(64,), batch_size=500)
    config = TrainConfig(**fields)
    t0 = time.perf_counter()
    try:
        summary = train_run(config, workdir / f"n{n}", progress=False)
    except TrainingDiverged as e:
        return {
            "latent_dim": n,
            "finite": False,
            "stopped": str(e),
            "wall_seconds": time.perf_counter() - t0,
        }
    return {
        "latent_dim": n,
        "finite": True,
        "test_relaxed_elbo": own_elbo(summary),  # steplogistic: a relaxation
        "test_discrete_elbo": summary.get("test_discrete_elbo"),
        "test_log_px_exact": summary.get("test_log_px_exact"),
        "test_iwae": summary.get("test_iwae"),
        "iwae_k": summary.get("iwae_k"),
        "seconds_per_epoch": summary.get("seconds_per_epoch"),
        "wall_seconds": time.perf_counter() - t0,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    sizes = [8, 200] if args.quick else [int(s) for s in args.sizes.split(",")]
    if args.quick:
        args.epochs = 1
    info = _common.machine_info()
    print(_common.machine_line(info))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            row = run_one(n, args, Path(tmp))
            rows.append(row)
            print(
                f"n={n}: "
                + ", ".join(
                    f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in row.items()
                    if k != "latent_dim"
                ),
                flush=True,
            )

    def cell(v):
        return "—" if v is None else f"{v:.2f}"

    table = _common.markdown_table(
        ["bits", "all steps finite", "relaxed ELBO", "discrete ELBO", "exact log p(x)",
         "IWAE (k)", "s / epoch"],
        [[r["latent_dim"], "yes" if r["finite"] else f"NO: {r['stopped']}",
          cell(r.get("test_relaxed_elbo")), cell(r.get("test_discrete_elbo")),
          cell(r.get("test_log_px_exact")),
          "—" if r.get("test_iwae") is None else f"{r['test_iwae']:.2f} ({r['iwae_k']})",
          cell(r.get("seconds_per_epoch"))] for r in rows],
    )  # fmt: skip
    print(
        f"\nStepLogistic on {args.dataset}, {args.epochs} epoch(s), seed {args.seed}; test split, "
        "nats per image (higher is better)\n"
    )
    print(table)
    _common.write_json(
        args.out / "steplogistic_large.json",
        {
            "machine": info,
            "command": _common.command_line(),
            "dataset": args.dataset,
            "epochs": args.epochs,
            "rows": rows,
        },
    )
    return 0 if all(r["finite"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
