"""`binaryvae theory`: print the dissertation's theory tables (toy model, Table 5.1, the
smoothed StepLogistic's bit probability, eq. 5.9 / 5.11 regions); --out also writes them as JSON
and CSV, with the data behind Figures 5.1, 5.3, 5.4, 5.7 and 5.8."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run_theory"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "theory",
        help="print the theory tables of the dissertation (chapter 5); --out writes JSON/CSV",
        description="Compute and print the numbers behind the dissertation's chapter 5: the toy "
        "model's exact posterior and best fits, Table 5.1, how P(z > 0) of the smoothed "
        "StepLogistic depends on beta, and where eqs. 5.9 and 5.11 fail.",
    )
    p.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="also write theory.json, one CSV per table and the figure data to DIR",
    )
    p.set_defaults(func=run_theory)


def run_theory(args: argparse.Namespace) -> int:
    from binaryvae import theory  # numpy/scipy/torch: imported only when the command runs
    from binaryvae.cli._common import path_option

    path_option(args.out, "--out")

    tables = theory.all_tables()
    print(theory.render_text(tables))
    if args.out is not None:
        paths = theory.write_tables(tables, args.out)
        print(f"\nwrote {len(paths)} files to {args.out}")
    return 0
