"""Sweeps: a grid of cells (datasets x families x objectives x latent sizes, each with all its
seeds as one replica group), run by an executor, recorded in ``DIR/sweep.json`` and
``DIR/sweep.csv``.

Layout::

    DIR/
      sweep.json                  the grid, the executor, every cell's status (and reason)
      sweep.csv                   one row per run (cell x seed) with its final numbers
      <dataset>_<family>_<objective>_<n>bit/     one replica group per cell
        replicas.json, seed-<s>/  ordinary run directories (config.json, metrics.jsonl, ...)
      report.html, report.md, figures/           `binaryvae report DIR`

The run directories are the only record of how far a cell got: `run_cell` resumes a cell whose
directory exists and starts one that does not, so a cell that runs again -- a Ray task retried
after its worker died, or the same sweep command run a second time -- continues from its
checkpoints (bit for bit, `binaryvae.runs.train`). The driver (the process running `sweep`)
holds the lock of ``DIR`` and is the only writer of sweep.json and sweep.csv; each cell locks
its own directory. Cell statuses: ``pending``, ``running`` (handed to the executor; on Ray it
may still wait for a free slot), ``finished``, ``diverged`` (a seed hit NaN/inf; the reason
names it), ``failed`` (the reason in one line). `compare` is a sweep of one dataset whose cells
are its families.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from binaryvae.errors import BadInput
from binaryvae.jsonfiles import read_json
from binaryvae.runs.directory import SUMMARY_SCHEMA, SWEEP_SCHEMA
from binaryvae.runs.ownership import check_new_dir, claim_existing, claim_new, read_marker
from binaryvae.runs.seeds import seed_text as _seed_text
from binaryvae.runs.sweep_executors import LocalExecutor, RayExecutor, one_line
from binaryvae.runs.sweep_grid import Cell, Grid
from binaryvae.stats import finite, mean_se
from binaryvae.storage import atomic_write_text, json_safe, write_json_atomic

__all__ = [
    "CSV_COLUMNS",
    "STATUSES",
    "SweepState",
    "execute",
    "finished_summaries",
    "headline",
    "read_sweep",
    "read_sweep_summaries",
    "recorded_grid_values",
    "run_cell",
    "sweep",
    "validate_cells",
]

STATUSES = ("pending", "running", "finished", "failed", "diverged")
SWEEP_FORMAT = 1
# sweep.csv: the cell's coordinates, the run's status, and its final numbers (summary.json)
NUMBER_COLUMNS = [
    "test_relaxed_elbo",  # the family's own ELBO: relaxed families
    "test_elbo",  # the family's own ELBO: families without a relaxation
    "test_bernoulli_elbo",
    "test_discrete_elbo",
    "test_log_px_exact",
    "test_iwae",
    "iwae_k",
    "sample_fd",
    "seconds_per_epoch",
    "epochs",
]
CSV_COLUMNS = [
    "cell",
    "dataset",
    "family",
    "objective",
    "latent_dim",
    "seed",
    "status",
    "reason",
    "run_dir",
    "objective_label",
    *NUMBER_COLUMNS,
]
# the number a finished cell is announced with: the best measure of the model all seeds have
HEADLINES = (
    ("test_log_px_exact", "log p(x)"),
    ("test_discrete_elbo", "discrete ELBO"),
    ("test_iwae", "IWAE"),
    ("sample_fd", "sample FD"),
)

Executor = LocalExecutor | RayExecutor


# ----------------------------------------------------------------------------- numbers
def headline(summaries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The first of `HEADLINES` every finished run of a cell has: its mean and s.e.
    (`binaryvae.stats.mean_se`: sample s.d. / sqrt(n); None for one seed)."""
    done = [s for s in summaries if "status" not in s]
    for key, label in HEADLINES:
        values = [s.get(key) for s in done]
        if done and all(isinstance(v, int | float) for v in values):
            mean, se = mean_se(values)
            if mean is not None:
                n = len(finite(values))  # the seeds the mean is of (NaN/inf count for none)
                return {"key": key, "label": label, "mean": mean, "se": se, "n": n}
    return None


