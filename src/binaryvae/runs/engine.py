"""The training engine: train a group of runs epoch by epoch, stacked or one plain model.

Every epoch draws its noise from generators seeded by (seed, epoch)
(`binaryvae.training.epoch_seed`), its data order and binarization likewise, so a resumed run
continues exactly as an uninterrupted one. After each epoch `binaryvae.runs.epoch` evaluates,
appends the metrics row and replaces the checkpoint.
"""

from __future__ import annotations

from typing import TextIO

import torch

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
    """Train every member to its ``epochs``, then finalize and summarise each.

    Members that start at the same epoch train together (one stacked model when ``stacked``);
    groups that start at different epochs (a resumed group interrupted between two replicas'
    checkpoints) train one after the other.
    """
    tune_allocator()
    starts = sorted({m.start_epoch for m in members})
    for start in starts:
        group = [m for m in members if m.start_epoch == start and start < m.config.epochs]
        if group:
            fit_group(group, stacked=stacked, progress=progress, label=label, stream=stream)
    for m in members:
        if not m.failure:
            finish(m)


def fit_group(
    members: list[Member], *, stacked: bool, progress: bool, label: str, stream: TextIO
) -> None:
    """Train ``members`` (all at the same epoch) to their ``epochs``, one epoch at a time; a
    member that turns NaN/inf gets its failure recorded and the others go on."""
    from binaryvae.data import EpochBatches

    c = members[0].config
    start = members[0].start_epoch
    loaders = [
        EpochBatches(m.prepared.dataset.train_x, batch_size=c.batch_size, binarize=c.binarize,
                     seed=m.config.seed, device=m.prepared.device)
        for m in members
    ]  # fmt: skip
    trainer = Trainer(members, stacked)
    for epoch in range(start + 1, c.epochs + 1):
        seed_everything(epoch_seed(members[0].config.seed, epoch, "train"))
        bar = EpochProgress(
            epoch,
            c.epochs,
            loaders[0].num_examples,
            label=label,
            stream=stream,
            enabled=progress,
            value_name=value_name(c, members[0].prepared.model),
        )
        kl_weight = kl_weight_at(c.kl_weight, c.kl_warmup_epochs, epoch)
        on_step = gradient_hook(trainer, members, epoch, len(loaders[0]))
        if stacked:
            stats = fit_epoch(
                trainer.model,
                trainer.optimizer,
                trainer.batches(loaders, epoch),
                epoch=epoch,
                objective=c.objective,
                kl_weight=kl_weight,
                generator=trainer.generator(epoch),
                replicas=len(members),
                precision=c.precision,
                progress=bar,
                on_step=on_step,
            )
        else:
            single = fit_plain(trainer, loaders, epoch, kl_weight, bar, members[0], on_step)
            if single is None:  # the run stopped: its failure is recorded
                bar.close("stopped")
                return
            stats = [single]
        for m, st in zip(members, stats, strict=True):
            if st.failure is not None:
                m.failure = stop_message(m, st.failure, epoch)
                print(f"{m.run.path}: stopped: {m.failure}", file=stream, flush=True)
        trainer.sync()
        rows = [
            end_epoch(m, st, epoch, kl_weight)
            for m, st in zip(members, stats, strict=True)
            if m.failure is None
        ]
        bar.close(epoch_line(rows))
        live = [i for i, m in enumerate(members) if m.failure is None]
        if not live:
            return
        if len(live) < len(members):  # drop the stopped replicas: restack the others
            members = [members[i] for i in live]
            loaders = [loaders[i] for i in live]
            trainer = Trainer(members, stacked)


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


def fit_plain(
    trainer: Trainer, loaders, epoch: int, kl_weight: float, bar, member: Member, on_step=None
):
    """One epoch of a single run: `fit_epoch` raising on NaN/inf, turned into a member failure
    (returns None then)."""
    from binaryvae.training import NonFiniteLoss

    c = member.config
    try:
        return fit_epoch(
            trainer.model,
            trainer.optimizer,
            trainer.batches(loaders, epoch),
            epoch=epoch,
            objective=c.objective,
            kl_weight=kl_weight,
            generator=trainer.generator(epoch),
            precision=c.precision,
            progress=bar,
            on_step=on_step,
        )
    except NonFiniteLoss as e:
        member.failure = stop_message(member, e, epoch)
        return None
