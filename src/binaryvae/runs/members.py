"""The runs of a training call (its members): open, check and write them before training.

A `Member` is one run directory with its prepared model and where its checkpoint left it.
Everything here reads and checks; nothing trains. `write_member` is the first write.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from binaryvae.config import TrainConfig
from binaryvae.errors import BadInput
from binaryvae.runs.budget import Budget
from binaryvae.runs.build import Prepared, test_data
from binaryvae.runs.directory import RunDir
from binaryvae.runs.seeds import seed_text
from binaryvae.training import EpochStats, load_checkpoint, load_state
from binaryvae.training.checkpoint import CheckpointError, checkpoint_schema

__all__ = [
    "Member",
    "check_alike",
    "check_group_resume",
    "open_member",
    "resumed_config",
    "write_member",
]


@dataclass
class Member:
    """One run of a group: its directory, its plain model, where it starts, how it ended."""

    run: RunDir
    prepared: Prepared
    test_x: torch.Tensor
    budget: Budget
    start_epoch: int = 0  # completed epochs at the checkpoint
    start_step: int = 0  # optimizer steps at the checkpoint (inside epoch start_epoch + 1)
    saved_step: int = 0  # the last checkpoint's step (for messages)
    # the last checkpoint's completed epochs and ``extra`` (what its finalized copy keeps)
    position: tuple[int, dict[str, Any]] = (0, {"step": 0})
    finalized: bool = False
    optimizer_state: dict | None = None  # the plain Adam state to continue from
    # a checkpoint inside an epoch: that epoch's training generator state, torch's global RNG
    # state and the statistics of its batches so far (`binaryvae.training.EpochStats`)
    inside: dict[str, Any] | None = None
    failure: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    gradient: list[dict[str, Any]] = field(default_factory=list)  # diagnostics since the row
    # while training: its data (`binaryvae.data.EpochBatches`); while an epoch trains: its
    # noise generator, its batch iterator, its statistics so far
    loader: Any = None
    generator: Any = None
    batches: Any = None
    carry: EpochStats | None = None
    # the per-row trackers (`binaryvae.evaluation.trackers.Tracker`; None without
    # TrainConfig.track) and the TensorBoard event file (`binaryvae.runs.tensorboard`; None
    # without TrainConfig.tensorboard)
    tracker: Any = None
    board: Any = None

    @property
    def config(self) -> TrainConfig:
        return self.prepared.config

    @property
    def model(self) -> torch.nn.Module:
        return self.prepared.model


def resumed_config(run: RunDir, config: TrainConfig) -> TrainConfig:
    """The config a resumed run continues: the stored one, with the fields resume may change
    (`binaryvae.config.RESUMABLE_FIELDS`) taken from ``config``; BadInput for any other change.
    The recorded data fingerprint is the stored one (`binaryvae.config.RECORDED_FIELDS`):
    `prepare` then refuses other data, or records them for a run that has none."""
    if not run.config_path.is_file():
        raise BadInput(
            f"cannot resume {run.path}: no config.json there (start it without --resume)"
        )
    stored = run.read_config()
    config.check_resumable(stored, str(run.path))
    return dataclasses.replace(
        config, data_fingerprint=stored.data_fingerprint, data_source=stored.data_source
    )


def check_group_resume(
    out: Path, listing: dict[str, Any], config: TrainConfig, *, partial: bool = False
) -> list[int]:
    """BadInput unless ``out``'s replicas.json allows resuming it with ``listing``'s seeds
    (none dropped, unless ``partial``: a few seeds of the group trained at a time) and
    ``config`` (changed in resumable fields only). Returns the seeds it records."""
    from binaryvae.runs.directory import read_replicas_listing

    try:
        recorded = read_replicas_listing(out)
    except BadInput as e:
        raise BadInput(f"cannot resume {e}") from None
    old_seeds = recorded["seeds"]
    try:
        stored = TrainConfig.from_dict(recorded["config"])
    except BadInput as e:
        raise BadInput(f"cannot resume {out}: replicas.json: {e}") from None
    dropped = [s for s in old_seeds if s not in listing["seeds"]]
    if dropped and not partial:
        raise BadInput(
            f"--resume continues the replicas of {out}; it cannot drop seeds "
            f"{seed_text(dropped)} (seeds may only be added)"
        )
    dataclasses.replace(config, seed=stored.seed).check_resumable(stored, str(out))
    return list(old_seeds)


def open_member(run: RunDir, prepared: Prepared, resume: bool) -> Member:
    """Load the run's checkpoint (resume), checked against the run's model and optimizer
    (`binaryvae.training.checkpoint.checkpoint_schema`), and check its metrics.jsonl; nothing
    is written yet (`write_member` does)."""
    c = prepared.config
    budget = Budget.of(c, len(prepared.dataset.train_x))
    member = Member(run, prepared, test_data(prepared), budget)
    if c.track:
        from binaryvae.evaluation.trackers import Tracker, track_subset

        x = track_subset(prepared.dataset.test_x, c.binarize, c.track_images)
        member.tracker = Tracker(x.to(prepared.device), c.track)
    if c.tensorboard:
        from binaryvae.runs.tensorboard import FOLDER
        from binaryvae.storage import refuse_links

        refuse_links(run.path, [FOLDER])  # a linked folder: refused before anything is written
    if resume and run.checkpoint_path.is_file():
        schema = checkpoint_schema(c, prepared.model, source=str(run.config_path))
        state = load_checkpoint(run.checkpoint_path, map_location=prepared.device, schema=schema)
        load_state(prepared.model, state["model"], run.checkpoint_path)
        member.optimizer_state = state.get("optimizer")
        _position(member, state)
        _track_position(member)
        if member.start_step > budget.total:
            if c.steps is None and member.inside is None:
                had, asked = f"{member.start_epoch} epochs", f"--epochs {c.epochs}"
            else:
                had = f"{member.start_step} steps"
                asked = (
                    f"--steps {c.steps}"
                    if c.steps
                    else f"--epochs {c.epochs} ({budget.total} steps)"
                )
            raise BadInput(
                f"{run.path} already has {had}; {asked} would shorten it (give at least that many)"
            )
    if member.start_step < budget.total:
        member.finalized = False  # new steps: autoencoder-gmm refits its mixture afterwards
    run.read_metrics()  # BadInput naming the file now, before anything is written
    return member


def _position(member: Member, state: dict[str, Any]) -> None:
    """Where the checkpoint ``state`` left ``member``: epochs, steps, and inside an epoch its
    generator, RNG and statistics (`binaryvae.runs.epoch.end_epoch` writes them)."""
    extra, per_epoch = state.get("extra", {}), member.budget.per_epoch
    member.start_epoch = int(state["epoch"])
    member.finalized = bool(extra.get("finalized", False))
    batches = extra.get("epoch_batches", 0)
    step = extra.get("step", member.start_epoch * per_epoch)
    if batches >= per_epoch or step != member.start_epoch * per_epoch + batches:
        raise CheckpointError(
            f"{member.run.checkpoint_path}: step {step} is not {member.start_epoch} epochs and "
            f"{batches} batches of this run's {per_epoch} batches per epoch (another dataset "
            "or batch size?)"
        )
    member.start_step = member.saved_step = step
    member.position = (member.start_epoch, {k: v for k, v in extra.items() if k != "finalized"})
    if batches:
        sums = tuple(float(v) for v in extra["epoch_sums"])
        member.inside = {
            "generator": extra["generator"],
            "torch_rng": extra["torch_rng"],
            "carry": EpochStats(
                train_loss=0.0, train_elbo=0.0, train_recon=0.0, train_kl=0.0,
                train_seconds=float(extra["epoch_seconds"]), batches=batches,
                images=int(extra["epoch_images"]), sums=sums,
            ),
        }  # fmt: skip


def _track_position(member: Member) -> None:
    """The tracker's previous logits from the checkpoint's ``track_logits``, which must cover
    the run's tracked images (CheckpointError otherwise)."""
    tracker = member.tracker
    if tracker is None or not tracker.keeps_logits:
        return
    stored = member.position[1].get("track_logits")
    if stored is not None and stored.shape[0] != tracker.x.shape[0]:
        raise CheckpointError(
            f"{member.run.checkpoint_path}: extra.track_logits covers {stored.shape[0]} test "
            f"images; this run tracks {tracker.x.shape[0]} (another test split?)"
        )
    tracker.previous = None if stored is None else stored.float().cpu()