def _headline_text(h: dict[str, Any] | None) -> str:
    if not h:
        return ""
    text = f"{h['label']} {h['mean']:.2f}"
    if h.get("se") is not None:
        text += f" ± {h['se']:.2f}"
    return text + (f" ({h['n']} seeds)" if h["n"] > 1 else "")


# ----------------------------------------------------------------------------- one cell
def run_cell(spec: dict[str, Any], stream: TextIO | None = None) -> dict[str, Any]:
    """Train one cell (`Cell.spec` plus ``root`` and ``progress``) and say how it ended.

    Runs wherever the executor puts it (this process, a Ray worker). A cell whose directory
    holds a started replica group (replicas.json; config.json for compare's single runs) is
    resumed from its checkpoints; otherwise it starts (replacing what an earlier attempt that
    died before training wrote there). Returns plain data: ``{"status": "finished" | "diverged"
    | "failed", "reason": one line or None, "runs": {seed: summary, or {"status":
    "diverged", "message": ...}}, "seconds": wall time}``. A failure of the cell itself (bad
    input, a full disk, a bug) is reported, not raised, so the sweep goes on.
    """
    from binaryvae.runs.train import TrainingDiverged, train_replicas, train_run

    start = time.monotonic()
    cell = Cell.from_spec(spec)
    path = Path(spec["root"]) / cell.name
    progress = bool(spec.get("progress", False))
    held: dict[int, dict[str, Any]] = {}  # seeds finished earlier, kept as they are
    try:
        # a started cell holds config.json (compare's single runs) or replicas.json (a group)
        resume = (path / ("config.json" if cell.layout == "run" else "replicas.json")).is_file()
        how = dict(resume=resume, force=not resume, progress=progress, label=cell.name,
                   stream=stream)  # fmt: skip
        if cell.layout == "run":
            try:
                runs = {cell.seeds[0]: train_run(cell.config, path, **how)}
            except TrainingDiverged as e:
                runs = {cell.seeds[0]: {"status": "diverged", "message": str(e)}}
        else:
            seeds, partial = _seeds_to_train(cell, path, spec.get("train_seeds"), resume)
            finished = finished_seed_summaries(cell, spec["root"]) if resume else {}
            if partial or 0 < len(finished) < len(cell.seeds):
                # the finished seeds are kept as they are; the others train as one group
                held, partial = finished, True
                seeds = [s for s in seeds if s not in held]
            runs = train_replicas(cell.config, seeds, path, partial=partial, **how) if seeds \
                else {}  # fmt: skip
    except BadInput as e:
        return _ended("failed", one_line(e), held, start)
    except Exception as e:  # noqa: BLE001 - the cell's own failure: reported, the sweep goes on
        return _ended("failed", one_line(f"{type(e).__name__}: {e}"), held, start)
    diverged = [s for s, r in runs.items() if r.get("status") == "diverged"]
    runs = {**held, **runs}
    if diverged:
        reason = "; ".join(f"seed {s}: {one_line(runs[s]['message'], 300)}" for s in diverged)
        return _ended("diverged", reason, runs, start)
    missing = [s for s in cell.seeds if s not in runs]
    if missing:
        return _ended("pending", f"seeds {_seed_text(missing)} not trained yet (reproduce "
                      "--seeds trains a few at a time)", runs, start)  # fmt: skip
    return _ended("finished", None, runs, start)


