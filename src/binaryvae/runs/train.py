"""Training runs end to end: validate, build, train + evaluate per epoch, checkpoint, summarise.

`train_run` trains one model into one run directory (what ``binaryvae train`` calls);
`train_replicas` trains S seeds of one configuration at once, stacked
(`binaryvae.models.replicas`), each into its own run directory ``OUT/seed-<s>/`` with the full
run-directory contract (``binaryvae train --seeds``). Both go through one engine
(`binaryvae.runs.engine`), so a replica writes exactly the files, rows and checkpoints a single
run with its seed writes.

Everything that can be wrong with the input is checked before anything is written
(`binaryvae.runs.members`). Every epoch appends one row to metrics.jsonl and then replaces
checkpoints/last.pt (`binaryvae.runs.epoch`); ``resume=True`` reloads the checkpoints, drops
metric rows of epochs they do not cover, and runs the remaining epochs exactly as an
uninterrupted run would: every epoch draws its noise from generators seeded by (seed, epoch)
(`binaryvae.training.epoch_seed`), its data order and binarization likewise.
"""

from __future__ import annotations

import dataclasses
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TextIO

from binaryvae.config import TrainConfig
from binaryvae.runs.build import check_data_fingerprint, prepare
from binaryvae.runs.directory import RunDir
from binaryvae.runs.engine import train_members
from binaryvae.runs.members import (
    check_alike,
    check_group_resume,
    open_member,
    resumed_config,
    write_member,
)
from binaryvae.runs.ownership import check_new_dir, claim_existing, claim_new
from binaryvae.runs.seeds import parse_seeds, seed_text
from binaryvae.storage import write_json_atomic

__all__ = ["TrainingDiverged", "parse_seeds", "train_replicas", "train_run"]


class TrainingDiverged(RuntimeError):
    """Training stopped on a NaN/inf; the message names epoch, batch and what was kept."""


def train_run(
    config: TrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    label: str = "",
    stream: TextIO | None = None,
) -> dict[str, Any]:
    """Train ``config`` into run directory ``out`` and return its summary (also in summary.json).

    ``resume``: continue ``out`` from checkpoints/last.pt; ``config`` may differ from the stored
    one only in `binaryvae.config.RESUMABLE_FIELDS`. ``force``: replace an existing run
    directory that binaryvae wrote (`binaryvae.runs.ownership`). The directory is locked for the
    whole call. Raises BadInput (nothing written) for bad input or a directory in use,
    `TrainingDiverged` on NaN/inf, `binaryvae.storage.StorageError` when the disk refuses a
    write (the last good checkpoint intact).
    """
    stream = sys.stderr if stream is None else stream
    run = RunDir(out)
    with ExitStack() as stack:
        if resume:
            stack.enter_context(claim_existing(run.path, "resume"))
            config = resumed_config(run, config)
            # validates everything (the data too) before the first byte is written
            prepared = prepare(config, where=str(run.path))
        else:
            check_new_dir(run.path, force)
            prepared = prepare(config)
            claim = stack.enter_context(claim_new(run.path, force=force, kind="run"))
        member = open_member(run, prepared, resume)
        write_member(member)
        if not resume:
            claim.commit()  # the run exists from here on: a later failure keeps what it wrote
        train_members([member], stacked=False, progress=progress, label=label, stream=stream)
        if member.failure:
            raise TrainingDiverged(member.failure)
        return member.summary


def train_replicas(
    config: TrainConfig,
    seeds: list[int] | str,
    out: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    label: str = "",
    stream: TextIO | None = None,
    partial: bool = False,
) -> dict[int, dict[str, Any]]:
    """Train ``config`` once per seed, all seeds at once, into ``out/seed-<s>/``.

    The replicas are stacked into one model (`binaryvae.models.replicas.stack_models`): batched
    matrix products, one Adam over the stacked parameters (elementwise, so it equals S separate
    optimizers). Each replica has its own data order, noise and dynamic binarization, so replica
    r's run directory holds what ``train_run`` with seed r would write (to float32 round-off).
    A replica that turns NaN/inf stops alone (its last good checkpoint and metrics kept); the
    others go on. ``out/replicas.json`` records the configuration and the seeds.

    ``resume``: continue every ``seed-<s>`` from its checkpoint (seeds may be added, not
    dropped; options as in `train_run`). Returns ``{seed: summary}``, with
    ``{"status": "diverged", "message": ...}`` for a replica that stopped.

    ``partial`` (a study trained a few seeds at a time, `binaryvae reproduce --seeds`): ``seeds``
    may leave out seeds the group already holds (they are neither trained nor touched), and
    replicas.json lists every seed the group holds. Each replica draws what its single run
    draws whichever seeds it is trained beside (`binaryvae.models.replicas`).
    """
    stream = sys.stderr if stream is None else stream
    seeds = parse_seeds(seeds)
    out = Path(out)
    configs = [dataclasses.replace(config, seed=s) for s in seeds]
    runs = [RunDir(out / f"seed-{s}") for s in seeds]
    listing = {"seeds": seeds, "config": dataclasses.replace(config, seed=seeds[0]).to_dict()}
    with ExitStack() as stack:
        if resume:
            stack.enter_context(claim_existing(out, "resume"))
            held = check_group_resume(out, listing, config, partial=partial)
            if partial:  # every seed the group holds, and the config of the first of them
                listing["seeds"] = sorted(set(held) | set(seeds))
                listing["config"]["seed"] = listing["seeds"][0]
        else:
            check_new_dir(out, force)
        first = prepare(configs[0], replicas=len(seeds))  # the whole group's memory checked
        dataset = first.dataset
        if not resume:
            group = stack.enter_context(claim_new(out, force=force, kind="replicas"))
        opened = []
        for cfg, run in zip(configs, runs, strict=True):
            again = resume and run.config_path.is_file()
            if again:
                stack.enter_context(claim_existing(run.path, "resume"))
                cfg = resumed_config(run, cfg)
            else:
                stack.enter_context(claim_new(run.path, force=force, kind="run")).commit()
            if cfg == first.config:
                prepared = first
                check_data_fingerprint(cfg, dataset, str(run.path))  # the stored one, on resume
            else:
                prepared = prepare(cfg, dataset=dataset, where=str(run.path))
            opened.append((run, prepared, again))
        # every replica's config, data and checkpoint checked before any of their files is
        # rewritten
        members = [open_member(run, prepared, again) for run, prepared, again in opened]
        check_alike(members)
        for m in members:
            write_member(m)
        write_json_atomic(out / "replicas.json", listing)
        if not resume:
            group.commit()
        label = label or f"seeds {seed_text(seeds)}"
        train_members(members, stacked=True, progress=progress, label=label, stream=stream)
    return {
        m.config.seed: (
            m.summary if not m.failure else {"status": "diverged", "message": m.failure}
        )
        for m in members
    }
