"""What a study costs on this machine: CPU-hours of training and of evaluation, measured now.

For every distinct model of a study's cells (family, objective, network, latent size, batch
size and the options that change a step's work) a few training steps are timed here, in this
process, on one thread, in CPU time (`time.process_time`): the model built exactly as its runs
build it (`binaryvae.runs.build.prepare`), trained by `binaryvae.training.fit_epoch` on
mnist-mini images (every dataset of the studies has 784 pixels per image, so a step costs the
same). The same model's evaluation is timed per image on a few mnist-mini test images, with
the functions its runs call: a metrics row's evaluation (`binaryvae.evaluation.evaluate_epoch`,
with its IWAE where the run asks for one), the trackers (`binaryvae.evaluation.trackers`) and
the summary (`binaryvae.evaluation.evaluate_summary`, its IWAE, exact log p(x) and sample FD).

A run's cost is

    steps x s/step
    + rows x test images x s/image of a row (rows with the IWAE at their own cost)
    + rows x tracked images x s/image of the trackers
    + gradient diagnostics x grad_samples x s/step (counted as that many training steps)
    + test images x s/image of the summary
    + summary_grad_samples x summary_grad_images / batch size x s/step (the gradient bias
      after training, `binaryvae.diagnostics.final`: each estimate counted as a training step
      on that many images)

(`run_cost`); a cell's is that times its seeds (a replica group of S seeds is usually somewhat
cheaper than S single runs: docs/benchmarks.md, section 11). Scaling per image assumes an
evaluation's cost grows with its images; the FD's fixed part (a covariance square root) and
the feature classifier's one-time fit are not scaled. A measurement made while other work
loads the machine reads high or low by that much (CPU time hides most of it, not all).
"""

from __future__ import annotations

import math
import time
from itertools import islice
from typing import Any

from binaryvae.config import TrainConfig

__all__ = [
    "EVAL_IMAGES",
    "MEASURED_STEPS",
    "SUMMARY_IMAGES",
    "cost_key",
    "eval_key",
    "evaluation_counts",
    "run_cost",
    "seconds_per_image",
    "seconds_per_step",
    "steps_per_run",
    "study_cost",
]

MEASURED_STEPS = 10  # timed steps per distinct model (after WARMUP_STEPS untimed ones)
EVAL_IMAGES = 200  # test images a row's evaluation and the trackers are timed on
SUMMARY_IMAGES = 200  # test images (and FD samples) the summary is timed on
WARMUP_IMAGES = 10  # each evaluation runs once untimed on these first (its first call's set-up)
WARMUP_STEPS = 2
_DATA: dict[str, Any] = {}
# the fields that change a training step's work (the rest -- lr, beta, seed, the budget,
# evaluation -- do not)
_COST_FIELDS = ("family", "objective", "latent_dim", "hidden", "activation", "network", "decoder",
                "prior", "batch_size", "binarize", "precision", "decoder_sample", "prior_sgd_lr",
                "grad_var_param_ema", "encoder_input", "decoder_input",
                "gmm_components", "optimizer", "logit_clamp")  # fmt: skip


def cost_key(config: TrainConfig) -> tuple:
    """What identifies a model's cost per step: `_COST_FIELDS` and its family options."""
    return tuple(repr(getattr(config, f)) for f in _COST_FIELDS) + (
        repr(sorted(config.extra.items())),
    )


def _train_images(config: TrainConfig) -> int:
    from binaryvae.data import DATASETS

    return max(DATASETS[config.dataset].sizes[0] - (config.validation or 0), 1)


def steps_per_run(config: TrainConfig) -> int:
    """Optimizer steps of one run of ``config``: its step budget, or its epochs times the
    batches per epoch of its dataset's training split (`binaryvae.data.DATASETS` sizes, less
    the validation images)."""
    if config.steps is not None:
        return int(config.steps)
    return int(config.epochs) * math.ceil(_train_images(config) / config.batch_size)


