"""The model and optimizer that train a group of runs: one plain model, or S stacked replicas."""

from __future__ import annotations

from itertools import islice

import torch

from binaryvae.runs.members import Member
from binaryvae.training import epoch_seed, load_state, lr_factor, make_optimizer, set_epoch_lr

__all__ = ["Trainer"]


class Trainer:
    """The model and optimizer that train a group: the member's own (one plain model), or a
    stacked model of the live members' plain models."""

    def __init__(self, members: list[Member], stacked: bool):
        from binaryvae.models.replicas import stack_models, stack_optimizer_state

        self.members = members
        self.stacked = stacked
        c = members[0].config
        if stacked:
            self.model = stack_models([m.model for m in members])
        else:
            self.model = members[0].model
        self.optimizer = make_optimizer(self.model, c.lr)
        states = [m.optimizer_state for m in members]
        if all(s is not None for s in states):
            state = stack_optimizer_state(states, self.model) if stacked else states[0]
            load_state(self.optimizer, state, members[0].run.checkpoint_path)

    def start_epoch(self, epoch: int) -> None:
        """Give each member epoch ``epoch``'s noise generator (seeded by (seed, epoch)) and
        batch iterator (`binaryvae.data.EpochBatches`), both continued from where the member's
        checkpoint left the epoch, with torch's global RNG state, if it left it inside; and
        set the optimizer's learning rates to the epoch's (`binaryvae.training.lr_factor`: a
        function of the epoch, so a resumed run trains at the rate an uninterrupted one does)."""
        c = self.members[0].config
        set_epoch_lr(self.optimizer, lr_factor(epoch, c.lr_decay_epoch, c.lr_decay))
        device = self.members[0].prepared.device
        for m in self.members:
            g = torch.Generator(device=device).manual_seed(
                epoch_seed(m.config.seed, epoch, "train")
            )
            batches, m.carry = m.loader.epoch(epoch), None
            if m.inside is not None:
                g.set_state(m.inside["generator"].cpu())
                torch.set_rng_state(m.inside["torch_rng"].cpu())
                m.carry = m.inside["carry"]
                # the order and the dynamic binarization of epoch e depend on (seed, e) only:
                # drawing the trained batches again (and dropping them) continues both
                batches = islice(batches, m.carry.batches, None)
                m.inside = None
            m.generator, m.batches = g, batches

    def generator(self):
        """The noise of a training step: the member's generator, or one per replica."""
        if not self.stacked:
            return self.members[0].generator
        from binaryvae.models.replicas import ReplicaGenerator

        return ReplicaGenerator([m.generator for m in self.members])

    def batches(self, n: int):
        """The members' next ``n`` batches: ``[B, D]``, or ``[S, B, D]`` stacked."""
        if not self.stacked:
            yield from islice(self.members[0].batches, n)
            return
        for xs in zip(*[islice(m.batches, n) for m in self.members], strict=True):
            yield torch.stack(xs)  # [S, B, D]

    def sync(self, optimizer: bool = True, skip: list[bool] | None = None) -> None:
        """Copy each live replica's parameters (and Adam state) back to its plain model."""
        if not self.stacked:
            if optimizer:
                for m in self.members:
                    m.optimizer_state = self.optimizer.state_dict()
            return
        from binaryvae.models.replicas import (
            replica_layouts,
            unstack_optimizer_state,
            unstack_state,
        )

        layouts, state = replica_layouts(self.model), self.model.state_dict()
        opt = self.optimizer.state_dict() if optimizer else None
        s = len(self.members)
        for r, m in enumerate(self.members):
            if m.failure is None and not (skip and skip[r]):
                m.model.load_state_dict(unstack_state(state, r, layouts, s))
                if optimizer:
                    m.optimizer_state = unstack_optimizer_state(opt, r, self.model)
