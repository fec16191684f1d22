"""`binaryvae sweep`: a grid of runs (datasets x families x objectives x latent sizes, all seeds
of a cell as one replica group), on this machine or on a Ray cluster; then the report."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from binaryvae.cli._common import add_run_options, path_option
from binaryvae.config import COMPARE_EPOCHS, COMPARE_FAMILIES, DEFAULT_MAX_RETRIES, EXECUTORS
from binaryvae.errors import BadInput

__all__ = ["add_executor_options", "add_parser", "executor_from_args", "run_sweep"]

# train's options that are axes of the grid here (their plural forms), and those that are
# added by add_run_options
_AXIS_OPTIONS = ("dataset", "family", "objective", "latent_dim", "seed")
_RUN_OPTIONS = ("threads", "device", "data_dir", "precision", "tensorboard")


def add_executor_options(p: argparse.ArgumentParser) -> None:
    """--executor, --address and the resources of a run (sweep and compare)."""
    g = p.add_argument_group("where the runs execute")
    g.add_argument(
        "--executor",
        default="local",
        choices=EXECUTORS,
        help="local: one run after the other in this process (default); ray: one Ray task per "
        "run, on the cluster at --address or on a local Ray instance with every core "
        "(pip install 'binaryvae[ray]')",
    )
    g.add_argument(
        "--address",
        default=None,
        metavar="auto|HOST:PORT",
        help="the Ray cluster to use (default $RAY_ADDRESS; without either, start a local "
        "instance). With an address --out must be an absolute path that every node can reach",
    )
    g.add_argument(
        "--cpus-per-run",
        type=float,
        default=None,
        metavar="N",
        help="CPUs each run reserves on Ray, and its torch threads unless --threads is given "
        "(default 1)",
    )
    g.add_argument(
        "--gpus-per-run",
        type=float,
        default=0.0,
        metavar="F",
        help="GPUs each run reserves on Ray; a fraction packs several runs per GPU, e.g. 0.25 "
        "(default 0)",
    )
    g.add_argument(
        "--max-retries",
        type=int,
        default=DEFAULT_MAX_RETRIES,
        metavar="N",
        help="Ray: times a run is restarted (resuming from its checkpoint) after its worker or "
        f"node dies (default {DEFAULT_MAX_RETRIES})",
    )


def executor_from_args(args: argparse.Namespace):
    from binaryvae.runs.sweep_executors import make_executor

    cpus = 1 if args.cpus_per_run is None else args.cpus_per_run
    return make_executor(
        args.executor,
        address=args.address,
        cpus_per_run=cpus,
        gpus_per_run=args.gpus_per_run,
        max_retries=args.max_retries,
    )


def run_threads(args: argparse.Namespace) -> int | None:
    """Torch threads of each run: --threads, else --cpus-per-run (whole CPUs, at least 1)."""
    if args.threads is not None:
        return args.threads
    if args.cpus_per_run is None:
        return 1
    return max(1, int(args.cpus_per_run))


def _train_options():
    """The options of ``binaryvae train`` that become fixed values of the grid: its actions
    that map to config fields (`binaryvae.cli.train._FIELDS`), minus the axes and the options
    every run command shares (added by `add_run_options`)."""
    from binaryvae.cli import train

    holder = argparse.ArgumentParser(add_help=False)
    train.add_parser(holder.add_subparsers())
    parser = next(a for a in holder._actions if isinstance(a, argparse._SubParsersAction))
    train_parser = parser.choices["train"]
    keep = (set(train._FIELDS) | {"hidden"}) - set(_AXIS_OPTIONS) - set(_RUN_OPTIONS)
    return [a for a in train_parser._actions if a.dest in keep]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="train a grid of runs (families x objectives x datasets x latent sizes x seeds)",
        description="Train every cell of a grid -- datasets x families x objectives x latent "
        "sizes, all seeds of a cell at once as one replica group -- into DIR/<cell>/seed-<s>/ "
        "(ordinary run directories), on this machine or on a Ray cluster. DIR/sweep.json "
        "records the grid and every cell's status, DIR/sweep.csv has one row per run. Running "
        "the same command again skips finished cells and resumes the others. Exit code 0 when "
        "every cell finished, 1 otherwise, 2 for bad input (nothing written).",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="sweep directory")
    p.add_argument(
        "--grid",
        default=None,
        metavar="FILE",
        help="a .toml or .json file of axes and fixed values, named like these options "
        '(e.g. families = ["logistic", "steplogistic"], latent-dims = [8, 16], '
        "epochs = 20); options given here override it",
    )
    g = p.add_argument_group("axes of the grid (comma-separated)")
    g.add_argument(
        "--families",
        "--family",
        default=None,
        metavar="a,b:objective",
        help=f"families, each optionally name:objective (default: compare's "
        f"{len(COMPARE_FAMILIES)}, {','.join(COMPARE_FAMILIES)})",
    )
    g.add_argument(
        "--objectives",
        "--objective",
        default=None,
        metavar="elbo,bernoulli-elbo",
        help="crossed with every family given without :objective (default elbo)",
    )
    g.add_argument(
        "--datasets", "--dataset", default=None, metavar="a,b", help="default mnist-mini"
    )
    g.add_argument("--latent-dims", "--latent-dim", default=None, metavar="8,16", help="default 8")
    g.add_argument(
        "--seeds",
        "--seed",
        default=None,
        metavar="0-4",
        help="seeds of every cell, trained at once as one replica group (default 0)",
    )
    g.add_argument(
        "--vary",
        action="append",
        default=None,
        metavar="NAME=v1,v2",
        help="one more axis: any option of binaryvae train or family option (lr, beta, hidden, "
        "binarize, validation, protocol, prior, steps, learning_signal, loo_samples, ...) and "
        "its values; hidden's are sizes joined by x (200x200, none). Repeatable; crossed with "
        "the other axes, each cell's name gains a suffix per value (e.g. _lr-0.0001)",
    )
    fixed = p.add_argument_group("fixed values (the options of binaryvae train)")
    for a in _train_options():
        kwargs = {"dest": a.dest, "default": a.default, "help": a.help}
        if a.dest == "epochs":
            kwargs["help"] = f"epochs per run (default {COMPARE_EPOCHS}, as compare)"
        if a.nargs == 0:  # a flag
            kwargs["action"] = "store_true"
        else:
            kwargs.update(type=a.type, choices=a.choices, metavar=a.metavar)
        fixed.add_argument(*a.option_strings, **kwargs)
    add_run_options(p)
    for action in p._actions:
        if action.dest == "threads":
            action.help = "torch threads of each run (default: --cpus-per-run, i.e. 1)"
        elif action.dest == "resume":
            action.help = (
                "continue the sweep in --out with its recorded grid (options given here may "
                "add to it); the same command without --resume continues it too"
            )
    add_executor_options(p)
    p.set_defaults(func=run_sweep)


def _given(args: argparse.Namespace) -> dict[str, Any]:
    """The grid values given on the command line (None = not given)."""
    from binaryvae.cli import train

    values: dict[str, Any] = {}
    for axis in ("families", "objectives", "datasets", "latent_dims", "seeds"):
        if getattr(args, axis) is not None:
            values[axis] = getattr(args, axis)
    for option, field in train._FIELDS.items():
        if option in _AXIS_OPTIONS:
            continue
        value = getattr(args, option, None)
        if value is not None:
            values[field] = None if value == train._NONE else value  # "none": the field's null
    if args.hidden is not None:
        values["hidden"] = args.hidden
    return values


def _given_vary(args: argparse.Namespace) -> dict[str, list]:
    """The axes of ``--vary NAME=v1,v2`` (repeatable), by name as given."""
    from binaryvae.runs.sweep_grid import parse_vary_option

    out: dict[str, list] = {}
    for text in args.vary or ():
        name, values = parse_vary_option(text)
        if name in out:
            raise BadInput(f"--vary {name} is given twice; give all its values in one")
        out[name] = values
    return out


def run_sweep(args: argparse.Namespace) -> int:
    from binaryvae.runs.sweep import recorded_grid_values, sweep
    from binaryvae.runs.sweep_grid import grid_from_values, load_grid_file, normalize_keys

    for option in ("out", "grid", "data_dir"):
        path_option(getattr(args, option), "--" + option.replace("_", "-"))
    executor = executor_from_args(args)
    explicit = None
    if args.resume and args.grid is None:
        values, explicit = recorded_grid_values(args.out)
        where = f"{args.out}/sweep.json and the options"
    elif args.grid is not None:
        values, where = load_grid_file(args.grid), f"grid file {args.grid}"
    else:
        values, where = {}, "the options"
    values = normalize_keys(values, where)
    from binaryvae.cli.train import one_budget

    given = _given(args)
    one_budget(values, given)
    values.update(given)
    vary = _given_vary(args)
    if vary:  # --vary NAME replaces the grid file's values of NAME
        values["vary"] = {**(values.get("vary") or {}), **vary}
    if "threads" not in values:
        values["threads"] = run_threads(args)
    if explicit is not None:
        explicit = sorted(set(explicit) | set(given))
    grid = grid_from_values(values, where, explicit=explicit)
    varied_budget = {"epochs", "steps"} & set(grid.vary)
    if "epochs" not in values and grid.base.steps is None and not varied_budget and not args.quiet:
        # the default stays (grid files and earlier commands rely on it), but said, not silent
        print(f"sweep: --epochs not given: {grid.base.epochs} epochs per run (compare's default)")
    results = sweep(
        grid,
        args.out,
        executor=executor,
        resume=args.resume,
        force=args.force,
        progress=not args.quiet,
    )
    if not args.no_report:
        from binaryvae.report import write_report

        print(f"report: {write_report(args.out)}")
    return print_results(results, "sweep")


def print_results(results: dict[str, dict[str, Any]], command: str) -> int:
    """One line per cell on stdout (its headline number or why it did not finish), a count
    line; 0 when every cell finished, else 1."""
    from binaryvae.runs.sweep import headline

    unfinished = []
    for name, result in results.items():
        if result["status"] == "finished":
            h = headline(list(result["runs"].values()))
            text = "finished"
            if h:
                text = f"{h['label']} {h['mean']:.2f}"
                if h["se"] is not None:
                    text += f" ± {h['se']:.2f} (mean ± s.e. of {h['n']} seeds)"
        else:
            unfinished.append(name)
            text = f"{result['status']}: {result['reason']}"
        print(f"{name}: {text}")
    print(f"{len(results) - len(unfinished)} of {len(results)} cells finished")
    if unfinished:
        print(
            f"binaryvae {command}: not finished: {', '.join(unfinished)} (see sweep.json; run the "
            "same command again to retry them)",
            file=sys.stderr,
        )
        return 1
    return 0
