"""Where a run stops and where it writes its metrics rows, counted in optimizer steps.

A run's budget is ``epochs`` or ``steps`` (`binaryvae.config.TrainConfig`); with ``steps`` it
trains ceil(steps / batches per epoch) epochs and cuts the last one. A metrics row (an
evaluation, then a checkpoint) is written at the end of every epoch, at every multiple of
``eval_every_steps``, and where the budget ends; a step is an optimizer step of the whole run
(epoch e's batch b is step (e - 1) * batches_per_epoch + b).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from binaryvae.config import TrainConfig

__all__ = ["Budget", "Point"]


@dataclass(frozen=True)
class Point:
    """A place in a run where a metrics row is written."""

    epoch: int  # the epoch the step belongs to (1-based)
    batches: int  # batches of that epoch trained at the row (== per_epoch at its end)
    step: int  # optimizer steps of the whole run at the row
    per_epoch: int  # batches per epoch
    last: bool  # the budget ends here

    @property
    def epoch_end(self) -> bool:
        return self.batches == self.per_epoch


@dataclass(frozen=True)
class Budget:
    """A run's budget in steps, with its batches per epoch and its evaluation interval."""

    per_epoch: int  # batches per epoch (the last, partial batch of an epoch counts)
    total: int  # optimizer steps in all
    eval_every: int | None = None

    @classmethod
    def of(cls, config: TrainConfig, train_images: int) -> Budget:
        """The budget of ``config`` trained on ``train_images`` training images."""
        per_epoch = math.ceil(train_images / config.batch_size)
        total = config.steps if config.steps is not None else config.epochs * per_epoch
        return cls(per_epoch, total, config.eval_every_steps)

    @property
    def epochs(self) -> int:
        """Epochs the budget spans (the last may be cut)."""
        return math.ceil(self.total / self.per_epoch)

    def is_row(self, step: int) -> bool:
        """Whether a run with this budget writes a metrics row at ``step`` (0 < step <= total)."""
        return (
            step % self.per_epoch == 0
            or step == self.total
            or (self.eval_every is not None and step % self.eval_every == 0)
        )

    def points(self, epoch: int, done: int = 0) -> list[Point]:
        """The rows of ``epoch`` after its first ``done`` batches, in order (none past the
        budget)."""
        first = (epoch - 1) * self.per_epoch
        end = min(self.per_epoch, self.total - first)
        return [
            Point(epoch, b, first + b, self.per_epoch, first + b == self.total)
            for b in range(done + 1, end + 1)
            if self.is_row(first + b)
        ]
