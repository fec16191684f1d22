"""Join two folders of one study: the finished seeds of ``other`` copied into ``out``.

A study's seeds can be trained a few at a time (`binaryvae reproduce --seeds`); into one folder
that happens one command after the other. On two cores or two machines the groups run at the
same time into two folders (one writer per folder: `binaryvae.runs.ownership`), and this joins
them: what ``out`` holds afterwards is what ``--seeds A`` and then ``--seeds B`` into ``out``
would have left -- each seed folder byte for byte as trained, replicas.json listing the seeds of
both (each seed draws what it draws in its own group whichever group it is in:
`binaryvae.runs.train.train_replicas`, ``partial``).

Everything is checked before anything is written (nothing is written on a refusal, which
names what is wrong): both folders hold a sweep of the same cells; a cell present in both was
trained with the same options (differences only in `binaryvae.config.RESUMABLE_FIELDS`, as a
resume allows) on the same data; no seed is in both; the copied folders hold no symbolic link
or other special file (a stranger's folder copies nothing but plain files and folders). Only
finished seeds are copied (a summary.json covering the cell's budget); the others are named in
the result and left where they are. ``out`` is locked for the whole join, each copied seed
folder while it is read. A seed folder appears in ``out`` whole or not at all (copied under a
temporary name, then renamed).
"""

from __future__ import annotations

import os
import shutil
import stat
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from binaryvae.config import RESUMABLE_FIELDS, TrainConfig
from binaryvae.errors import BadInput
from binaryvae.runs.directory import RunDir, read_replicas_listing
from binaryvae.runs.ownership import LOCK_FILE, claim_existing, claim_new
from binaryvae.storage import write_json_atomic

__all__ = ["MergePlan", "merge_sweeps", "plan_merge"]


@dataclass
class MergePlan:
    """What `merge_sweeps` copies: ``{cell name: [seeds]}``, and the seeds of ``other`` that
    are not finished (left where they are)."""

    copy: dict[str, list[int]] = field(default_factory=dict)
    unfinished: dict[str, list[int]] = field(default_factory=dict)
    _cells: dict[str, Any] = field(default_factory=dict, repr=False)


def _special_file(folder: Path) -> Path | None:
    """The first entry under ``folder`` that is neither a plain file nor a folder (a symbolic
    link, a device, a pipe, ...), or ``folder`` itself if it is one; None when there is none."""
    for path in [folder, *sorted(folder.rglob("*"))]:
        mode = os.lstat(path).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            return path
    return None


def _group_config(path: Path, cell_name: str, where: str) -> TrainConfig:
    try:
        return TrainConfig.from_dict(read_replicas_listing(path)["config"])
    except BadInput as e:
        raise BadInput(f"cannot merge cell {cell_name} of {where}: {e}") from None


def _check_same_options(mine: TrainConfig, theirs: TrainConfig, cell_name: str) -> None:
    """BadInput naming each option the two groups differ in outside the ones a resume may
    change (`binaryvae.config.RESUMABLE_FIELDS`)."""
    changed = [n for n in mine.changed_fields(theirs) if n not in RESUMABLE_FIELDS + ("seed",)]
    if changed:
        text = ", ".join(f"{n} ({getattr(mine, n)!r} vs {getattr(theirs, n)!r})" for n in changed)
        raise BadInput(f"cannot merge cell {cell_name}: the two folders trained it with "
                       f"other options: {text}")  # fmt: skip


def _data_fingerprint(runs: list[Path]) -> str | None:
    """The data fingerprint the first of ``runs`` that records one has in its config.json
    (replicas.json does not record it)."""
    for run in map(RunDir, runs):
        if run.config_path.is_file():
            found = run.read_config().data_fingerprint
            if found:
                return found
    return None


def _check_same_data(mine: list[Path], theirs: list[Path], cell_name: str) -> None:
    a, b = _data_fingerprint(mine), _data_fingerprint(theirs)
    if a and b and a != b:
        raise BadInput(f"cannot merge cell {cell_name}: the two folders trained it on other "
                       f"data (fingerprints {a[:12]} and {b[:12]})")  # fmt: skip


