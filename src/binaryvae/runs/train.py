"""A training run end to end: validate, build, train + evaluate per epoch, checkpoint, summarise.

`train_run` is what `binaryvae train` calls. Everything that can be wrong with the input (names,
ranges, the dataset, building the model, the output directory) is checked before anything is
written. Every epoch appends one row to metrics.jsonl and then replaces checkpoints/last.pt;
`resume=True` reloads the checkpoint, drops metric rows of epochs it does not cover, and runs
the remaining epochs exactly as an uninterrupted run would (every epoch reseeds its own random
streams from (seed, epoch), see `binaryvae.training.epoch_seed`).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch

from binaryvae.config import TrainConfig
from binaryvae.errors import BadInput
from binaryvae.runs.directory import RunDir
from binaryvae.runs.ownership import check_new_dir, claim_existing, claim_new
from binaryvae.training import (
    EpochProgress,
    NonFiniteLoss,
    epoch_seed,
    fit_epoch,
    kl_weight_at,
    load_checkpoint,
    load_state,
    make_optimizer,
    resolve_device,
    save_checkpoint,
    seed_everything,
    set_threads,
    tune_allocator,
)

__all__ = [
    "Prepared",
    "TrainingDiverged",
    "load_run",
    "prepare",
    "summary_labels",
    "test_data",
    "train_run",
]

# What each reported number is (summary.json "labels"); docs/internals.md, vocabulary.
NUMBER_LABELS = {
    "test_relaxed_elbo": "lower bound on log p(x) of the relaxed (continuous-latent) model",
    "test_bernoulli_elbo": (
        "NOT a bound: relaxed samples in Bernoulli log-probabilities (diss. 4.11-4.12)"
    ),
    "test_discrete_elbo": "lower bound on log p(x) of the discrete (binary-latent) model",
    "test_iwae": "importance-weighted lower bound on log p(x) of the discrete model (k = iwae_k)",
    "test_iwae_k<K>": "the same importance-weighted bound with K samples (one key per K)",
    "test_log_px_exact": "exact log p(x) of the discrete model (all 2^n codes enumerated)",
    "test_exact_gap": "log p(x) - discrete ELBO = KL(q(b|x) || p(b|x)) >= 0, by enumeration",
    "recon_loss_r5": (
        "Table 5.2: -log p(x | decoder input) averaged over 5 posterior draws (lower is better)"
    ),
    "sample_fd": (
        "Frechet distance of generated samples to test images (lower is better; not a bound)"
    ),
}


class TrainingDiverged(RuntimeError):
    """Training stopped on a NaN/inf; the message names epoch, batch and what was kept."""


@dataclass
class Prepared:
    """A validated run, built but not yet trained (nothing written yet)."""

    config: TrainConfig
    dataset: Any
    model: torch.nn.Module
    device: torch.device
    threads: int


def prepare(config: TrainConfig) -> Prepared:
    """Check ``config`` fully and build its dataset and model (seeded); write nothing.

    Raises BadInput for unknown names or impossible combinations (from data and models).
    """
    from binaryvae.data import load_dataset
    from binaryvae.models import build_model

    config.validate()
    threads = set_threads(config.threads)
    device = resolve_device(config.device)
    dataset = load_dataset(config.dataset, data_dir=config.data_dir)
    seed_everything(config.seed)
    model = build_model(
        config,
        data_dim=dataset.train_x.shape[1],
        image_shape=dataset.image_shape,
        data_kind=dataset.kind,
    )
    return Prepared(config, dataset, model.to(device), device, threads)


def load_run(path: str | Path, device: str | None = None) -> Prepared:
    """Rebuild a run's dataset and model from its directory and load checkpoints/last.pt."""
    run = RunDir(path)
    if not run.config_path.is_file():
        raise BadInput(f"{path} is not a run directory (no config.json)")
    config = run.read_config()
    if device is not None:
        config.device = device
    if not run.checkpoint_path.is_file():
        raise BadInput(f"{path} has no checkpoint ({run.checkpoint_path}); train it first")
    prepared = prepare(config)
    state = load_checkpoint(run.checkpoint_path, map_location=prepared.device)
    load_state(prepared.model, state["model"], run.checkpoint_path)
    prepared.model.eval()
    return prepared


def objective_label(config: TrainConfig, model: Any) -> tuple[str, bool]:
    """(label, is a bound) of what trained the model; the autoencoder's loss is no ELBO."""
    from binaryvae.evaluation.summary import has_likelihood

    if not has_likelihood(model):
        return "reconstruction only (autoencoder: no KL, not a bound)", False
    return config.objective_label(), config.is_bound