def _seeds_to_train(
    cell: Cell, path: Path, chosen: list[int] | None, resume: bool
) -> tuple[list[int], bool]:
    """(the seeds of a replica cell to train now, whether the group is trained a few seeds at a
    time): ``chosen`` (`reproduce --seeds`), or every seed; partial when seeds were chosen or
    the group on disk holds other seeds than the cell has (`run_cell` also trains partially when
    some of the cell's seeds are finished and others not: it leaves the finished ones)."""
    if chosen is not None:
        return list(chosen), True
    if resume:
        from binaryvae.runs.directory import read_replicas_listing

        recorded = read_replicas_listing(path)["seeds"]
        if set(recorded) != set(cell.seeds):
            return list(cell.seeds), True
    return list(cell.seeds), False


def _ended(status: str, reason: str | None, runs: dict, start: float) -> dict[str, Any]:
    return {
        "status": status,
        "reason": reason,
        "runs": json_safe({int(s): r for s, r in runs.items()}),
        "seconds": time.monotonic() - start,
    }


def finished_summaries(cell: Cell, root: str | Path) -> dict[int, dict[str, Any]] | None:
    """Every seed's summary when the whole cell is finished on disk (a summary.json covering
    the cell's epochs in each run directory), else None."""
    out = finished_seed_summaries(cell, root)
    return out if len(out) == len(cell.seeds) else None


def finished_seed_summaries(cell: Cell, root: str | Path) -> dict[int, dict[str, Any]]:
    """``{seed: summary}`` of the cell's runs that are finished on disk (a summary.json covering
    the cell's budget), the others left out."""
    out = {}
    for seed, path in cell.run_dirs(root).items():
        try:
            summary = read_json(path / "summary.json", SUMMARY_SCHEMA)
        except BadInput:  # missing, or not a summary: not finished
            continue
        if isinstance(summary, dict) and _covers(summary, cell.config.to_dict()):
            out[seed] = summary
    return out


def _covers(summary: dict[str, Any], config: dict[str, Any]) -> bool:
    """Whether a run's summary is of the whole budget of ``config`` (a TrainConfig's dict):
    its steps under a step budget, its epochs otherwise."""
    if config.get("steps") is not None:
        return summary.get("steps") == config["steps"]
    return summary.get("epochs") == config.get("epochs")


def _budget_of(
    fixed: dict[str, Any], entry: dict[str, Any], variants: list | None = None
) -> dict[str, Any]:
    """The budget (steps, epochs) of a recorded cell: the grid's fixed one, its variant's
    (``variants``: the grid's recorded [[variants]]), or the cell's own where it varies it (a
    budget set replaces the other one unless both are set)."""
    vary = entry.get("vary") or {}
    budget = {"steps": fixed.get("steps"), "epochs": fixed.get("epochs")}
    mine = next((v for v in variants or () if isinstance(v, dict)
                 and v.get("name") == entry.get("variant")), {})  # fmt: skip
    if mine.get("steps") is not None or mine.get("epochs") is not None:
        budget = {"steps": mine.get("steps"), "epochs": mine.get("epochs")}
    if vary.get("steps") is not None:
        budget = {"steps": vary["steps"], "epochs": None}
    elif vary.get("epochs") is not None:
        budget = {"steps": None, "epochs": vary["epochs"]}
    return budget


