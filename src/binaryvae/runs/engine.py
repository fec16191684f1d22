"""The training engine: train a group of runs epoch by epoch, stacked or one plain model.

Every epoch draws its noise from generators seeded by (seed, epoch)
(`binaryvae.training.epoch_seed`), its data order and binarization likewise, so a resumed run
continues exactly as an uninterrupted one. An epoch trains in parts that end where a metrics
row is written (its end, every ``eval_every_steps`` steps, the end of a step budget:
`binaryvae.runs.budget`); after each part `binaryvae.runs.epoch` evaluates, appends the row and
replaces the checkpoint, which holds what continuing the epoch needs.
"""

from __future__ import annotations

from typing import TextIO

import torch

from binaryvae.runs.budget import Point
from binaryvae.runs.console import epoch_line, stop_message, value_name
from binaryvae.runs.epoch import end_epoch, finish
from binaryvae.runs.members import Member
from binaryvae.runs.trainer import Trainer
from binaryvae.training import (
    EpochProgress,
    epoch_seed,
    fit_epoch,
    kl_weight_at,
    seed_everything,
    tune_allocator,
)

__all__ = ["fit_group", "train_members"]


def train_members(
    members: list[Member], *, stacked: bool, progress: bool, label: str, stream: TextIO
) -> None:
    """Train every member to the end of its budget, then finalize and summarise each.

    Members that start at the same step train together (one stacked model when ``stacked``);
    groups that start at different steps (a resumed group interrupted between two replicas'
    checkpoints) train one after the other.
    """
    tune_allocator()
    starts = sorted({m.start_step for m in members})
    for start in starts:
        group = [m for m in members if m.start_step == start and start < m.budget.total]
        if group:
            fit_group(group, stacked=stacked, progress=progress, label=label, stream=stream)
    for m in members:
        if not m.failure:
            finish(m)


def fit_group(
    members: list[Member], *, stacked: bool, progress: bool, label: str, stream: TextIO
) -> None:
    """Train ``members`` (all at the same step) to the end of their budget, one epoch at a
    time, each epoch in parts that end where a metrics row is written
    (`binaryvae.runs.budget.Budget.points`); a member that turns NaN/inf gets its failure
    recorded and the others go on."""
    from binaryvae.data import EpochBatches

    c, budget = members[0].config, members[0].budget
    for m in members:
        x, device = m.prepared.dataset.train_x, m.prepared.device
        m.loader = EpochBatches(x, c.batch_size, c.binarize, seed=m.config.seed, device=device)
    trainer = Trainer(members, stacked)
    first = members[0].start_step // budget.per_epoch + 1
    for epoch in range(first, budget.epochs + 1):
        seed_everything(epoch_seed(members[0].config.seed, epoch, "train"))
        trainer.start_epoch(epoch)  # after the seeding: a checkpoint's RNG state wins
        done = members[0].carry.batches if members[0].carry is not None else 0
        bar = EpochProgress(
            epoch,
            budget.epochs,
            members[0].loader.num_examples,
            label=label,
            stream=stream,
            enabled=progress,
            value_name=value_name(c, members[0].prepared.model),
        )
        kl_weight = kl_weight_at(c.kl_weight, c.kl_warmup_epochs, epoch)
        rows: list = []
        for point in budget.points(epoch, done):
            members, rows = _fit_part(trainer, point, done, kl_weight, bar, stream)
            done = point.batches
            if not members:
                bar.close(epoch_line(rows) if rows else "stopped")
                return
            trainer = trainer if len(members) == len(trainer.members) else Trainer(members, stacked)
        bar.close(epoch_line(rows))


def _fit_part(trainer: Trainer, point: Point, done: int, kl_weight: float, bar, stream: TextIO):
    """Train the trainer's members from batch ``done`` + 1 of ``point.epoch`` to ``point``,
    then write their rows and checkpoints; (the members still live, the rows)."""
    members, epoch = trainer.members, point.epoch
    c = members[0].config
    on_step = gradient_hook(trainer, members, epoch, point.per_epoch)
    carry = [m.carry for m in members] if members[0].carry is not None else None
    kwargs = dict(
        epoch=epoch, objective=c.objective, kl_weight=kl_weight, generator=trainer.generator(),
        precision=c.precision, progress=bar, on_step=on_step, first_batch=done + 1,
    )  # fmt: skip
    batches = trainer.batches(point.batches - done)
    if trainer.stacked:
        stats = fit_epoch(
            trainer.model, trainer.optimizer, batches, replicas=len(members), carry=carry, **kwargs
        )
    else:
        single = fit_plain(trainer, batches, members[0], carry, kwargs)
        if single is None:  # the run stopped: its failure is recorded
            return [], []
        stats = [single]
    for m, st in zip(members, stats, strict=True):
        m.carry = st
        if st.failure is not None:
            m.failure = stop_message(m, st.failure, epoch)
            print(f"{m.run.path}: stopped: {m.failure}", file=stream, flush=True)
    trainer.sync()
    rows = [end_epoch(m, m.carry, point, kl_weight) for m in members if m.failure is None]
    return [m for m in members if m.failure is None], rows


def gradient_hook(trainer: Trainer, members: list[Member], epoch: int, steps_per_epoch: int):
    """The `fit_epoch` hook that measures gradient variance and bias every ``grad_every``
    training steps (`binaryvae.diagnostics.gradient_diagnostics`), on each live member's
    plain model, with its own noise (never the training's)."""
    c = members[0].config
    if not c.grad_every or not members[0].model.family.has_likelihood:
        return None
    from binaryvae.diagnostics import gradient_diagnostics

    def hook(batch: int, stopped: torch.Tensor) -> None:
        step = (epoch - 1) * steps_per_epoch + batch
        if step % c.grad_every:
            return
        trainer.sync(optimizer=False, skip=stopped.tolist())
        for m, dead in zip(members, stopped.tolist(), strict=False):
            if dead or m.failure is not None:
                continue
            g = torch.Generator(device=m.prepared.device)
            g.manual_seed(epoch_seed(m.config.seed, step, "gradient"))
            x = m.test_x[: c.batch_size]
            record = gradient_diagnostics(
                m.model, x, objective=c.objective, samples=c.grad_samples, generator=g
            )
            m.gradient.append({"step": step, **record})

    return hook


def fit_plain(trainer: Trainer, batches, member: Member, carry, kwargs: dict):
    """A part of an epoch of a single run: `fit_epoch` raising on NaN/inf, turned into a
    member failure (returns None then)."""
    from binaryvae.training import NonFiniteLoss

    try:
        return fit_epoch(
            trainer.model, trainer.optimizer, batches, carry=carry and carry[0], **kwargs
        )
    except NonFiniteLoss as e:
        member.failure = stop_message(member, e, kwargs["epoch"])
        return None
