"""What training prints: the value an epoch line shows, its test tail, a stop message."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from binaryvae.config import TrainConfig

if TYPE_CHECKING:
    from binaryvae.runs.members import Member

__all__ = ["epoch_line", "stop_message", "value_name"]


def stop_message(m: Member, error: Exception, epoch: int) -> str:
    """Why ``m`` stopped in ``epoch`` (``error``) and what of it was kept: everything through
    its last checkpoint."""
    per_epoch, step = m.budget.per_epoch, m.saved_step
    if step and step % per_epoch == 0:
        done = step // per_epoch
        kept = (
            f"last good checkpoint {m.run.checkpoint_path} (epoch {done}) and the "
            f"metrics of epochs 1-{done} in {m.run.metrics_path}"
        )
    elif step:
        kept = (
            f"last good checkpoint {m.run.checkpoint_path} (step {step}, in epoch "
            f"{step // per_epoch + 1}) and the metrics through it in {m.run.metrics_path}"
        )
    else:
        kept = f"nothing trained (it failed before its first row, in epoch {epoch})"
    return f"{error}; training stopped. Kept: {kept}. Try a smaller --lr."


def value_name(config: TrainConfig, model: Any) -> str:
    """What the training value of an epoch line is: the objective trained on, by its name."""
    from binaryvae.evaluation.summary import has_likelihood

    if not has_likelihood(model):
        return "train recon"  # the autoencoder's loss: log p(x | code), no KL
    return f"train {config.objective}"


def epoch_line(rows: list[dict[str, Any]]) -> str:
    """The tail of the one-line epoch summary: the test bounds that exist for this family (the
    mean over the replicas of a group)."""
    if not rows:
        return "every replica stopped"
    parts = []
    for key, short in (
        ("test_relaxed_elbo", "relaxed"),  # families with a relaxation (Family.relaxed)
        ("test_elbo", "ELBO"),  # the family's own ELBO where it has none
        ("test_discrete_elbo", "discrete"),
        ("test_log_px_exact", "log p(x)"),
    ):
        values = [r.get(key) for r in rows]
        if all(isinstance(v, int | float) for v in values):
            parts.append(f"{short} {sum(values) / len(values):.2f}")
    recon = [r.get("test_recon") for r in rows]
    if not parts and all(isinstance(v, int | float) for v in recon):  # the autoencoder: no bound
        parts.append(f"recon {sum(recon) / len(recon):.2f}")
    parts.append(f"{rows[0]['train_seconds']:.1f}s+{sum(r['eval_seconds'] for r in rows):.1f}s")
    head = "test " if len(rows) == 1 else f"test, mean of {len(rows)} replicas: "
    return head + "  ".join(parts)
