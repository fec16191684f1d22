"""`binaryvae compare`: several families, same data, seed and architecture; then the report."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from binaryvae.cli._common import add_run_options, hidden_sizes, path_option
from binaryvae.cli.sweep import add_executor_options, executor_from_args, print_results
from binaryvae.config import BINARIZE_MODES, COMPARE_GRADIENTS, TrainConfig
from binaryvae.config import COMPARE_EPOCHS as DEFAULT_COMPARE_EPOCHS
from binaryvae.config import COMPARE_FAMILIES as DEFAULT_FAMILIES
from binaryvae.errors import BadInput

__all__ = ["add_parser", "run_compare"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compare",
        help="train several families on the same data and seed, then write the report",
        description="Train several posterior families with the same data, seed and architecture "
        "(one run directory each under --out), score each as the discrete model it stands for, "
        "and write --out/report.html with every figure and table.",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="compare directory to create")
    p.add_argument(
        "--families",
        default=None,
        metavar="a,b:objective",
        help="comma-separated families, each optionally name:objective "
        f"(default {','.join(DEFAULT_FAMILIES)})",
    )
    p.add_argument("--dataset", default=None, help="default mnist-mini (offline)")
    p.add_argument(
        "--latent-dim", type=int, default=None, metavar="N", help="latent bits (default 8)"
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        metavar="N",
        help=f"epochs per model (default {DEFAULT_COMPARE_EPOCHS}: a few minutes on 2 cores)",
    )
    p.add_argument("--seed", type=int, default=None, metavar="N", help="default 0")
    p.add_argument(
        "--seeds",
        default=None,
        metavar="0-4",
        help="train every family once per seed (0,1,2 or 0-4), all seeds at once as one replica "
        "group, into OUT/<name>/seed-<s>/; the report shows mean +- s.e. over the seeds",
    )
    p.add_argument("--hidden", default=None, metavar="512,256,128", help="hidden layer sizes")
    p.add_argument("--batch-size", type=int, default=None, metavar="N")
    p.add_argument("--lr", type=float, default=None, metavar="F")
    p.add_argument("--beta", type=float, default=None, metavar="F")
    p.add_argument("--binarize", default=None, choices=BINARIZE_MODES)
    add_run_options(p)
    add_executor_options(p)
    p.set_defaults(func=run_compare)


def _recorded(out: Path) -> dict:
    """The comparison recorded in ``out/compare.json`` (what ``--resume`` continues)."""
    from binaryvae.runs.directory import read_compare_listing

    try:
        recorded = read_compare_listing(out)
    except BadInput as e:
        raise BadInput(f"cannot resume {e}") from None
    return {k: recorded.get(k) for k in ("base", "families", "seeds")}


def run_compare(args: argparse.Namespace) -> int:
    from binaryvae.runs import compare, parse_families, parse_seeds

    if args.seeds is not None and args.seed is not None:
        raise BadInput("give --seed N (one run per family) or --seeds 0-4 (replicas), not both")
    path_option(args.out, "--out")
    path_option(args.data_dir, "--data-dir")
    executor = executor_from_args(args)
    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    fields = {
        "dataset": args.dataset,
        "latent_dim": args.latent_dim,
        "epochs": args.epochs,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "beta": args.beta,
        "binarize": args.binarize,
        "threads": args.threads,
        "device": args.device,
        "data_dir": args.data_dir,
        "precision": args.precision,
        "tensorboard": args.tensorboard,
    }
    if args.resume:  # options not given are the recorded ones (compare.json)
        recorded = _recorded(Path(args.out))
        base = recorded["base"]
        families = parse_families(
            args.families if args.families is not None else recorded["families"]
        )
        if seeds is None and recorded["seeds"] is not None:
            seeds = parse_seeds(recorded["seeds"])
    else:
        base = TrainConfig(epochs=DEFAULT_COMPARE_EPOCHS, **COMPARE_GRADIENTS).to_dict()
        families = parse_families(
            args.families if args.families is not None else ",".join(DEFAULT_FAMILIES)
        )
    base.update({k: v for k, v in fields.items() if v is not None})
    if args.threads is None and (args.executor == "ray" or args.cpus_per_run is not None):
        base["threads"] = max(1, int(args.cpus_per_run or 1))  # what each run reserves
    if args.hidden is not None:
        base["hidden"] = hidden_sizes(args.hidden)
    config = TrainConfig.from_dict(base)
    start = time.monotonic()
    summaries = compare(
        families,
        config,
        args.out,
        force=args.force,
        resume=args.resume,
        progress=not args.quiet,
        seeds=seeds,
        executor=executor,
    )
    if not args.no_report:
        from binaryvae.report import write_report

        path = write_report(args.out)
        print(f"report: {path}")
    minutes, seconds = divmod(round(time.monotonic() - start), 60)
    print(f"{len(summaries)} runs in {minutes}m{seconds:02d}s")
    if seeds is not None:  # replica groups: one line per family, mean +- s.e. over the seeds
        results = {}
        for name, runs in summaries.items():
            stopped = [r for r in runs.values() if "status" in r]
            status = stopped[0]["status"] if stopped else "finished"
            reason = "; ".join(r["message"] for r in stopped) or None
            results[name] = {"status": status, "reason": reason, "runs": runs}
        return print_results(results, "compare")
    stopped = [name for name, s in summaries.items() if "status" in s]
    for name, s in summaries.items():
        keys = ("test_discrete_elbo", "test_log_px_exact", "sample_fd")
        parts = [f"{k}={s[k]:.2f}" for k in keys if isinstance(s.get(k), int | float)]
        print(
            f"{name}: {'  '.join(parts) or s.get('status', '')}  [{s.get('objective_label', '')}]"
        )
    if stopped:
        reasons = {s.get("status") for n, s in summaries.items() if n in stopped}
        what = "stopped on NaN/inf" if reasons == {"diverged"} else "did not finish"
        print(f"binaryvae compare: {what}: {', '.join(stopped)}", file=sys.stderr)
        return 1
    return 0
