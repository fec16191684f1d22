"""The `binaryvae` command line: parses arguments and calls one library function per command.

No maths lives here. Each sub-command is a module of this package with two functions:
`add_parser(subparsers)` (declares its options, sets `func`) and the function it calls.
Exit codes: 0 success, 2 bad input (one-line message; traceback only with --debug), 1 other
failures.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from binaryvae import __version__
from binaryvae.errors import BadInput

__all__ = ["main", "build_parser", "COMMANDS"]

# Sub-command modules, in the order `--help` lists them.
COMMANDS = (
    "compare",
    "sweep",
    "reproduce",
    "train",
    "evaluate",
    "sample",
    "report",
    "theory",
    "datasets",
)


class _Parser(argparse.ArgumentParser):
    """argparse exits with code 2 on bad usage already; keep its message to one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="binaryvae",
        description="Variational autoencoders with binary latent codes: train, compare, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"binaryvae {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        module = importlib.import_module(f"binaryvae.cli.{name.replace('-', '_')}")
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # libgomp reads this once, when torch is first imported: passive waiting keeps 2 threads
    # fast next to another busy process (docs/benchmarks.md, section 2; binaryvae.training.setup).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        result = args.func(args)
    except BadInput as e:
        if args.debug:
            raise
        print(f"binaryvae {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        # the environment refused a read or write (no space, read-only, no permission, a name
        # too long, a directory in the way): the user's to fix, so one line naming the path and
        # the cause, and exit code 2, like bad input
        if args.debug:
            raise
        from binaryvae.storage import describe_os_error

        print(f"binaryvae {args.command}: error: {describe_os_error(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"binaryvae {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the CLI's last line of defence
        if args.debug:
            raise
        print(f"binaryvae {args.command}: failed: {type(e).__name__}: {e}", file=sys.stderr)
        print("(run again with --debug for the traceback)", file=sys.stderr)
        return 1
    return int(result or 0)
