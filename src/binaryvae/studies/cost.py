"""What a study costs on this machine: CPU-hours from seconds per training step measured now.

For every distinct model of a study's cells (family, objective, network, latent size, batch
size and the options that change a step's work) a few training steps are timed here, in this
process, on one thread, in CPU time (`time.process_time`): the model built exactly as its runs
build it (`binaryvae.runs.build.prepare`), trained by `binaryvae.training.fit_epoch` on
mnist-mini images (every dataset of the studies has 784 pixels per image, so a step costs the
same). A run's cost is its optimizer steps
times that time; a cell's is that times its seeds (a replica group of S seeds is usually somewhat
cheaper than S single runs: docs/benchmarks.md, section 11). Evaluation (per-epoch rows, IWAE,
the summary) is not counted.
"""

from __future__ import annotations

import math
import time
from itertools import islice
from typing import Any

from binaryvae.config import TrainConfig

__all__ = ["MEASURED_STEPS", "cost_key", "seconds_per_step", "steps_per_run", "study_cost"]

MEASURED_STEPS = 10  # timed steps per distinct model (after WARMUP_STEPS untimed ones)
WARMUP_STEPS = 2
_DATA: dict[str, Any] = {}
# the fields that change a training step's work (the rest -- lr, beta, seed, the budget,
# evaluation -- do not)
_COST_FIELDS = ("family", "objective", "latent_dim", "hidden", "activation", "network", "decoder",
                "prior", "batch_size", "binarize", "precision", "decoder_sample", "prior_sgd_lr",
                "grad_var_param_ema", "encoder_input", "decoder_input",
                "gmm_components")  # fmt: skip


def cost_key(config: TrainConfig) -> tuple:
    """What identifies a model's cost per step: `_COST_FIELDS` and its family options."""
    return tuple(repr(getattr(config, f)) for f in _COST_FIELDS) + (
        repr(sorted(config.extra.items())),
    )


def steps_per_run(config: TrainConfig) -> int:
    """Optimizer steps of one run of ``config``: its step budget, or its epochs times the
    batches per epoch of its dataset's training split (`binaryvae.data.DATASETS` sizes, less
    the validation images)."""
    if config.steps is not None:
        return int(config.steps)
    from binaryvae.data import DATASETS

    train = DATASETS[config.dataset].sizes[0] - (config.validation or 0)
    return int(config.epochs) * math.ceil(max(train, 1) / config.batch_size)


def seconds_per_step(config: TrainConfig, steps: int = MEASURED_STEPS) -> float:
    """CPU seconds per optimizer step of one run of ``config`` on this machine, one thread,
    measured over ``steps`` steps (after `WARMUP_STEPS`) on mnist-mini images: the process's
    CPU time, so that other work on the machine slows the measurement but hardly changes it."""
    import torch

    from binaryvae.data import EpochBatches
    from binaryvae.runs.build import prepare
    from binaryvae.training import fit_epoch, make_optimizer

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
    prepared = prepare(probe, dataset=_DATA["mnist-mini"], memory=False)
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


def study_cost(study, budget: str, measured: dict[tuple, float] | None = None,
               measure=None) -> dict[str, Any]:  # fmt: skip
    """``{"cells", "seeds", "steps" (per run, sorted distinct), "cpu_hours", "models" (distinct
    models timed)}`` of ``study``'s ``budget``. ``measured``: a cache of `cost_key` -> seconds
    per step shared between calls (filled here); ``measure``: how a model is timed."""
    measured = {} if measured is None else measured
    measure = seconds_per_step if measure is None else measure
    cells = study.grid(budget).cells()
    seconds = 0.0
    steps = set()
    keys = set()
    for cell in cells:
        key = cost_key(cell.config)
        keys.add(key)
        if key not in measured:
            measured[key] = measure(cell.config)
        n = steps_per_run(cell.config)
        steps.add(n)
        seconds += measured[key] * n * len(cell.seeds)
    return {
        "cells": len(cells),
        "seeds": len(cells[0].seeds) if cells else 0,
        "steps": sorted(steps),
        "cpu_hours": seconds / 3600.0,
        "models": len(keys),
    }