def check_alike(members: list[Member]) -> None:
    """CheckpointError unless the replicas' Adam states cover the same parameters: each is
    checked alone against its schema, stacking them needs them alike."""
    held = [(m, frozenset(m.optimizer_state["state"])) for m in members if m.optimizer_state]
    for m, keys in held[1:]:
        if keys != held[0][1]:
            raise CheckpointError(
                f"{m.run.checkpoint_path}: optimizer.state covers other parameters than "
                f"{held[0][0].run.checkpoint_path}'s; the replicas cannot be resumed together"
            )


def write_member(member: Member) -> None:
    """Write the member's config and trim its metrics to the steps its checkpoint covers;
    start its TensorBoard event file from the rows kept (``--tensorboard``).

    A row where an earlier, shorter step budget cut an epoch goes too when training goes on
    (a run trained straight to the new budget has no row there); the gradient diagnostics it
    carried move on to the next row."""
    member.run.write_config(member.config)
    epoch = member.start_epoch + (member.inside is not None)  # the epoch of the checkpoint's step
    rows = member.run.keep_metrics_through(epoch, member.start_step)
    last = rows[-1] if rows else {}
    if (
        member.start_step < member.budget.total
        and "epoch_batches" in last
        and last.get("step") == member.start_step
        and not member.budget.is_row(member.start_step)
    ):
        member.gradient = list(last.get("gradient", []))
        rows = member.run.keep_metrics_through(epoch, member.start_step - 1)
        if member.tracker is not None and member.tracker.keeps_logits:
            # flips count from the row before (`binaryvae.runs.epoch.end_epoch` kept its logits)
            before = member.position[1].get("track_logits_before")
            member.tracker.previous = None if before is None else before.float().cpu()
    if member.config.tensorboard:
        from binaryvae.runs.tensorboard import EventWriter

        member.board = EventWriter(member.run.path)
        member.board.start(rows)
