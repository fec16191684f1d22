"""The end of an epoch (or of a step interval) and of a run: evaluate, append the metrics row,
checkpoint, summarise.

A row is written where `binaryvae.runs.budget.Budget.points` says: every epoch's end, every
``eval_every_steps`` steps, the end of a step budget. A checkpoint written inside an epoch also
holds what continuing that epoch needs (`binaryvae.training.checkpoint`'s ``extra``): the
epoch's training generator state, torch's global RNG state and the statistics of its batches
so far, so that a resumed run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from binaryvae.runs.budget import Point
from binaryvae.runs.labels import objective_label, summary_labels
from binaryvae.runs.members import Member
from binaryvae.training import epoch_seed, save_checkpoint, seed_everything

__all__ = ["end_epoch", "finalize_data", "finish"]


def end_epoch(m: Member, stats, point: Point, kl_weight: float) -> dict[str, Any]:
    """Evaluate the member's model at ``point`` (and its trackers, ``TrainConfig.track``),
    append its metrics row (and its TensorBoard scalars), replace its checkpoint (with the
    trackers' logits where they track flips); the row. Evaluation leaves torch's global RNG as
    training left it."""
    from binaryvae.evaluation import evaluate_epoch

    c, epoch = m.config, point.epoch
    t0 = time.perf_counter()
    every = c.eval_iwae_every
    iwae = (
        c.eval_iwae_k if every and ((point.epoch_end and epoch % every == 0) or point.last) else 0
    )
    # a row inside an epoch: evaluation noise of its own step (at an epoch's end: of the epoch)
    seed = (
        epoch_seed(c.seed, epoch, "eval")
        if point.epoch_end
        else epoch_seed(c.seed, point.step, "eval-step")
    )
    rng = torch.get_rng_state()
    metrics = evaluate_epoch(m.model, m.test_x, samples=c.eval_samples, seed=seed, iwae_k=iwae)
    torch.set_rng_state(rng)
    before = m.tracker.previous if m.tracker is not None else None
    if m.tracker is not None:  # the trackers (issue 27): no random draw, a forked RNG
        metrics.update(m.tracker.measure(m.model))
    eval_seconds = time.perf_counter() - t0
    row = {
        "epoch": epoch,
        "step": point.step,
        **({} if point.epoch_end else {"epoch_batches": point.batches}),
        "objective": c.objective,
        "objective_label": objective_label(c, m.model)[0],
        "family": c.family,
        "kl_weight": kl_weight,
        "train_loss": stats.train_loss,
        "train_elbo": stats.train_elbo,
        "train_recon": stats.train_recon,
        "train_kl": stats.train_kl,
        **metrics,
        "train_seconds": stats.train_seconds,
        "eval_seconds": eval_seconds,
    }
    if m.gradient:
        row["gradient"], m.gradient = m.gradient, []
    m.run.append_metrics(row)
    if m.board is not None:
        m.board.add_row(row)
    m.position = (epoch, {"step": point.step})
    if not point.epoch_end:
        m.position = (epoch - 1, {
            "step": point.step,
            "epoch_batches": point.batches,
            "generator": m.generator.get_state(),
            "torch_rng": rng,
            "epoch_sums": [float(v) for v in stats.sums],
            "epoch_images": int(stats.images),
            "epoch_seconds": float(stats.train_seconds),
        })  # fmt: skip
    if m.tracker is not None and m.tracker.keeps_logits:
        m.position[1]["track_logits"] = m.tracker.previous
        if before is not None and _budget_cut_only(point, c.eval_every_steps):
            m.position[1]["track_logits_before"] = before  # this row goes if the budget grows
    save_checkpoint(
        m.run.checkpoint_path,
        model_state=m.model.state_dict(),
        optimizer_state=m.optimizer_state,
        epoch=m.position[0],
        extra=m.position[1],
        config=c,
    )
    m.saved_step = point.step
    return row


def _budget_cut_only(point: Point, eval_every: int | None) -> bool:
    """Whether the row at ``point`` is written only because the step budget ends there (a
    resume with a larger budget drops it: `binaryvae.runs.members.write_member`)."""
    return (
        point.last
        and not point.epoch_end
        and not (eval_every is not None and point.step % eval_every == 0)
    )


def finish(m: Member) -> None:
    """Fit what is fitted after training (autoencoder-gmm's mixture), checkpoint it, and write
    the summary (with ``TrainConfig.summary_train_images``, binary families: also the training
    images' discrete ELBO, `binaryvae.evaluation.train_elbo`, from a generator of its own; with
    ``TrainConfig.summary_grad_samples``: the trained objective's gradient bias,
    `binaryvae.diagnostics.final`, likewise)."""
    from binaryvae.evaluation import evaluate_summary
    from binaryvae.training.classifier import fd_features

    c, model, ds = m.config, m.model, m.prepared.dataset
    if not m.finalized:
        seed_everything(epoch_seed(c.seed, 0, "finalize"))
        model.finalize(finalize_data(ds.train_x, c.binarize).to(m.prepared.device))
        save_checkpoint(
            m.run.checkpoint_path,
            model_state=model.state_dict(),
            optimizer_state=m.optimizer_state,
            epoch=m.position[0],
            extra={**m.position[1], "finalized": True},
            config=c,
        )
    t0 = time.perf_counter()
    summary = dict(
        evaluate_summary(
            model,
            m.test_x,
            features=fd_features(ds, c.summary_fd_samples),
            fd_samples=c.summary_fd_samples or None,  # None: as many as test images
            seed=epoch_seed(c.seed, 0, "summary"),
        )
    )
    if c.summary_train_images and model.family.binary:  # the DisARM paper's train ELBO
        from binaryvae.evaluation.train_elbo import train_discrete_elbo

        value, images = train_discrete_elbo(
            model, ds.train_x, binarize=c.binarize, images=c.summary_train_images, seed=c.seed
        )
        summary.update(train_discrete_elbo=value, train_elbo_images=images)
    if c.summary_grad_samples and model.family.binary:  # the trained objective's gradient bias
        from binaryvae.diagnostics.final import final_gradient_diagnostics

        summary.update(
            final_gradient_diagnostics(
                model,
                m.test_x,
                objective=c.objective,
                samples=c.summary_grad_samples,
                images=c.summary_grad_images,
            )
        )
    rows = m.run.read_metrics()
    # an epoch's last row holds its training seconds (its earlier rows, a part of them)
    ends = [
        r for i, r in enumerate(rows) if i + 1 == len(rows) or rows[i + 1]["epoch"] != r["epoch"]
    ]
    summary.update(summary_labels(c, model))
    summary.update(
        epochs=len(ends),
        steps=m.budget.total,
        seconds_per_epoch=sum(r["train_seconds"] for r in ends) / max(len(ends), 1),
        eval_seconds_per_epoch=sum(r["eval_seconds"] for r in rows) / max(len(ends), 1),
        summary_seconds=time.perf_counter() - t0,
        threads=m.prepared.threads,
        device=str(m.prepared.device),
        dataset_label=getattr(ds, "label", c.dataset),
    )
    m.run.write_summary(summary)
    m.summary = summary


def finalize_data(train_x: torch.Tensor, binarize: str) -> torch.Tensor:
    """Training images for `VAE.finalize` (the autoencoder's mixture fit): thresholded when
    the run trained on thresholded pixels; grey levels otherwise (dynamic binarization's
    expectation)."""
    if binarize == "threshold":
        from binaryvae.data import to_float

        return to_float(train_x, "threshold")
    return train_x
