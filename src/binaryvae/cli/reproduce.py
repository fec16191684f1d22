"""`binaryvae reproduce`: run a study of docs/benchmarks.md (a grid file shipped in the package)
through the sweep engine, then write its tables and figures; `--list` shows the studies and
their cost on this machine."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from binaryvae.cli._common import path_option
from binaryvae.cli.sweep import add_executor_options, executor_from_args, print_results
from binaryvae.errors import BadInput

__all__ = ["add_parser", "run_reproduce"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "reproduce",
        help="rerun a study of docs/benchmarks.md and write its tables (--list: the studies)",
        description="Run study NAME (binaryvae/studies/NAME.toml, or a .toml study file) "
        "through the sweep engine into DIR -- resumable: the same command again skips "
        "finished cells and resumes the others -- then write DIR/study.md, DIR/study.json and "
        "DIR/figures/: per cell mean ± s.e. over seeds, paired differences against the "
        "baseline (Student-t 95% interval, Wilcoxon p, Holm's note). Exit code 0 when every "
        "cell finished, 1 otherwise, 2 for bad input (nothing written).",
    )
    p.add_argument("name", nargs="?", default=None, metavar="NAME", help="the study")
    p.add_argument("--list", action="store_true",
                   help="list the studies: cells x seeds, steps per run, and CPU-hours of the "
                   "full and quick budgets from seconds per step measured now")  # fmt: skip
    p.add_argument("--out", default=None, metavar="DIR", help="the study's sweep directory")
    p.add_argument("--budget", default="full", choices=("full", "quick"),
                   help="full: the published budget (default); quick: a smoke version on "
                   "mnist-mini that finishes in about a minute")  # fmt: skip
    p.add_argument("--tables-only", action="store_true",
                   help="train nothing: write the tables from the cells finished in DIR")
    p.add_argument("--cells", metavar="PATTERN[,PATTERN]",
                   help="train only the cells whose names match one of these shell patterns "
                   "(e.g. 'fashion-mnist_bernoulli-*_hidden-200x200'); the tables use every "
                   "finished cell")
    p.add_argument("--seeds", default=None, metavar="0,2",
                   help="train only these of the study's seeds now (e.g. one per session or "
                   "per machine), as one replica group beside the seeds already trained; each "
                   "seed draws the data order and noise it draws in the whole group. The others "
                   "later, with --seeds again or without it; exit code 0 when the chosen seeds "
                   "of the chosen cells finished")
    p.add_argument("--merge-from", default=None, metavar="DIR2",
                   help="train nothing: copy into DIR the finished seeds of the same study run "
                   "into DIR2 (e.g. its other seeds, trained with --seeds on another core or "
                   "machine), then write the tables. Refused, nothing copied, when a cell was "
                   "trained with other options, a seed is in both folders or DIR2 holds a link; "
                   "with --cells, only those cells")  # fmt: skip
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="look for dataset files in DIR first")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch threads of each run (default: --cpus-per-run, i.e. 1)")
    p.add_argument("--device", default=None, choices=("auto", "cpu", "cuda"),
                   help="where the runs train (default auto)")
    p.add_argument("--force", action="store_true",
                   help="start the study in DIR over (only binaryvae's own files are replaced)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    add_executor_options(p)
    p.set_defaults(func=run_reproduce)


def run_reproduce(args: argparse.Namespace) -> int:
    from binaryvae.studies import load_study

    if args.list:
        if args.name is not None or args.out is not None:
            raise BadInput("--list takes no study name and no --out")
        return list_studies()
    if args.name is None:
        raise BadInput("give a study NAME (binaryvae reproduce --list shows them) and --out DIR")
    if args.out is None:
        raise BadInput(f"give --out DIR: where study {args.name} runs and its tables go")
    for option in ("out", "data_dir"):
        path_option(getattr(args, option), "--" + option.replace("_", "-"))
    study = load_study(args.name)
    out = Path(args.out)
    if args.merge_from is not None:
        return _merge(study, args, out)
    if args.tables_only:
        return _tables(study, args.budget, out)
    from binaryvae.cli.sweep import run_threads
    from binaryvae.runs.sweep import sweep

    executor = executor_from_args(args)
    grid = study.grid(args.budget, threads=run_threads(args), device=args.device,
                      data_dir=args.data_dir)  # fmt: skip
    only = select_cells(grid.cells(), args.cells, study.name)
    seeds = select_seeds(grid.seeds, args.seeds, study.name)
    if not args.quiet:
        cells = grid.cells()
        print(f"reproduce {study.name} ({args.budget}): {len(cells)} cells x "
              f"{len(grid.seeds)} seeds into {out}", file=sys.stderr, flush=True)  # fmt: skip
    results = sweep(grid, out, executor=executor, force=args.force, progress=not args.quiet,
                    only=only, seeds=seeds)  # fmt: skip
    if only is not None:
        results = {name: r for name, r in results.items() if name in only}
    if seeds is not None:  # a cell whose chosen seeds all finished counts as done now
        results = {name: _chosen_only(r, seeds) for name, r in results.items()}
    status = print_results(results, "reproduce")
    _tables(study, args.budget, out)
    return status


def _merge(study, args: argparse.Namespace, out: Path) -> int:
    """--merge-from: join the finished seeds of another folder of the study into ``out``
    (`binaryvae.runs.sweep_merge`), then write the tables."""
    from binaryvae.runs.sweep_merge import merge_sweeps

    clashing = [flag for flag, given in (("--seeds", args.seeds is not None),
                                         ("--tables-only", args.tables_only),
                                         ("--force", args.force)) if given]  # fmt: skip
    if clashing:
        raise BadInput(f"--merge-from trains nothing and replaces nothing: it takes no "
                       f"{clashing[0]}")  # fmt: skip
    path_option(args.merge_from, "--merge-from")
    for folder in (out, Path(args.merge_from)):
        if not (folder / "sweep.json").is_file():
            raise BadInput(f"{folder} holds no study run (no sweep.json)")
    cells = study.grid(args.budget).cells()
    only = select_cells(cells, args.cells, study.name)
    chosen = [c for c in cells if only is None or c.name in only]
    plan = merge_sweeps(chosen, out, Path(args.merge_from))
    for name, seeds in plan.copy.items():
        print(f"merged {name}: seeds {', '.join(map(str, seeds))}")
    for name, seeds in plan.unfinished.items():
        print(f"left {name}: seeds {', '.join(map(str, seeds))} not finished in "
              f"{args.merge_from}")  # fmt: skip
    if not plan.copy:
        print(f"nothing to merge: {args.merge_from} holds no finished seed of these cells")
    return _tables(study, args.budget, out)


def select_cells(cells, patterns: str | None, study: str) -> frozenset[str] | None:
    """The names of ``cells`` matching one of the comma-separated shell ``patterns`` (None:
    all). A pattern that matches no cell is refused, naming it."""
    if patterns is None:
        return None
    from fnmatch import fnmatchcase

    chosen: set[str] = set()
    for pattern in (p.strip() for p in patterns.split(",")):
        hits = {c.name for c in cells if fnmatchcase(c.name, pattern)} if pattern else set()
        if not hits:
            raise BadInput(f"--cells: {pattern!r} matches no cell of study {study} "
                           f"(its cells: {', '.join(c.name for c in cells)})")  # fmt: skip
        chosen |= hits
    return frozenset(chosen)


def select_seeds(study_seeds, text: str | None, study: str) -> frozenset[int] | None:
    """The seeds ``--seeds`` chooses (None: all); a seed the study does not have is refused."""
    if text is None:
        return None
    from binaryvae.runs.seeds import parse_seeds

    chosen = parse_seeds(text)
    unknown = [s for s in chosen if s not in study_seeds]
    if unknown:
        raise BadInput(f"--seeds: study {study} has no seed {unknown[0]} (its seeds: "
                       f"{', '.join(map(str, study_seeds))})")  # fmt: skip
    return frozenset(chosen)


def _chosen_only(result: dict, seeds: frozenset[int]) -> dict:
    """A cell's result as far as the chosen seeds go: finished when each of them finished."""
    if result["status"] != "pending":
        return result
    runs = {s: r for s, r in result["runs"].items() if s in seeds}
    if runs and all(r.get("status", "finished") == "finished" for r in runs.values()):
        return {**result, "status": "finished", "runs": runs}
    return result