def summary_labels(config: TrainConfig, model: Any) -> dict[str, Any]:
    """The labels that travel with the final numbers: what trained the model, what bounds what."""
    from binaryvae.evaluation.summary import has_likelihood

    label, is_bound = objective_label(config, model)
    binary = bool(getattr(getattr(model, "family", None), "binary", False))
    labels = dict(NUMBER_LABELS)
    if not binary:  # the gaussian family's IWAE uses its continuous proposal q(z|x)
        labels["test_iwae"] = (
            "importance-weighted lower bound on log p(x) of the continuous-latent model "
            "(proposal q(z|x), k = iwae_k); there is no discrete model"
        )
    return {
        # False for the deterministic autoencoder: its "relaxed ELBO" column is the
        # reconstruction term alone (no KL), not a bound on anything
        "has_likelihood": has_likelihood(model),
        "family": config.family,
        "objective": config.objective,
        "objective_label": label,
        "objective_is_bound": is_bound,
        "binary_latent": binary,
        "latent_dim": config.latent_dim,
        "dataset": config.dataset,
        "seed": config.seed,
        "labels": labels,
    }


def test_data(prepared: Prepared) -> torch.Tensor:
    """The run's test split as float32 [N, D] on its device, in its pixel mode."""
    from binaryvae.data import test_tensor

    c = prepared.config
    return test_tensor(prepared.dataset.test_x, binarize=c.binarize, seed=c.seed).to(
        prepared.device
    )


def _evaluate_epoch(prepared: Prepared, test_x: torch.Tensor, epoch: int) -> dict[str, Any]:
    from binaryvae.evaluation import evaluate_epoch

    c = prepared.config
    return dict(
        evaluate_epoch(
            prepared.model, test_x, samples=c.eval_samples, seed=epoch_seed(c.seed, epoch, "eval")
        )
    )


def _evaluate_summary(prepared: Prepared, test_x: torch.Tensor) -> dict:
    from binaryvae.evaluation import evaluate_summary

    c = prepared.config
    return dict(
        evaluate_summary(
            prepared.model,
            test_x,
            dataset=prepared.dataset,
            seed=epoch_seed(c.seed, 0, "summary"),
        )
    )


def _check_resume(run: RunDir, config: TrainConfig) -> TrainConfig:
    """The config a resumed run continues: the stored one, with the fields resume may change
    (`binaryvae.config.RESUMABLE_FIELDS`) taken from ``config``; BadInput for any other change."""
    if not run.config_path.is_file():
        raise BadInput(
            f"cannot resume {run.path}: no config.json there (start it without --resume)"
        )
    stored = run.read_config()
    config.check_resumable(stored, str(run.path))
    return config


def train_run(
    config: TrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    label: str = "",
    stream: TextIO | None = None,
) -> dict[str, Any]:
    """Train ``config`` into run directory ``out`` and return its summary (also in summary.json).

    ``resume``: continue ``out`` from checkpoints/last.pt; ``config`` may differ from the stored
    one only in `binaryvae.config.RESUMABLE_FIELDS`. ``force``: replace an existing run
    directory that binaryvae wrote (`binaryvae.runs.ownership`). The directory is locked for the
    whole call. Raises BadInput (nothing written) for bad input or a directory in use,
    `TrainingDiverged` on NaN/inf, `binaryvae.storage.StorageError` when the disk refuses a
    write (the last good checkpoint intact).
    """
    stream = sys.stderr if stream is None else stream
    run = RunDir(out)
    if resume:
        with claim_existing(run.path, "resume"):
            config = _check_resume(run, config)
            prepared = prepare(config)  # validates everything before the first byte is written
            return _train(run, prepared, resume=True, progress=progress, label=label,
                          stream=stream)  # fmt: skip
    check_new_dir(run.path, force)
    prepared = prepare(config)  # validates everything before the first byte is written
    with claim_new(run.path, force=force, kind="run") as claim:
        return _train(run, prepared, resume=False, progress=progress, label=label,
                      stream=stream, claim=claim)  # fmt: skip


