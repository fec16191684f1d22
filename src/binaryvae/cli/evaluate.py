"""`binaryvae evaluate`: re-score a run directory (or each run of a compare directory)."""

from __future__ import annotations

import argparse

from binaryvae.cli._common import path_option, print_summary
from binaryvae.config import DEVICES
from binaryvae.errors import BadInput

__all__ = ["add_parser", "run_evaluate"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score a trained run as the discrete model it stands for; updates summary.json",
        description="Evaluate RUN_DIR (or every run in a compare directory) on its test split: "
        "relaxed / Bernoulli / discrete ELBO, IWAE, exact log p(x) where enumerable, sample FD. "
        "The numbers are merged into summary.json.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument(
        "--exact",
        action="store_true",
        help="enumerate all 2^n codes for log p(x) even for large n (n <= 20)",
    )
    p.add_argument(
        "--iwae",
        type=int,
        default=None,
        metavar="K",
        help="samples of the importance-weighted bound, stored as test_iwae_kK beside the "
        "entries of other k (default 1000 for binary models of n <= 12 bits, else 100)",
    )
    p.add_argument(
        "--device",
        default=None,
        choices=DEVICES,
        help="where to evaluate (default: the device the run was trained with, from its "
        "config.json)",
    )
    p.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    from binaryvae.runs import find_runs
    from binaryvae.runs.evaluate import evaluate_runs

    runs = find_runs(path_option(args.run_dir, "RUN_DIR"))
    if not runs:
        raise BadInput(f"{args.run_dir} is not a run directory or a compare directory")
    # every run locked and checked (config, checkpoint, data, summary) before any is written
    evaluate_runs(runs, exact=args.exact, iwae_k=args.iwae, device=args.device,
                  on_done=print_summary)  # fmt: skip
    return 0
