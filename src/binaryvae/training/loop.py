"""One training epoch: forward, surrogate loss, backward, step, with a NaN/inf guard.

The same loop trains one model or S stacked replicas (`binaryvae.models.replicas`). With
replicas every number is kept per replica: the reported averages, the gradient norm of the
guard (never a global norm: a replica's guard must not depend on the others), and the fault
handling -- a replica whose loss or gradient turns non-finite stops alone (its gradient is
zeroed from then on and its numbers are ignored) while the others go on unchanged.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

__all__ = ["EpochStats", "NonFiniteLoss", "autocast", "fit_epoch", "kl_weight_at"]


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
    ``failure``: for a replica that stopped, the `NonFiniteLoss` that stopped it (its averages
    then cover the batches before it).
    """

    train_loss: float
    train_elbo: float
    train_recon: float
    train_kl: float
    train_seconds: float  # the loop alone: no evaluation, no checkpoint
    batches: int
    images: int
    failure: NonFiniteLoss | None = None
    # the float64 sums over images behind the averages: loss, elbo, recon, kl (what a later
    # part of the same epoch continues from: ``fit_epoch(..., carry=stats)``)
    sums: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)


def kl_weight_at(kl_weight: float, warmup_epochs: int, epoch: int) -> float:
    """KL weight for 1-based ``epoch``: linear warm-up from 0 over ``warmup_epochs`` (notes s.5)."""
    if warmup_epochs <= 0:
        return kl_weight
    return kl_weight * min(1.0, epoch / warmup_epochs)


def autocast(precision: str, device: torch.device):
    """The context the training step runs in: bfloat16 autocast for ``precision == "bf16"``
    (matrix products in bf16, reductions and losses in float32), nothing for "fp32"."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _grad_norms(params: list[torch.Tensor], replicas: int | None) -> torch.Tensor:
    """Sum of the gradients' norms, per replica ``[S]`` (or ``[1]`` for one model): finite iff
    every gradient entry of that replica is finite. Every stacked tensor holds its replicas'
    values in S equal blocks along dim 0, so a replica's entries are ``g.reshape(S, -1)[r]``."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(replicas or 1)
    if replicas is None:
        return torch.stack(torch._foreach_norm(grads)).sum().reshape(1)
    return torch.stack([g.reshape(replicas, -1).norm(dim=1) for g in grads]).sum(0)


def _zero_grads_of(params: list[torch.Tensor], stopped: torch.Tensor, replicas: int) -> None:
    """Zero the gradients of the replicas marked in ``stopped [S]`` (bool)."""
    for p in params:
        if p.grad is not None:
            p.grad.view(replicas, -1).masked_fill_(stopped[:, None], 0.0)


def _report(progress, images_now: int, sums: torch.Tensor, images: torch.Tensor, live) -> None:
    """The running loss and ELBO per image over the live replicas, to ``progress``."""
    n = images[live].sum().item()
    total = sums[live].sum(0)
    progress.update(images_now, loss=total[0].item() / max(n, 1),
                    elbo=total[1].item() / max(n, 1))  # fmt: skip