def _tables(study, budget: str, out: Path) -> int:
    from binaryvae.studies.tables import write_tables

    if not (out / "sweep.json").is_file():
        raise BadInput(f"{out} holds no study run (no sweep.json); run it first without "
                       "--tables-only")  # fmt: skip
    from binaryvae.runs.sweep import read_sweep_summaries

    recorded = {c["name"] for c in read_sweep_summaries(out)[0]["cells"]}
    if recorded != {c.name for c in study.grid(budget).cells()}:
        raise BadInput(f"{out} holds other cells than study {study.name}'s {budget} budget; "
                       "give the --budget it was run with")  # fmt: skip
    for path in write_tables(study, budget, out):
        print(f"wrote {path}")
    return 0


def list_studies() -> int:
    """One line per shipped study, and what its cost counts and where it comes from."""
    from binaryvae.studies import load_study, study_names
    from binaryvae.studies.cost import EVAL_IMAGES, MEASURED_STEPS, SUMMARY_IMAGES, study_cost

    measured: dict = {}
    for name in study_names():
        study = load_study(name)
        full = study_cost(study, "full", measured)
        quick = study_cost(study, "quick", measured)
        steps = "/".join(f"{s:,}" for s in full["steps"])
        print(f"{name}: {study.title}")
        print(f"    {_count(full['cells'], 'cell')} x {_count(full['seeds'], 'seed')}, {steps} "
              f"steps per run; CPU time: full {_cpu(full['cpu_hours'])} (training "
              f"{_cpu(full['train_hours'])}, evaluation {_cpu(full['eval_hours'])}, summaries "
              f"{_cpu(full['summary_hours'])}), quick {_cpu(quick['cpu_hours'])} "
              f"({_count(quick['cells'], 'cell')} x {_count(quick['seeds'], 'seed')})")
    models = sum(1 for k in measured if k[0] == "step")
    print(f"CPU time = training (CPU seconds per step x steps) + evaluation (each metrics row's "
          f"test bounds, IWAE and trackers, per image x images; gradient diagnostics as training "
          f"steps) + the summary (IWAE, exact log p(x), sample FD, per image x test images), x "
          f"seeds; measured now on this machine ({MEASURED_STEPS} steps, {EVAL_IMAGES} test "
          f"images, {SUMMARY_IMAGES} for the summary, of each of the {models} distinct models, "
          "one thread, mnist-mini images; binaryvae.studies.cost). Other work on the machine "
          "while this runs moves the numbers up or down; a replica group of S seeds is "
          "usually cheaper than S runs. Run one: binaryvae reproduce NAME --out DIR "
          "[--budget quick]")  # fmt: skip
    return 0


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def _cpu(hours: float) -> str:
    """CPU-hours as a reader wants them: 32 CPU-h, 0.6 CPU-h, 2.1 CPU-min, 9 CPU-s."""
    if hours >= 10:
        return f"{hours:,.0f} CPU-h"
    if hours >= 0.1:
        return f"{hours:.1f} CPU-h"
    if hours * 60 >= 1:
        return f"{hours * 60:.1f} CPU-min"
    return f"{hours * 3600:.0f} CPU-s" if hours * 3600 >= 1 else "<1 CPU-s"
