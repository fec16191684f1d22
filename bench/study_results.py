"""Commit a study's finished runs as raw results: one tagged JSON per run, and the study's tables.

`binaryvae reproduce NAME --out DIR` leaves run directories (checkpoints included: megabytes
per run) that are not committed. This script copies what a table needs from every finished run
of DIR -- its config.json, summary.json and metrics.jsonl rows -- into one JSON file per run,
``RESULTS/<cell>_seed<s>.json``, tagged with the engine and the commit that trained it (the
tag tests/test_bench_results_provenance.py checks), plus DIR/study.md when it exists (write it
first with ``binaryvae reproduce NAME --out DIR --tables-only``). Runs not finished are left
out; nothing in DIR is changed.

    binaryvae reproduce estimator-study --out DIR --tables-only
    python bench/study_results.py --out DIR --study estimator-study \\
        --results bench/results/estimator-study-rerun --commit 6ba4c18

Cells trained at different commits are committed one group at a time: ``--cells PATTERN``
(shell patterns, as ``reproduce --cells``) writes only those cells' runs, leaving the files of
the others (and their commit tags) as they are.

The other way, ``--restore`` rebuilds a study folder from the committed files -- sweep.json as
``reproduce`` writes it and each run's config.json, summary.json and metrics.jsonl (no
checkpoint) -- so that the tables of runs trained on several machines or in sessions whose
folders are gone are written again, by the command that writes every study's tables:

    python bench/study_results.py --restore --results bench/results/claim125-rerun \
        --study dissertation-claim --out DIR
    binaryvae reproduce dissertation-claim --out DIR --tables-only

The restored runs count as finished (their summaries cover the budget); a seed not committed
can still be trained into DIR with ``reproduce NAME --out DIR --seeds ...``.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _common  # noqa: E402


def collect(out: Path, study: str, results: Path, commit: str,
            folders: dict[str, str] | None = None, cells: list[str] | None = None) -> list[Path]:
    """Write one tagged JSON per finished run of the sweep ``out`` (of the cells matching one
    of the shell patterns ``cells``, default every cell); return the files written.
    ``folders`` (path -> placeholder; default: the data folder as ``$DATA``, ``out`` as
    ``<out>``) are replaced in what is written, so no result names a folder of this machine."""
    import os

    if folders is None:
        folders = {str(Path(out).resolve()): "<out>"}
        data = os.environ.get("BINARYVAE_DATA_DIR")
        if data:
            folders[str(Path(data).resolve())] = "$DATA"
    from binaryvae.runs.sweep import read_sweep_summaries

    _, summaries = read_sweep_summaries(out)
    written = []
    results.mkdir(parents=True, exist_ok=True)
    for cell, runs in sorted(summaries.items()):
        if cells and not any(fnmatch.fnmatchcase(cell, pattern) for pattern in cells):
            continue
        for seed, summary in sorted(runs.items()):
            run = out / cell / f"seed-{seed}"
            if not run.is_dir():  # a single-run cell (layout "run")
                run = out / cell
            rows = [json.loads(line) for line in
                    (run / "metrics.jsonl").read_text().splitlines() if line.strip()]  # fmt: skip
            record = {
                "engine": {"name": f"binaryvae reproduce {study}", "commit": commit},
                "study": study,
                "cell": cell,
                "seed": seed,
                "config": json.loads((run / "config.json").read_text()),
                "summary": summary,
                "metrics": rows,
            }
            path = results / f"{cell}_seed{seed}.json"
            record = _common.without_folders(record, folders)  # no folder of this machine
            path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
            written.append(path)
    if (out / "study.md").is_file():
        shutil.copyfile(out / "study.md", results / "study.md")
    return written


def restore(results: Path, study: str, out: Path, budget: str = "full") -> list[Path]:
    """Rebuild the study folder ``out`` (new, or an empty folder) from the committed run files of
    study ``study`` (a shipped name or a .toml file) in ``results``: sweep.json for the study's
    ``budget`` and ``<cell>/seed-<s>/{config,summary}.json, metrics.jsonl`` of each committed run.
    Returns the run folders written. BadInput (nothing written) for a file that is not a run
    file, whose name is not its run's, of another study, or of a cell not in the study's grid."""
    from binaryvae.errors import BadInput
    from binaryvae.runs.ownership import check_new_dir, claim_new
    from binaryvae.runs.sweep import SweepState
    from binaryvae.runs.sweep_executors import LocalExecutor
    from binaryvae.storage import atomic_write_text, write_json_atomic
    from binaryvae.studies import load_study

    spec = load_study(study)
    grid = spec.grid(budget)
    cells = {c.name: c for c in grid.cells()}
    records = []
    for path in sorted(Path(results).glob("*_seed*.json")):
        try:
            record = json.loads(path.read_text())
            name, seed = record["cell"], int(record["seed"])
        except (ValueError, KeyError, TypeError) as error:
            raise BadInput(f"{path} is not a committed run file ({error})") from None
        if path.name != f"{name}_seed{seed}.json":  # one file per run: no run written twice
            raise BadInput(f"{path} holds cell {name} seed {seed}: not the run its name says")
        if record.get("study") != spec.name:
            raise BadInput(f"{path} holds a run of study {record.get('study')!r}, not "
                           f"{spec.name!r}")  # fmt: skip
        if name not in cells or seed not in cells[name].seeds:
            raise BadInput(f"{path}: cell {name} seed {seed} is not in study "
                           f"{spec.name}'s {budget} budget")  # fmt: skip
        records.append((name, seed, record))
    if not records:
        raise BadInput(f"{results} holds no committed run (<cell>_seed<s>.json)")
    out = Path(out)
    check_new_dir(out, force=False)
    written = []
    with claim_new(out, force=False, kind="sweep") as handle:
        state = SweepState(out, "sweep", grid.to_dict(), list(cells.values()),
                           LocalExecutor().describe())  # fmt: skip
        runs: dict[str, dict[int, dict]] = {name: {} for name in cells}
        for name, seed, record in records:
            run = out / name / f"seed-{seed}"
            run.mkdir(parents=True)
            write_json_atomic(run / "config.json", record["config"])
            write_json_atomic(run / "summary.json", record["summary"])
            atomic_write_text(run / "metrics.jsonl", "".join(
                json.dumps(row, sort_keys=True) + "\n" for row in record["metrics"]))
            runs[name][seed] = record["summary"]
            written.append(run)
        for name, cell in cells.items():
            complete = set(runs[name]) == set(cell.seeds)
            state.end(name, {"status": "finished" if complete else "pending",
                             "runs": runs[name]})  # fmt: skip
        state.write()
        handle.commit()
    return written


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="the study's sweep directory (reproduce --out)")
    p.add_argument("--restore", action="store_true",
                   help="the other way: rebuild the study folder --out (new) from the files "
                        "in --results, for `reproduce NAME --out OUT --tables-only`")
    p.add_argument("--study", required=True, help="the study's name (for the engine tag)")
    p.add_argument("--results", required=True, help="where the JSON files go (committed)")
    p.add_argument("--commit", default=None,
                   help="the commit that trained the runs (default: this checkout's)")
    p.add_argument("--cells", default=None, metavar="PATTERN[,PATTERN]",
                   help="write only these cells' runs (shell patterns; default: every cell)")
    p.add_argument("--budget", default="full", choices=("full", "quick"),
                   help="--restore: the study's budget the runs were trained at (default full)")
    args = p.parse_args(argv)
    if args.restore:
        from binaryvae.errors import BadInput

        if args.commit or args.cells:
            p.error("--restore takes no --commit and no --cells")
        try:
            runs = restore(Path(args.results), args.study, Path(args.out), args.budget)
        except BadInput as error:
            print(f"study_results: {error}", file=sys.stderr)
            return 2
        print(f"{len(runs)} run(s) restored into {args.out}")
        return 0
    commit = args.commit or _common.machine_info().get("git_commit")
    if not commit:
        p.error("--commit: this checkout's commit is unknown; give the one that trained the runs")
    cells = [c.strip() for c in args.cells.split(",") if c.strip()] if args.cells else None
    files = collect(Path(args.out), args.study, Path(args.results), commit, cells=cells)
    print(f"{len(files)} run(s) written to {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
