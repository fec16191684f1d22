"""Building a run from its configuration or its directory: dataset, model, device, test data.

`prepare` validates a `TrainConfig` completely and builds what it describes, writing nothing;
`load_run` rebuilds a finished (or interrupted) run from its directory and loads its checkpoint
(safely, checked against the model its config builds: `binaryvae.training.load_checkpoint`).
Everything that reads run directories (evaluate, sample, the report) goes through `load_run`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from binaryvae.config import TrainConfig
from binaryvae.errors import BadInput
from binaryvae.runs.directory import RunDir
from binaryvae.training import (
    check_precision,
    load_checkpoint,
    load_state,
    resolve_device,
    seed_everything,
    set_threads,
)
from binaryvae.training.checkpoint import checkpoint_schema

__all__ = ["Prepared", "build_replica_model", "load_run", "prepare", "test_data"]


@dataclass
class Prepared:
    """A validated run, built but not yet trained (nothing written yet)."""

    config: TrainConfig
    dataset: Any
    model: torch.nn.Module
    device: torch.device
    threads: int


def prepare(config: TrainConfig, dataset: Any = None) -> Prepared:
    """Check ``config`` fully and build its dataset and model (seeded); write nothing.

    ``dataset``: an already loaded dataset to reuse (the replicas of one group share theirs).
    Raises BadInput for unknown names or impossible combinations (from data and models), and
    for a precision the device cannot run fast (`binaryvae.training.check_precision`).
    """
    from binaryvae.data import load_dataset

    config.validate()
    threads = set_threads(config.threads)
    device = resolve_device(config.device)
    check_precision(config.precision, device)
    if dataset is None:
        dataset = load_dataset(config.dataset, data_dir=config.data_dir)
    model = build_replica_model(config, dataset)
    return Prepared(config, dataset, model.to(device), device, threads)


def build_replica_model(config: TrainConfig, dataset: Any) -> torch.nn.Module:
    """The model of ``config`` on ``dataset``, initialised from ``config.seed`` exactly as a
    single run with that seed initialises it (on the CPU)."""
    from binaryvae.models import build_model

    seed_everything(config.seed)
    return build_model(
        config,
        data_dim=dataset.train_x.shape[1],
        image_shape=dataset.image_shape,
        data_kind=dataset.kind,
    )


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
    # checked against the model and optimizer the config builds before any of it is used
    schema = checkpoint_schema(config, prepared.model, source=str(run.config_path))
    state = load_checkpoint(run.checkpoint_path, schema=schema)
    load_state(prepared.model, state["model"], run.checkpoint_path)
    prepared.model.eval()
    return prepared


def test_data(prepared: Prepared) -> torch.Tensor:
    """The run's test split as float32 [N, D] on its device, in its pixel mode."""
    from binaryvae.data import test_tensor

    c = prepared.config
    return test_tensor(prepared.dataset.test_x, binarize=c.binarize, seed=c.seed).to(
        prepared.device
    )