def fit_epoch(
    model,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[torch.Tensor],
    *,
    epoch: int,
    objective: str,
    kl_weight: float = 1.0,
    generator=None,
    replicas: int | None = None,
    stopped: list[bool] | None = None,
    precision: str = "fp32",
    progress=None,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
    first_batch: int = 1,
    carry: EpochStats | list[EpochStats] | None = None,
) -> EpochStats | list[EpochStats]:
    """Train ``model`` for one pass over ``batches``.

    One model (``replicas=None``): batches are float32 ``[B, D]`` on the model's device; returns
    `EpochStats`; raises `NonFiniteLoss` naming the epoch and 1-based batch if the surrogate,
    the objective or a gradient is NaN/inf (that batch's optimizer step is not taken).

    S stacked replicas (``replicas=S``): batches are ``[S, B, D]``; returns one `EpochStats`
    per replica. A replica that turns non-finite gets ``failure`` set and is frozen (gradient
    zeroed, numbers ignored) for the rest of the epoch; ``stopped`` marks replicas frozen
    before the epoch. The others' numbers are exactly those of an undisturbed run.

    ``model.loss(x, objective=..., kl_weight=..., generator=...)`` returns LossTerms; its
    ``surrogate`` is backpropagated, its detached ``elbo``/``recon``/``kl`` ``[..., B]`` are
    averaged for the log. ``generator`` supplies all the step's noise
    (`binaryvae.distributions.draw`). ``progress`` (an `EpochProgress`) is told the running
    loss and ELBO (mean over live replicas) after every batch. ``on_step(batch, stopped)`` is
    called after every optimizer step with the 1-based batch number and the replicas'
    stopped mask ``[S]`` (the run layer's gradient diagnostics hook in here).

    An epoch may be trained in parts (the run layer stops at a step budget or evaluates every
    N steps): ``first_batch`` is the 1-based number of the first batch of ``batches`` within
    the epoch, and ``carry`` the `EpochStats` of the epoch's earlier parts (one per replica),
    whose sums, counts and seconds the returned statistics continue -- the same float64
    additions in the same order as one uninterrupted pass, so the averages are equal bit for bit.
    """
    model.train()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    s = replicas or 1
    device = next(model.parameters()).device
    sums = torch.zeros(s, 4, dtype=torch.float64)  # loss, elbo, recon, kl (summed over images)
    dead = torch.tensor(stopped if stopped is not None else [False] * s, dtype=torch.bool)
    failures: list[NonFiniteLoss | None] = [None] * s
    images = torch.zeros(s, dtype=torch.long)
    batches_done = torch.zeros(s, dtype=torch.long)
    earlier = 0.0  # seconds of the epoch's earlier parts
    if carry is not None:
        before = [carry] if isinstance(carry, EpochStats) else list(carry)
        if len(before) != s:
            raise ValueError(f"carry holds {len(before)} replicas' statistics, the model {s}")
        sums = torch.tensor([list(st.sums) for st in before], dtype=torch.float64)
        images = torch.tensor([st.images for st in before], dtype=torch.long)
        batches_done = torch.tensor([st.batches for st in before], dtype=torch.long)
        earlier = before[0].train_seconds
    # the running loss and ELBO go to a drawn bar after every step; otherwise only the last
    # values are ever shown (`EpochProgress.close`), so they are computed once, after the loop
    per_step = progress is not None and getattr(progress, "draws", True)
    all_dead, stepped = bool(dead.all()), False
    start = time.perf_counter()
    for batch_index, x in enumerate(batches, start=first_batch):
        if all_dead:
            break
        optimizer.zero_grad(set_to_none=True)
        with autocast(precision, device):
            terms = model.loss(x, objective=objective, kl_weight=kl_weight, generator=generator)
        terms.surrogate.backward()
        recon, kl, elbo = terms.recon.sum(-1), terms.kl.sum(-1), terms.elbo.sum(-1)  # [S] or []
        loss = kl_weight * kl - recon
        # one device sync per step: the guard and the progress numbers together, [S, 6]:
        # loss, elbo, recon, kl, gradient norm, and (one model) the surrogate itself
        surrogate = terms.surrogate.detach().reshape(1) if replicas is None else loss.new_zeros(s)
        norms = _grad_norms(params, replicas).to(device=loss.device)
        # stacked in their own dtype, then widened once: float32 (or bfloat16) -> float64 is
        # exact, so these are the numbers six separate conversions give
        values = torch.stack(
            [t.reshape(s) for t in (loss, elbo, recon, kl, norms, surrogate)], dim=1
        ).to(torch.float64).cpu()
        finite = torch.isfinite(values).all(1)  # [S]
        bad = ~finite & ~dead
        if bool(bad.any()):
            for r in bad.nonzero().flatten().tolist():
                terms_ok = bool(torch.isfinite(values[r, [0, 1, 2, 3, 5]]).all())
                what = "gradient" if terms_ok else "loss"
                failures[r] = NonFiniteLoss(epoch, batch_index, what)
            if replicas is None:
                raise failures[0]
            dead |= bad
            all_dead = bool(dead.all())
            if all_dead:
                break
        if replicas is not None and bool(dead.any()):
            _zero_grads_of(params, dead.to(device), replicas)
        optimizer.step()
        live = ~dead
        b = x.shape[-2]
        # the live replicas' rows added, the stopped ones' left as they are (+ 0.0): the same
        # float64 additions as indexing by the mask, without its per-step synchronisations
        sums += torch.where(live[:, None], values[:, :4], 0.0)
        images += live.to(torch.long) * b
        batches_done += live.to(torch.long)
        stepped = True
        if per_step:
            _report(progress, b, sums, images, live)
        if on_step is not None:
            on_step(batch_index, dead.clone())
    if progress is not None and not per_step and stepped:
        _report(progress, 0, sums, images, ~dead)
    seconds = earlier + time.perf_counter() - start
    stats = [
        EpochStats(
            train_loss=sums[r, 0].item() / max(int(images[r]), 1),
            train_elbo=sums[r, 1].item() / max(int(images[r]), 1),
            train_recon=sums[r, 2].item() / max(int(images[r]), 1),
            train_kl=sums[r, 3].item() / max(int(images[r]), 1),
            train_seconds=seconds,
            batches=int(batches_done[r]),
            images=int(images[r]),
            failure=failures[r],
            sums=tuple(sums[r].tolist()),
        )
        for r in range(s)
    ]
    return stats if replicas is not None else stats[0]
