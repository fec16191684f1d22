"""The end of an epoch and of a run: evaluate, append the metrics row, checkpoint, summarise."""

from __future__ import annotations

import time
from typing import Any

import torch

from binaryvae.runs.labels import objective_label, summary_labels
from binaryvae.runs.members import Member
from binaryvae.training import epoch_seed, save_checkpoint, seed_everything

__all__ = ["end_epoch", "finalize_data", "finish"]


def end_epoch(m: Member, stats, epoch: int, kl_weight: float) -> dict[str, Any]:
    """Evaluate the member's model, append its metrics row, replace its checkpoint; the row."""
    from binaryvae.evaluation import evaluate_epoch

    c = m.config
    t0 = time.perf_counter()
    last = epoch == c.epochs
    iwae = c.eval_iwae_k if c.eval_iwae_every and (epoch % c.eval_iwae_every == 0 or last) else 0
    metrics = evaluate_epoch(
        m.model,
        m.test_x,
        samples=c.eval_samples,
        seed=epoch_seed(c.seed, epoch, "eval"),
        iwae_k=iwae,
    )
    eval_seconds = time.perf_counter() - t0
    row = {
        "epoch": epoch,
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
    save_checkpoint(
        m.run.checkpoint_path,
        model_state=m.model.state_dict(),
        optimizer_state=m.optimizer_state,
        epoch=epoch,
        config=c,
    )
    return row


def finish(m: Member) -> None:
    """Fit what is fitted after training (autoencoder-gmm's mixture), checkpoint it, and write
    the summary."""
    from binaryvae.evaluation import evaluate_summary
    from binaryvae.training.classifier import feature_network

    c, model, ds = m.config, m.model, m.prepared.dataset
    if not m.finalized:
        seed_everything(epoch_seed(c.seed, 0, "finalize"))
        model.finalize(finalize_data(ds.train_x, c.binarize).to(m.prepared.device))
        save_checkpoint(
            m.run.checkpoint_path,
            model_state=model.state_dict(),
            optimizer_state=m.optimizer_state,
            epoch=c.epochs,
            extra={"finalized": True},
            config=c,
        )
    t0 = time.perf_counter()
    summary = dict(
        evaluate_summary(
            model,
            m.test_x,
            features=feature_network(ds),
            seed=epoch_seed(c.seed, 0, "summary"),
        )
    )
    rows = m.run.read_metrics()
    summary.update(summary_labels(c, model))
    summary.update(
        epochs=len(rows),
        seconds_per_epoch=sum(r["train_seconds"] for r in rows) / max(len(rows), 1),
        eval_seconds_per_epoch=sum(r["eval_seconds"] for r in rows) / max(len(rows), 1),
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
