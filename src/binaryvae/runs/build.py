"""Building a run from its configuration or its directory: dataset, model, device, test data.

`prepare` validates a `TrainConfig` completely and builds what it describes, writing nothing;
`load_run` rebuilds a finished (or interrupted) run from its directory and loads its checkpoint
(safely: `binaryvae.training.load_checkpoint`). Everything that reads run directories (evaluate,
sample, the report) goes through `load_run`.

A run remembers its data: `prepare` records the dataset's fingerprint and where it was found in
the config (config.json's ``data_fingerprint`` and ``data_source``), and refuses a dataset whose
fingerprint differs from the one a config already records (`DatasetChanged`, naming where the
data were when the run trained and where they were found now). So `evaluate`, the report and
`train --resume` never score or continue a run on other data than it trained on. A config.json
without a fingerprint (written before 0.3) is accepted with the data found now; a resume
records their fingerprint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from binaryvae.config import TrainConfig
from binaryvae.errors import BadInput
from binaryvae.runs.directory import RunDir, is_run_dir
from binaryvae.training import (
    check_precision,
    load_checkpoint,
    load_state,
    resolve_device,
    seed_everything,
    set_threads,
)

__all__ = [
    "DatasetChanged",
    "Prepared",
    "build_replica_model",
    "check_dataset",
    "check_run_data",
    "load_run",
    "prepare",
    "test_data",
]


class DatasetChanged(BadInput):
    """The data found now are not the data a run was trained on (their fingerprints differ)."""


def _changed(config: TrainConfig, where: str, fingerprint: str, source: str) -> DatasetChanged:
    return DatasetChanged(
        f"{where}: the {config.dataset} data found now at {source} (fingerprint "
        f"{fingerprint[:12]}) are not the data it was trained on at {config.data_source} "
        f"(fingerprint {config.data_fingerprint[:12]}, recorded in its config); make those "
        "findable again (where they were, or $BINARYVAE_DATA_DIR)"
    )


def check_dataset(config: TrainConfig, dataset: Any, where: str) -> None:
    """`DatasetChanged` (message starting with ``where``) unless ``dataset`` has the
    fingerprint ``config`` records; then (or when it records none) record the dataset's
    fingerprint and where it was found in ``config``."""
    fingerprint = getattr(dataset, "fingerprint", "")
    if not fingerprint:
        return  # a dataset made in memory (tests), not loaded by binaryvae.data
    source = getattr(dataset, "source", "") or config.dataset
    if config.data_fingerprint is not None and config.data_fingerprint != fingerprint:
        raise _changed(config, where, fingerprint, source)
    config.data_fingerprint, config.data_source = fingerprint, source


def check_run_data(path: str | Path, config: TrainConfig) -> None:
    """`DatasetChanged` when the data ``config`` (of run ``path``) would be loaded from now are
    not the ones it records; nothing when it records none, or when they are found nowhere
    without downloading (what needs them says so). Reads the files, loads nothing."""
    from binaryvae.data.datasets import fingerprint_found

    if config.data_fingerprint is None:
        return
    found = fingerprint_found(config.dataset, config.data_dir)
    if found is not None and found[0] != config.data_fingerprint:
        raise _changed(config, str(path), *found)


@dataclass
class Prepared:
    """A validated run, built but not yet trained (nothing written yet)."""

    config: TrainConfig
    dataset: Any
    model: torch.nn.Module
    device: torch.device
    threads: int


def prepare(config: TrainConfig, dataset: Any = None, where: str = "") -> Prepared:
    """Check ``config`` fully and build its dataset and model (seeded); write nothing.

    ``dataset``: an already loaded dataset to reuse (the replicas of one group share theirs).
    Raises BadInput for unknown names or impossible combinations (from data and models), and
    for a precision the device cannot run fast (`binaryvae.training.check_precision`);
    `DatasetChanged` (message starting with ``where``) when ``config`` records another
    dataset fingerprint than the data's. Records the data's fingerprint and source in
    ``config`` (module docstring).
    """
    from binaryvae.data import load_dataset

    config.validate()
    threads = set_threads(config.threads)
    device = resolve_device(config.device)
    check_precision(config.precision, device)
    if dataset is None:
        dataset = load_dataset(config.dataset, data_dir=config.data_dir)
    check_dataset(config, dataset, where or f"the {config.dataset} run")
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


def load_run(path: str | Path, device: str | None = None, dataset: Any = None) -> Prepared:
    """Rebuild a run's dataset and model from its directory and load checkpoints/last.pt.

    ``dataset``: data already loaded for another run of the same dataset and data_dir (a
    group shares them); they are checked against this run's fingerprint all the same.
    `DatasetChanged` when the data are not the ones the run was trained on.
    """
    run = RunDir(path)
    if not is_run_dir(run.path):
        raise BadInput(f"{path} is not a run directory (no config.json)")
    config = run.read_config()
    if device is not None:
        config.device = device
    if not run.checkpoint_path.is_file():
        raise BadInput(f"{path} has no checkpoint ({run.checkpoint_path}); train it first")
    state = load_checkpoint(run.checkpoint_path)  # refused before the model is even built
    prepared = prepare(config, dataset=dataset, where=str(path))
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
