"""The model and optimizer that train a group of runs: one plain model, or S stacked replicas."""

from __future__ import annotations

import torch

from binaryvae.runs.members import Member
from binaryvae.training import epoch_seed, load_state, make_optimizer

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

    def generator(self, epoch: int):
        device = self.members[0].prepared.device
        gens = [
            torch.Generator(device=device).manual_seed(epoch_seed(m.config.seed, epoch, "train"))
            for m in self.members
        ]
        if not self.stacked:
            return gens[0]
        from binaryvae.models.replicas import ReplicaGenerator

        return ReplicaGenerator(gens)

    def batches(self, loaders, epoch: int):
        if not self.stacked:
            yield from loaders[0].epoch(epoch)
            return
        for xs in zip(*[b.epoch(epoch) for b in loaders], strict=True):
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
