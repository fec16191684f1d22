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
from binaryvae.runs.build import Prepared, test_data
from binaryvae.runs.directory import RunDir
from binaryvae.runs.seeds import seed_text
from binaryvae.training import load_checkpoint, load_state
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
    start_epoch: int = 0
    finalized: bool = False
    optimizer_state: dict | None = None  # the plain Adam state to continue from
    failure: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    gradient: list[dict[str, Any]] = field(default_factory=list)  # this epoch's diagnostics

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


def check_group_resume(out: Path, listing: dict[str, Any], config: TrainConfig) -> None:
    """BadInput unless ``out``'s replicas.json allows resuming it with ``listing``'s seeds
    (none dropped) and ``config`` (changed in resumable fields only)."""
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
    if dropped:
        raise BadInput(
            f"--resume continues the replicas of {out}; it cannot drop seeds "
            f"{seed_text(dropped)} (seeds may only be added)"
        )
    dataclasses.replace(config, seed=stored.seed).check_resumable(stored, str(out))


def open_member(run: RunDir, prepared: Prepared, resume: bool) -> Member:
    """Load the run's checkpoint (resume), checked against the run's model and optimizer
    (`binaryvae.training.checkpoint.checkpoint_schema`), and check its metrics.jsonl; nothing
    is written yet (`write_member` does)."""
    member = Member(run, prepared, test_data(prepared))
    c = prepared.config
    if resume and run.checkpoint_path.is_file():
        schema = checkpoint_schema(c, prepared.model, source=str(run.config_path))
        state = load_checkpoint(run.checkpoint_path, map_location=prepared.device, schema=schema)
        load_state(prepared.model, state["model"], run.checkpoint_path)
        member.optimizer_state = state.get("optimizer")
        member.start_epoch = int(state["epoch"])
        member.finalized = bool(state.get("extra", {}).get("finalized", False))
        if member.start_epoch > c.epochs:
            raise BadInput(
                f"{run.path} already has {member.start_epoch} epochs; --epochs {c.epochs} would "
                "shorten it (give at least that many)"
            )
    if member.start_epoch < c.epochs:
        member.finalized = False  # new epochs: autoencoder-gmm refits its mixture afterwards
    run.read_metrics()  # BadInput naming the file now, before anything is written
    return member


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
    """Write the member's config and trim its metrics to the epochs its checkpoint covers."""
    member.run.write_config(member.config)
    member.run.keep_metrics_through(member.start_epoch)