def plan_merge(cells: list, out: Path, other: Path) -> MergePlan:
    """Check everything `merge_sweeps` will do (module docstring) and say what it copies.
    ``cells``: the study's cells (`binaryvae.runs.sweep_grid.Cell`) to join."""
    from binaryvae.runs.sweep import finished_seed_summaries, read_sweep_summaries

    out, other = Path(out), Path(other)
    if out.resolve() == other.resolve():
        raise BadInput(f"--merge-from names the study's own folder {out}")
    recorded = {}
    for folder in (out, other):
        recorded[folder] = {c["name"] for c in read_sweep_summaries(folder)[0]["cells"]}
    if recorded[out] != recorded[other]:
        raise BadInput(f"cannot merge {other} into {out}: they hold sweeps of other cells "
                       "(another study or budget)")  # fmt: skip
    plan = MergePlan()
    for cell in cells:
        theirs = other / cell.name
        if not theirs.is_dir():
            continue
        finished = sorted(finished_seed_summaries(cell, other))
        started = [s for s, p in cell.run_dirs(other).items() if p.is_dir()]
        if unfinished := sorted(set(started) - set(finished)):
            plan.unfinished[cell.name] = unfinished
        if not finished:
            continue
        copied = _copied_dirs(cell, other, finished)
        mine = out / cell.name
        if cell.layout == "run":
            if mine.exists():
                raise BadInput(f"cannot merge cell {cell.name}: both folders hold its run")
        else:
            group = _group_config(theirs, cell.name, str(other))
            _check_same_options(cell.config, group, cell.name)  # trained as the study says
            if (mine / "replicas.json").is_file():
                _check_same_options(_group_config(mine, cell.name, str(out)), group, cell.name)
                _check_same_data(sorted(mine.glob("seed-*")), copied, cell.name)
            elif mine.exists():
                raise BadInput(f"cannot merge cell {cell.name}: {mine} exists but holds no "
                               "replica group")  # fmt: skip
            both = [s for s in finished if (mine / f"seed-{s}").exists()]
            if both:
                raise BadInput(f"cannot merge cell {cell.name}: seed {both[0]} is in both "
                               "folders")  # fmt: skip
        for path in copied:
            if (bad := _special_file(path)) is not None:
                raise BadInput(f"cannot merge cell {cell.name}: {bad} is not a plain file or "
                               "folder (a link or a special file); nothing was copied")  # fmt: skip
        plan.copy[cell.name] = finished
        plan._cells[cell.name] = cell
    return plan


def _copied_dirs(cell, other: Path, seeds: list[int]) -> list[Path]:
    """The run directories of ``cell`` in ``other`` that hold ``seeds``."""
    dirs = cell.run_dirs(other)
    return [dirs[s] for s in seeds]


def _copy_run(source: Path, target: Path) -> None:
    """``source`` copied to ``target`` (absent) through a temporary name, without its lock."""
    temporary = target.with_name(f".{target.name}.merging")
    if temporary.exists():
        shutil.rmtree(temporary)
    shutil.copytree(source, temporary, symlinks=True,
                    ignore=shutil.ignore_patterns(LOCK_FILE, "*.tmp"))  # fmt: skip
    os.rename(temporary, target)


def merge_sweeps(cells: list, out: str | Path, other: str | Path) -> MergePlan:
    """Copy the finished seeds of the study folder ``other`` into ``out`` (module docstring);
    returns the `MergePlan` carried out. BadInput (nothing written) when they cannot be
    joined."""
    out, other = Path(out), Path(other)
    plan = plan_merge(cells, out, other)
    with claim_existing(out, "merge into"):
        plan = plan_merge(cells, out, other)  # again, now that nobody else writes to out
        for name, seeds in plan.copy.items():
            cell, theirs, mine = plan._cells[name], other / name, out / name
            with ExitStack() as cell_locks:  # the seeds copied; others may still be training
                for path in _copied_dirs(cell, other, seeds):
                    cell_locks.enter_context(claim_existing(path, "merge from"))
                if cell.layout == "run":
                    _copy_run(theirs, mine)
                    continue
                new_group = None
                if mine.exists():
                    cell_locks.enter_context(claim_existing(mine, "merge into"))
                    listing = read_replicas_listing(mine)
                else:  # removed again if the copy fails
                    new_group = cell_locks.enter_context(
                        claim_new(mine, force=False, kind="replicas")
                    )
                    listing = {**read_replicas_listing(theirs), "seeds": []}
                for seed in seeds:
                    _copy_run(theirs / f"seed-{seed}", mine / f"seed-{seed}")
                listing["seeds"] = sorted(set(listing["seeds"]) | set(seeds))
                listing["config"]["seed"] = listing["seeds"][0]  # the first seed's, as written
                write_json_atomic(mine / "replicas.json", listing)  # by train_replicas
                if new_group is not None:
                    new_group.commit()
    return plan