def _train(
    run: RunDir,
    prepared: Prepared,
    *,
    resume: bool,
    progress: bool,
    label: str,
    stream: TextIO,
    claim=None,
) -> dict[str, Any]:
    """The body of `train_run`, with the run directory claimed and locked."""
    tune_allocator()
    model, c = prepared.model, prepared.config
    optimizer = make_optimizer(model, c.lr)
    start_epoch, finalized = 0, False
    if resume and run.checkpoint_path.is_file():
        state = load_checkpoint(run.checkpoint_path, map_location=prepared.device)
        load_state(model, state["model"], run.checkpoint_path)
        if state.get("optimizer") is not None:
            load_state(optimizer, state["optimizer"], run.checkpoint_path)
        start_epoch = int(state["epoch"])
        finalized = bool(state.get("extra", {}).get("finalized", False))
        if start_epoch > c.epochs:
            raise BadInput(
                f"{run.path} already has {start_epoch} epochs; --epochs {c.epochs} would "
                "shorten it (give at least that many)"
            )
    if start_epoch < c.epochs:
        finalized = False  # new epochs: autoencoder-gmm refits its mixture afterwards
    run.write_config(c)
    run.keep_metrics_through(start_epoch)
    if claim is not None:
        claim.commit()  # the run exists from here on: a later failure keeps what it wrote

    from binaryvae.data import EpochBatches

    ds = prepared.dataset
    batches = EpochBatches(
        ds.train_x,
        batch_size=c.batch_size,
        binarize=c.binarize,
        seed=c.seed,
        device=prepared.device,
    )
    test_x = test_data(prepared)
    for epoch in range(start_epoch + 1, c.epochs + 1):
        seed_everything(epoch_seed(c.seed, epoch, "train"))
        bar = EpochProgress(
            epoch,
            c.epochs,
            batches.num_examples,
            label=label,
            stream=stream,
            enabled=progress,
            value_name=_value_name(c, model),
        )
        try:
            stats = fit_epoch(
                model,
                optimizer,
                batches.epoch(epoch),
                epoch=epoch,
                objective=c.objective,
                kl_weight=kl_weight_at(c.kl_weight, c.kl_warmup_epochs, epoch),
                progress=bar,
            )
        except NonFiniteLoss as e:
            bar.close("stopped")
            if epoch > 1:
                kept = (
                    f"last good checkpoint {run.checkpoint_path} (epoch {epoch - 1}) and the "
                    f"metrics of epochs 1-{epoch - 1} in {run.metrics_path}"
                )
            else:
                kept = "nothing trained (it failed in the first epoch)"
            raise TrainingDiverged(
                f"{e}; training stopped. Kept: {kept}. Try a smaller --lr."
            ) from None
        t0 = time.perf_counter()
        metrics = _evaluate_epoch(prepared, test_x, epoch)
        eval_seconds = time.perf_counter() - t0
        row = {
            "epoch": epoch,
            "objective": c.objective,
            "objective_label": objective_label(c, model)[0],
            "family": c.family,
            "kl_weight": kl_weight_at(c.kl_weight, c.kl_warmup_epochs, epoch),
            "train_loss": stats.train_loss,
            "train_elbo": stats.train_elbo,
            "train_recon": stats.train_recon,
            "train_kl": stats.train_kl,
            **metrics,
            "train_seconds": stats.train_seconds,
            "eval_seconds": eval_seconds,
        }
        run.append_metrics(row)
        save_checkpoint(run.checkpoint_path, model=model, optimizer=optimizer, epoch=epoch)
        bar.close(_epoch_line(row))

    if not finalized:
        seed_everything(epoch_seed(c.seed, 0, "finalize"))
        model.finalize(_finalize_data(ds.train_x, c.binarize).to(prepared.device))
        save_checkpoint(
            run.checkpoint_path,
            model=model,
            optimizer=optimizer,
            epoch=c.epochs,
            extra={"finalized": True},
        )
    t0 = time.perf_counter()
    summary = _evaluate_summary(prepared, test_x)
    rows = run.read_metrics()
    summary.update(summary_labels(c, model))
    summary.update(
        epochs=len(rows),
        seconds_per_epoch=sum(r["train_seconds"] for r in rows) / max(len(rows), 1),
        eval_seconds_per_epoch=sum(r["eval_seconds"] for r in rows) / max(len(rows), 1),
        summary_seconds=time.perf_counter() - t0,
        threads=prepared.threads,
        device=str(prepared.device),
        dataset_label=getattr(ds, "label", c.dataset),
    )
    run.write_summary(summary)
    return summary


def _finalize_data(train_x: torch.Tensor, binarize: str) -> torch.Tensor:
    """Training images for `VAE.finalize` (the autoencoder's mixture fit): thresholded when
    the run trained on thresholded pixels; grey levels otherwise (dynamic binarization's
    expectation)."""
    if binarize == "threshold":
        from binaryvae.data import to_float

        return to_float(train_x, "threshold")
    return train_x


def _value_name(config: TrainConfig, model: Any) -> str:
    """What the training value of an epoch line is: the objective trained on, by its name."""
    from binaryvae.evaluation.summary import has_likelihood

    if not has_likelihood(model):
        return "train recon"  # the autoencoder's loss: log p(x | code), no KL
    return f"train {config.objective}"


def _epoch_line(row: dict[str, Any]) -> str:
    """The tail of the one-line epoch summary: the test bounds that exist for this family."""
    parts = []
    for key, short in (
        ("test_relaxed_elbo", "relaxed"),
        ("test_discrete_elbo", "discrete"),
        ("test_log_px_exact", "log p(x)"),
    ):
        value = row.get(key)
        if isinstance(value, int | float):
            parts.append(f"{short} {value:.2f}")
    if not parts and isinstance(row.get("test_recon"), int | float):  # the autoencoder: no bound
        parts.append(f"recon {row['test_recon']:.2f}")
    parts.append(f"{row['train_seconds']:.1f}s+{row['eval_seconds']:.1f}s")
    return "test " + "  ".join(parts)
