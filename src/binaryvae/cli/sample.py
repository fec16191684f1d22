"""`binaryvae sample`: images generated from a run's prior, as one PNG grid."""

from __future__ import annotations

import argparse

from binaryvae.errors import BadInput

__all__ = ["add_parser", "run_sample"]

MODES = ("probs", "bernoulli", "threshold")
# one PNG grid of at most 100 x 100 images (2,800 x 2,800 pixels of 28 x 28 digits)
MAX_SAMPLES = 10_000


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sample",
        help="generate images from a trained run's prior into a PNG",
        description="Decode N prior codes of RUN_DIR's model and save them as a PNG grid: pixel "
        "probabilities (probs), one Bernoulli draw per pixel (bernoulli), or probabilities "
        "thresholded at 0.5 (threshold).",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (its dataset is not needed)")
    p.add_argument(
        "--n",
        type=int,
        default=64,
        metavar="N",
        help=f"images (default 64, at most {MAX_SAMPLES:,})",
    )
    p.add_argument(
        "--mode",
        default="probs",
        choices=MODES,
        help="how each decoded image is shown (default probs)",
    )
    p.add_argument(
        "--out",
        default=None,
        metavar="FILE.png",
        help="where to write the grid (default RUN_DIR/samples_MODE.png)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="N",
        help="seed of the prior draws, in [0, 2^32) like a run's seed (default 0)",
    )
    p.set_defaults(func=run_sample)


def run_sample(args: argparse.Namespace) -> int:
    from pathlib import Path

    from binaryvae.cli._common import path_option
    from binaryvae.config import MAX_SEED, check_int
    from binaryvae.report import sample_figure

    path_option(args.run_dir, "RUN_DIR")
    path_option(args.out, "--out")
    check_int("--seed", args.seed, 0, MAX_SEED)
    if not 1 <= args.n <= MAX_SAMPLES:
        raise BadInput(f"--n must be in [1, {MAX_SAMPLES:,}] (one PNG grid), got {args.n}")
    out = args.out if args.out is not None else str(Path(args.run_dir) / f"samples_{args.mode}.png")
    if not out.lower().endswith(".png"):
        raise BadInput(f"--out must name a .png file, got {out!r}")
    path = sample_figure(args.run_dir, n=args.n, mode=args.mode, out=out, seed=args.seed)
    print(path)
    return 0
