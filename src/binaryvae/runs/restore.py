"""Rebuild a trained model from its run directory alone: config.json + checkpoints/last.pt.

`load_run` (binaryvae.runs.build) also loads the run's dataset, which evaluation and the report
need. Generating from the prior needs only the model: the dataset's geometry (values per
example, image shape, data kind) comes from the registry (`binaryvae.data.dataset_geometry`),
so `binaryvae sample` works where the training data are not available (a Fashion-MNIST run on
a machine without Fashion-MNIST).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from binaryvae.config import TrainConfig
from binaryvae.errors import BadInput
from binaryvae.runs.directory import RunDir, is_run_dir

__all__ = ["TrainedModel", "load_model"]


@dataclass
class TrainedModel:
    """A run's model, rebuilt without its data."""

    config: TrainConfig
    model: Any  # binaryvae.models.VAE in eval mode, on `device`
    device: torch.device
    data_dim: int  # D: values per example
    image_shape: tuple[int, int] | None  # (H, W) with H * W = D, or None for non-image data
    data_kind: str  # "image" or "real"


def load_model(path: str | Path, device: str | None = None) -> TrainedModel:
    """The model of run directory ``path`` with its last checkpoint loaded; no dataset is read.

    Raises BadInput when ``path`` is not a run directory, has no checkpoint, names a dataset
    the registry does not know, or describes a model beyond this machine's memory.
    """
    from binaryvae.data import dataset_geometry
    from binaryvae.models import build_model
    from binaryvae.training import load_checkpoint, load_state, resolve_device
    from binaryvae.training.checkpoint import checkpoint_schema

    run = RunDir(path)
    if not is_run_dir(run.path):
        raise BadInput(f"{path} is not a run directory (no config.json)")
    config = run.read_config()
    if not run.checkpoint_path.is_file():
        raise BadInput(f"{path} has no checkpoint ({run.checkpoint_path}); train it first")
    data_dim, image_shape, kind = dataset_geometry(config.dataset)
    where = resolve_device(device or config.device)
    from binaryvae.runs.build import check_run_memory

    check_run_memory(config, (data_dim, image_shape, kind), device=where)  # before allocating
    model = build_model(config, data_dim=data_dim, image_shape=image_shape, data_kind=kind)
    schema = checkpoint_schema(config, model, source=str(run.config_path))
    state = load_checkpoint(run.checkpoint_path, map_location=where, schema=schema)
    load_state(model, state["model"], run.checkpoint_path)
    model.to(where).eval()
    return TrainedModel(config, model, where, data_dim, image_shape, kind)
