"""`binaryvae report`: regenerate figures/, report.html and report.md from run directories."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run_report"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="regenerate figures and report.html of a run, compare or sweep directory",
        description="Read the run directories at DIR (a run directory, a compare directory or a "
        "sweep) and write DIR/figures/*.png, DIR/report.html (self-contained, offline) and "
        "DIR/report.md. For a sweep: a table per dataset (mean +- s.e. over seeds) and figures "
        "comparing the families across seeds.",
    )
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--no-theory", action="store_true", help="leave out the theory figures")
    p.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    from binaryvae.cli._common import path_option
    from binaryvae.report import write_report

    print(write_report(path_option(args.dir, "DIR"), theory=not args.no_theory))
    return 0
