"""One training epoch: forward, surrogate loss, backward, step, with a NaN/inf guard."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import torch

__all__ = ["EpochStats", "NonFiniteLoss", "fit_epoch", "kl_weight_at"]


class NonFiniteLoss(RuntimeError):
    """The loss, the reported objective or a gradient became NaN or infinite.

    Raised before the optimizer step of the offending batch, so the model and optimizer still
    hold the state after the previous step (the run layer keeps its last good checkpoint).
    """

    def __init__(self, epoch: int, batch: int, what: str) -> None:
        self.epoch, self.batch, self.what = epoch, batch, what
        super().__init__(f"non-finite {what} at epoch {epoch}, batch {batch}")


@dataclass(frozen=True)
class EpochStats:
    """Averages over the images of one training epoch (nats per image).

    ``train_loss`` = -(recon - kl_weight * kl): the loss whose gradient the surrogate estimates
    (for score-function estimators the surrogate's own value is meaningless, so it is not logged).
    ``train_elbo`` = the trained objective's value (relaxed or Bernoulli ELBO), KL weight 1.
    """

    train_loss: float
    train_elbo: float
    train_recon: float
    train_kl: float
    train_seconds: float  # the loop alone: no evaluation, no checkpoint
    batches: int
    images: int


def kl_weight_at(kl_weight: float, warmup_epochs: int, epoch: int) -> float:
    """KL weight for 1-based ``epoch``: linear warm-up from 0 over ``warmup_epochs`` (notes s.5)."""
    if warmup_epochs <= 0:
        return kl_weight
    return kl_weight * min(1.0, epoch / warmup_epochs)


def _grad_norm_sum(params: list[torch.Tensor]) -> torch.Tensor:
    """Sum of the gradients' norms: finite iff every gradient entry is finite."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.stack(torch._foreach_norm(grads)).sum()


def fit_epoch(
    model,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[torch.Tensor],
    *,
    epoch: int,
    objective: str,
    kl_weight: float = 1.0,
    progress=None,
) -> EpochStats:
    """Train ``model`` for one pass over ``batches`` (each float32 ``[B, D]``, already on device).

    ``model.loss(x, objective=..., kl_weight=...)`` returns LossTerms; its ``surrogate`` is
    backpropagated, its detached ``elbo``/``recon``/``kl`` ``[B]`` are averaged for the log.
    ``progress`` (an `EpochProgress`) is told the running loss and ELBO after every batch.
    Raises `NonFiniteLoss` naming the epoch and 1-based batch if the surrogate, the objective or
    a gradient is NaN/inf; the optimizer step of that batch is not taken.
    """
    model.train()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    sums = torch.zeros(4, dtype=torch.float64)  # loss, elbo, recon, kl (summed over images)
    images = 0
    batch_index = 0
    start = time.perf_counter()
    for batch_index, x in enumerate(batches, start=1):
        optimizer.zero_grad(set_to_none=True)
        terms = model.loss(x, objective=objective, kl_weight=kl_weight)
        terms.surrogate.backward()
        b = x.shape[0]
        recon, kl, elbo = terms.recon.sum(), terms.kl.sum(), terms.elbo.sum()
        loss = kl_weight * kl - recon
        # one device sync per step: the guard and the progress numbers together
        values = (
            torch.stack(
                [terms.surrogate.detach(), loss, elbo, recon, kl, _grad_norm_sum(params).to(loss)]
            )
            .double()
            .cpu()
        )
        if not torch.isfinite(values).all():
            what = "gradient" if torch.isfinite(values[:5]).all() else "loss"
            raise NonFiniteLoss(epoch, batch_index, what)
        optimizer.step()
        sums += values[1:5]
        images += b
        if progress is not None:
            progress.update(b, loss=sums[0].item() / images, elbo=sums[1].item() / images)
    seconds = time.perf_counter() - start
    n = max(images, 1)
    return EpochStats(
        train_loss=sums[0].item() / n,
        train_elbo=sums[1].item() / n,
        train_recon=sums[2].item() / n,
        train_kl=sums[3].item() / n,
        train_seconds=seconds,
        batches=batch_index,
        images=images,
    )