# ----------------------------------------------------------------------------- sweep.json
class SweepState:
    """What sweep.json and sweep.csv say; the driver updates it and writes both atomically."""

    def __init__(
        self, root: Path, kind: str, grid: dict[str, Any], cells: list[Cell], executor: dict
    ):
        self.root = Path(root)
        self.kind = kind
        self.grid = grid
        self.executor = executor
        self.cells = {c.name: c for c in cells}
        self.entries: dict[str, dict[str, Any]] = {
            c.name: {
                **c.to_dict(),
                "status": "pending",
                "reason": None,
                "seconds": None,
                "headline": None,
                "runs": {str(s): "pending" for s in c.seeds},
            }
            for c in cells
        }
        self.summaries: dict[str, dict[int, dict[str, Any]]] = {c.name: {} for c in cells}

    def start(self, name: str) -> None:
        entry = self.entries[name]
        entry.update(status="running", reason=None)
        entry["runs"] = {s: "running" for s in entry["runs"]}

    def end(self, name: str, result: dict[str, Any]) -> None:
        """Record a cell's result (`run_cell`'s dict, or a finished cell found on disk)."""
        entry = self.entries[name]
        runs = {int(s): r for s, r in (result.get("runs") or {}).items()}
        self.summaries[name] = runs
        entry.update(
            status=result["status"],
            reason=result.get("reason"),
            seconds=result.get("seconds"),
            headline=headline(list(runs.values())),
        )
        for seed in entry["runs"]:
            run = runs.get(int(seed))
            if run is None:
                entry["runs"][seed] = "failed" if result["status"] == "failed" else "pending"
            else:
                entry["runs"][seed] = run.get("status", "finished")

    def interrupted(self) -> None:
        """Cells left running when the driver stops are pending again (a rerun resumes them)."""
        for entry in self.entries.values():
            if entry["status"] == "running":
                entry.update(
                    status="pending", reason="interrupted (run the command again to resume it)"
                )
                entry["runs"] = {s: "pending" for s in entry["runs"]}

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for entry in self.entries.values():
            counts[entry["status"]] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": SWEEP_FORMAT,
            "kind": self.kind,
            "grid": self.grid,
            "executor": self.executor,
            "counts": self.counts(),
            "cells": list(self.entries.values()),
        }

    def write(self) -> None:
        write_json_atomic(self.root / "sweep.json", self.to_dict())
        atomic_write_text(self.root / "sweep.csv", csv_text(self.entries.values(), self.summaries))

    def results(self) -> dict[str, dict[str, Any]]:
        """``{cell name: {"status", "reason", "runs": {seed: summary}}}`` in grid order."""
        return {
            name: {"status": e["status"], "reason": e["reason"], "runs": self.summaries[name]}
            for name, e in self.entries.items()
        }


def csv_rows(entries, summaries: dict[str, dict[int, dict]]) -> list[dict[str, Any]]:
    """One row per run (cell x seed): coordinates, status and the summary's numbers."""
    rows = []
    for entry in entries:
        name = entry["name"]
        for seed_text, status in entry["runs"].items():
            seed = int(seed_text)
            summary = summaries.get(name, {}).get(seed) or {}
            if entry.get("layout") == "run":
                run_dir = name
            else:
                run_dir = f"{name}/seed-{seed}"
            reason = summary.get("message") if status == "diverged" else None
            if status in ("failed", "pending") and entry.get("reason"):
                reason = entry["reason"]
            row = {
                "cell": name,
                "dataset": entry["dataset"],
                "family": entry["family"],
                "objective": entry["objective"],
                "latent_dim": entry["latent_dim"],
                "seed": seed,
                "status": status,
                "reason": reason,
                "run_dir": run_dir,
                "objective_label": summary.get("objective_label"),
            }
            for key in NUMBER_COLUMNS:
                value = summary.get(key) if status == "finished" else None
                row[key] = value if isinstance(value, int | float) else None
            rows.append(row)
    return rows


def csv_text(entries, summaries) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in csv_rows(entries, summaries):
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buffer.getvalue()