def evaluation_counts(config: TrainConfig) -> dict[str, int]:
    """What one run of ``config`` evaluates: ``rows`` (metrics rows: every epoch's end, every
    ``eval_every_steps`` steps, the budget's end; `binaryvae.runs.budget.Budget.is_row`),
    ``iwae_rows`` (those with the test IWAE: every ``eval_iwae_every`` epochs and the last),
    ``grad`` (gradient diagnostics: every ``grad_every`` steps), ``test_images`` (the test
    split, `binaryvae.data.DATASETS`) and ``track_images`` (0 without trackers)."""
    from binaryvae.data import DATASETS

    total = steps_per_run(config)
    per_epoch = math.ceil(_train_images(config) / config.batch_size)
    every = config.eval_every_steps
    rows = total // per_epoch
    if every:
        rows += total // every - total // math.lcm(per_epoch, every)
    last_counted = total % per_epoch == 0 or bool(every and total % every == 0)
    rows += 0 if last_counted else 1
    iwae_rows = 0
    if config.eval_iwae_every:
        full = total // per_epoch  # epochs that end inside the budget
        iwae_rows = full // config.eval_iwae_every
        if not (total % per_epoch == 0 and full % config.eval_iwae_every == 0):
            iwae_rows += 1  # the last row
    test = DATASETS[config.dataset].sizes[1]
    return {
        "rows": rows,
        "iwae_rows": iwae_rows,
        "grad": total // config.grad_every if config.grad_every else 0,
        "test_images": test,
        "track_images": min(config.track_images, test) if config.track else 0,
    }


def run_cost(config: TrainConfig, step: float, image: dict[str, float]) -> dict[str, float]:
    """CPU seconds of one run of ``config`` from ``step`` (seconds per training step) and
    ``image`` (`seconds_per_image`): ``train`` (steps x step), ``eval`` (its rows, IWAE,
    trackers and gradient diagnostics), ``summary`` (the summary's evaluation and, with
    ``summary_grad_samples``, its gradient measurement: each estimate a step on
    ``summary_grad_images`` images, at most the test split, instead of a batch)."""
    n = evaluation_counts(config)
    grad_images = min(config.summary_grad_images, n["test_images"])
    final_grad = config.summary_grad_samples * grad_images / config.batch_size * step
    rows = (n["rows"] - n["iwae_rows"]) * image["row"] + n["iwae_rows"] * image["row_iwae"]
    return {
        "train": steps_per_run(config) * step,
        "eval": rows * n["test_images"]
        + n["rows"] * n["track_images"] * image["track"]
        + n["grad"] * config.grad_samples * step,
        "summary": n["test_images"] * image["summary"] + final_grad,
    }


def eval_key(config: TrainConfig) -> tuple:
    """What identifies a model's evaluation cost per image: `cost_key` and the evaluation's
    options."""
    return cost_key(config) + (
        config.eval_samples, config.eval_iwae_k if config.eval_iwae_every else 0,
        config.summary_iwae_k, tuple(config.track),
    )  # fmt: skip


def _probe(config: TrainConfig):
    """``config``'s model built as its runs build it, on mnist-mini, one thread, CPU."""
    d = config.to_dict()
    d.update(dataset="mnist-mini", validation=0, seed=0, threads=1, device="cpu", data_dir=None,
             steps=None, epochs=1, grad_every=0, eval_iwae_every=0, data_fingerprint=None,
             data_source=None)  # fmt: skip
    if d.get("protocol") is not None:
        d["protocol_overrides"] = None
    probe = TrainConfig.from_dict(d)
    if "mnist-mini" not in _DATA:  # loaded once per process
        from binaryvae.data import load_dataset

        _DATA["mnist-mini"] = load_dataset("mnist-mini")
    from binaryvae.runs.build import prepare

    return probe, prepare(probe, dataset=_DATA["mnist-mini"], memory=False)


def seconds_per_step(config: TrainConfig, steps: int = MEASURED_STEPS) -> float:
    """CPU seconds per optimizer step of one run of ``config`` on this machine, one thread,
    measured over ``steps`` steps (after `WARMUP_STEPS`) on mnist-mini images: the process's
    CPU time, so that other work on the machine slows the measurement but hardly changes it."""
    import torch

    from binaryvae.data import EpochBatches
    from binaryvae.training import fit_epoch, make_optimizer

    probe, prepared = _probe(config)
    model = prepared.model
    optimizer = make_optimizer(model, probe.lr)
    batches = EpochBatches(prepared.dataset.train_x, batch_size=probe.batch_size,
                           binarize=probe.binarize, seed=0)  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    stream = batches.epoch(1)
    kwargs = dict(epoch=1, objective=probe.objective, generator=generator)
    fit_epoch(model, optimizer, list(islice(stream, WARMUP_STEPS)), **kwargs)
    timed = list(islice(stream, steps))
    start = time.process_time()  # CPU time: what a busy neighbour's load does not inflate
    fit_epoch(model, optimizer, timed, **kwargs)
    return (time.process_time() - start) / max(len(timed), 1)


def seconds_per_image(
    config: TrainConfig, images: int = EVAL_IMAGES, summary_images: int = SUMMARY_IMAGES
) -> dict[str, float]:
    """CPU seconds per test image of ``config``'s evaluations, measured on mnist-mini test
    images with an untrained model of ``config`` (one thread; each evaluation run once untimed
    on `WARMUP_IMAGES` images first): ``row`` (a metrics row's
    `binaryvae.evaluation.evaluate_epoch`), ``row_iwae`` (the same with its
    ``eval_iwae_k``-sample IWAE; = ``row`` where the run asks for none), ``track`` (per tracked
    image, the trackers of ``config.track``; 0 without) and ``summary``
    (`binaryvae.evaluation.evaluate_summary` with the sample FD of as many samples as images,
    none where ``summary_fd_samples`` is 0; the feature classifier fitted first if it is not
    cached, untimed)."""
    import torch

    from binaryvae.data import test_tensor
    from binaryvae.evaluation import evaluate_epoch, evaluate_summary

    probe, prepared = _probe(config)
    model = prepared.model
    ds = prepared.dataset
    x = test_tensor(ds.test_x[:images], binarize=probe.binarize, seed=0)
    rng = torch.get_rng_state()

    def timed(fn) -> float:
        fn(x[:WARMUP_IMAGES])  # untimed: the first call's one-time set-up
        start = time.process_time()
        fn(x)
        return time.process_time() - start

    out = {"row": timed(lambda v: evaluate_epoch(model, v, samples=probe.eval_samples, seed=0))}
    out["row_iwae"] = out["row"]
    if config.eval_iwae_every:
        out["row_iwae"] = timed(lambda v: evaluate_epoch(model, v, samples=probe.eval_samples,
                                                         seed=0, iwae_k=config.eval_iwae_k))
    out = {k: v / len(x) for k, v in out.items()}
    out["track"] = 0.0
    if config.track:
        from binaryvae.evaluation.trackers import Tracker, track_subset

        tracked = track_subset(ds.test_x, probe.binarize, min(images, config.track_images))
        tracker = Tracker(tracked, config.track)
        tracker.measure(model)  # a first row (untimed): the flips of the second are timed too
        start = time.process_time()
        tracker.measure(model)
        out["track"] = (time.process_time() - start) / len(tracked)
    from binaryvae.training.classifier import fd_features

    features = fd_features(ds, config.summary_fd_samples)  # fitted (untimed) if not cached
    x = test_tensor(ds.test_x[:summary_images], binarize=probe.binarize, seed=0)
    out["summary"] = timed(lambda v: evaluate_summary(model, v, features=features, seed=0,
                                                      fd_samples=len(v))) / len(x)
    torch.set_rng_state(rng)
    return out


def study_cost(study, budget: str, measured: dict[tuple, Any] | None = None, measure=None,
               measure_eval=None) -> dict[str, Any]:  # fmt: skip
    """``{"cells", "seeds", "steps" (per run, sorted distinct), "cpu_hours" (the sum of
    "train_hours", "eval_hours" and "summary_hours"), "models" (distinct models timed)}`` of
    ``study``'s ``budget``, each run costed by `run_cost`. ``measured``: a cache shared between
    calls (filled here); ``measure``: how a training step is timed (`seconds_per_step`),
    ``measure_eval``: how an evaluation is (`seconds_per_image`)."""
    measured = {} if measured is None else measured
    measure = seconds_per_step if measure is None else measure
    measure_eval = seconds_per_image if measure_eval is None else measure_eval
    cells = study.grid(budget).cells()
    seconds = {"train": 0.0, "eval": 0.0, "summary": 0.0}
    steps = set()
    keys = set()
    for cell in cells:
        key, ekey = ("step",) + cost_key(cell.config), ("eval",) + eval_key(cell.config)
        keys.add(key)
        if key not in measured:
            measured[key] = measure(cell.config)
        if ekey not in measured:
            measured[ekey] = measure_eval(cell.config)
        steps.add(steps_per_run(cell.config))
        for part, value in run_cost(cell.config, measured[key], measured[ekey]).items():
            seconds[part] += value * len(cell.seeds)
    return {
        "cells": len(cells),
        "seeds": len(cells[0].seeds) if cells else 0,
        "steps": sorted(steps),
        "train_hours": seconds["train"] / 3600.0,
        "eval_hours": seconds["eval"] / 3600.0,
        "summary_hours": seconds["summary"] / 3600.0,
        "cpu_hours": sum(seconds.values()) / 3600.0,
        "models": len(keys),
    }