def read_sweep(root: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """sweep.json of ``root`` and its runs' rows (as in sweep.csv), the numbers read from each
    run's summary.json as it is now. BadInput when there is no readable sweep.json."""
    record, summaries = read_sweep_summaries(root)
    return record, csv_rows(record["cells"], summaries)


def read_sweep_summaries(
    root: str | Path,
) -> tuple[dict[str, Any], dict[str, dict[int, dict[str, Any]]]]:
    """sweep.json of ``root`` (each run marked "finished" whose summary.json covers its budget)
    and ``{cell name: {seed: summary}}`` of those finished runs. BadInput when there is no
    readable sweep.json."""
    root = Path(root)
    if not (root / "sweep.json").exists():
        raise BadInput(f"{root} is not a sweep directory (no sweep.json)")
    record = read_json(root / "sweep.json", SWEEP_SCHEMA)
    entries = list(record["cells"])
    fixed = (record.get("grid") or {}).get("fixed", {})
    variants = (record.get("grid") or {}).get("variants")
    summaries: dict[str, dict[int, dict]] = {}
    for entry in entries:
        name = entry["name"]
        summaries[name] = {}
        for seed_text in entry.get("runs", {}):
            sub = root / name if entry.get("layout") == "run" else root / name / f"seed-{seed_text}"
            try:
                summary = read_json(sub / "summary.json", SUMMARY_SCHEMA)
            except BadInput:  # missing or not a summary: not finished
                continue
            if isinstance(summary, dict) and _covers(summary, _budget_of(fixed, entry, variants)):
                summaries[name][int(seed_text)] = summary
                entry["runs"][seed_text] = "finished"
    record["cells"] = entries
    return record, summaries


# ----------------------------------------------------------------------------- driver
def validate_cells(cells: list[Cell], *, portable: bool = False, memory: bool = True) -> None:
    """Build every cell's dataset and model (`binaryvae.runs.build.prepare`), writing nothing;
    BadInput naming the first cell that cannot be built.

    ``portable``: the cells will run on other machines, so this one's device and CPU features
    say nothing about them; device and precision are then checked by each cell where it runs.
    ``memory``: check each cell's estimated memory (all its seeds at once) against this
    machine's before building it (`binaryvae.runs.build.check_run_memory`); off when the cells
    run on other machines, where each cell checks its own.
    """
    from binaryvae.runs.build import prepare

    datasets: dict[tuple, Any] = {}
    for cell in cells:
        config = dataclasses.replace(cell.config)  # prepare records the data in its copy
        if portable:
            config = dataclasses.replace(config, device="cpu", precision="fp32")
        key = (config.dataset, config.data_dir)
        try:
            prepared = prepare(config, dataset=datasets.get(key), replicas=len(cell.seeds),
                               memory=memory)  # fmt: skip
        except BadInput as e:
            raise BadInput(f"{cell.name}: {e}") from None
        datasets[key] = prepared.dataset


def check_out(out: Path, executor: Executor) -> Path:
    """The sweep directory as the workers will see it: refused when relative and the cells may
    run on other machines; made absolute for a local Ray instance (its workers' working
    directory is not ours)."""
    if executor.remote and not out.is_absolute():
        raise BadInput(
            f"--out {out} is relative, but the cells run on the Ray cluster at "
            f"{executor.address}: give an absolute path on storage every node can reach"
        )
    return out.absolute() if executor.name == "ray" else out


def execute(
    cells: list[Cell],
    root: Path,
    state: SweepState,
    executor: Executor,
    *,
    progress: bool = True,
    stream: TextIO | None = None,
    header=None,
    only: frozenset[str] | None = None,
    seeds: frozenset[int] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run the cells that are not finished on disk (those named in ``only``, when given) with
    ``executor``; keep ``state`` (and sweep.json/sweep.csv) current; print one line per finished
    cell with its headline number and the overall count and ETA. ``seeds``: train only these
    seeds of each cell now (its other seeds are left as they are on disk). Returns
    `SweepState.results`."""
    stream = sys.stderr if stream is None else stream
    todo, chosen = [], {}
    for cell in cells:
        have = finished_seed_summaries(cell, root)
        done = have if len(have) == len(cell.seeds) else None
        if done is None:
            if only is not None and cell.name not in only:
                continue
            if seeds is not None:
                chosen[cell.name] = [s for s in cell.seeds if s in seeds and s not in have]
                if not chosen[cell.name]:  # the chosen seeds are finished already
                    state.end(cell.name, {"status": "pending", "runs": have, "reason":
                                          "the seeds chosen are finished; others are not"})
                    continue
            todo.append(cell)
            continue
        state.end(cell.name, {"status": "finished", "runs": done})
        if progress:
            text = _headline_text(state.entries[cell.name]["headline"])
            print(
                f"{cell.name}: finished already ({text})",
                file=stream,
                flush=True,
            )
    state.write()
    local = executor.name == "local"
    specs = [{"root": str(root), "progress": progress and local, **c.spec(),
              **({"train_seeds": chosen[c.name]} if c.name in chosen else {})}
             for c in todo]  # fmt: skip
    started = time.monotonic()
    finished_here = 0
    total = len(cells)

    def on_start(batch: list[dict[str, Any]]) -> None:
        for spec in batch:
            state.start(spec["name"])
            if progress and local and header is not None:
                header(state.cells[spec["name"]], root)
        state.write()

    def on_done(spec: dict[str, Any], result: dict[str, Any]) -> None:
        nonlocal finished_here
        name = spec["name"]
        state.end(name, result)
        state.write()
        finished_here += 1
        if not progress:
            return
        entry = state.entries[name]
        counts = state.counts()
        settled = total - counts["pending"] - counts["running"]
        what = _headline_text(entry["headline"]) if result["status"] == "finished" else ""
        if result["status"] != "finished":
            what = f"{result['status']}: {result.get('reason') or ''}"
        elapsed = time.monotonic() - started
        left = len(todo) - finished_here
        eta = _clock(elapsed / finished_here * left) if left else "0s"
        seconds = result.get("seconds")
        took = f" in {_clock(seconds)}" if isinstance(seconds, int | float) else ""
        print(
            f"[{settled}/{total}] {name}: {what}{took}  (elapsed {_clock(elapsed)}, ETA {eta})",
            file=stream,
            flush=True,
        )

    try:
        if specs:
            executor.run(specs, on_start, on_done)
    finally:
        state.interrupted()
        state.write()
    return state.results()


def _clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _is_sweep(out: Path) -> bool:
    return (out / "sweep.json").is_file() and read_marker(out).get("kind") == "sweep"


def _check_continuation(out: Path, grid: Grid) -> None:
    """A sweep run again continues its recorded grid: every recorded value of every axis (and
    every variant) is still there (axes may grow), and fixed values -- a variant's too --
    differ only in `binaryvae.config.RESUMABLE_FIELDS` (BadInput naming each difference)."""
    recorded = read_json(out / "sweep.json", SWEEP_SCHEMA)["grid"]
    stored = Grid.from_dict(recorded, f"{out / 'sweep.json'}")
    dropped = []
    for axis, old, new in (
        ("datasets", stored.datasets, grid.datasets),
        ("families", [f"{f}:{o}" for f, o in stored.pairs], [f"{f}:{o}" for f, o in grid.pairs]),
        ("latent-dims", stored.latent_dims, grid.latent_dims),
        ("seeds", stored.seeds, grid.seeds),
        *((f"vary {k}", v, grid.vary.get(k, [])) for k, v in stored.vary.items()),
        ("variants", list(stored.variants), list(grid.variants)),
    ):
        gone = [str(v) for v in old if v not in new]
        if axis.startswith("vary") and not grid.vary.get(axis[len("vary "):]):
            gone = [f"(every value: {axis} is no longer varied)"]
        if gone:
            dropped.append(f"{axis} {', '.join(gone)}")
    if dropped:
        raise BadInput(
            f"{out} holds a sweep whose grid also has {'; '.join(dropped)}; run it with its "
            "whole grid (axes may grow, not shrink), or use --force to start over"
        )
    c = stored.base
    same_axes = dataclasses.replace(
        grid.base,
        dataset=c.dataset,
        family=c.family,
        objective=c.objective,
        latent_dim=c.latent_dim,
        seed=c.seed,
    )
    same_axes.check_resumable(c, str(out))
    # a variant kept keeps its options, except those a resume may change (the budget, threads)
    first = (c.dataset, c.family, c.objective, c.latent_dim, {})
    for name in stored.variants:  # every one is in grid.variants (checked above)
        new = grid._config(*first, grid.variants[name])
        new.check_resumable(stored._config(*first, stored.variants[name]),
                            f"{out} (variant {name})")  # fmt: skip
    if (stored.family_options != grid.family_options or set(grid.vary) - set(stored.vary)
            or bool(stored.variants) != bool(grid.variants)):  # fmt: skip
        raise BadInput(
            f"{out} holds a sweep with other family-options, varied options or variants; run it "
            "with its own grid, or use --force to start over"
        )


def recorded_grid(out: str | Path) -> dict[str, Any]:
    """The grid values recorded in ``out/sweep.json`` (what ``sweep --resume`` starts from)."""
    return recorded_grid_values(out)[0]


def recorded_grid_values(out: str | Path) -> tuple[dict[str, Any], list[str] | None]:
    """The grid values recorded in ``out/sweep.json`` and its explicit fixed values
    (`binaryvae.runs.sweep_grid.recorded_values`)."""
    from binaryvae.runs.sweep_grid import recorded_values

    out = Path(out)
    if not (out / "sweep.json").exists():
        raise BadInput(f"cannot resume {out}: no sweep.json there")
    grid = read_json(out / "sweep.json", SWEEP_SCHEMA)["grid"]
    return recorded_values(grid, str(out / "sweep.json"))


def sweep(
    grid: Grid,
    out: str | Path,
    *,
    executor: Executor | None = None,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    stream: TextIO | None = None,
    only: frozenset[str] | None = None,
    seeds: frozenset[int] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run every cell of ``grid`` under ``out`` with ``executor`` (default: this process).
    ``only``: the names of the cells to train now (the others are recorded, and skipped or
    left pending as they are on disk); ``seeds``: the seeds of each cell to train now (a
    replica group trained a few seeds at a time; each seed's run is the one the whole group
    would give it).

    A new ``out`` is created (marked, locked). An ``out`` that holds a sweep is continued --
    finished cells skipped, the others resumed from their checkpoints -- when its grid is the
    recorded one (axes may grow; fixed values may change only in RESUMABLE_FIELDS); ``force``
    starts it over instead. ``resume`` insists that there is a sweep to continue. Every cell is
    validated before anything is written (BadInput). Returns `SweepState.results`: a cell that
    diverges or fails is recorded with its reason and the others go on.
    """
    executor = executor or LocalExecutor(stream)
    out = check_out(Path(out), executor)
    cells = grid.cells()
    continuing = _is_sweep(out) and not force
    if resume and not continuing:
        raise BadInput(f"cannot resume {out}: no sweep there (start it without --resume)")
    if continuing:
        _check_continuation(out, grid)
    else:
        check_new_dir(out, force)
    validate_cells(cells, portable=executor.name == "ray", memory=not executor.remote)
    executor.check()
    claim = (
        claim_existing(out, "continue") if continuing else claim_new(out, force=force, kind="sweep")
    )
    with claim as handle, executor.session():
        if continuing:
            _check_continuation(out, grid)  # again, now that we hold the lock
        state = SweepState(out, "sweep", grid.to_dict(), cells, executor.describe())
        state.write()
        if not continuing:
            handle.commit()
        return execute(
            cells, out, state, executor, progress=progress, stream=stream, header=_header(stream),
            only=only, seeds=seeds,
        )  # fmt: skip


def _header(stream: TextIO | None):
    """The line printed when a cell starts in this process (compare's ``== name ...`` line)."""

    def show(cell: Cell, root: Path) -> None:
        from binaryvae.runs.labels import family_facts, trained_on_label

        where = root / cell.name
        label = trained_on_label(cell.config, family_facts(cell.config)["has_likelihood"])
        print(
            f"== {cell.name} ({label}) -> {where}",
            file=sys.stderr if stream is None else stream,
            flush=True,
        )

    return show
