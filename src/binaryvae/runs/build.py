"""Building a run from its configuration or its directory: dataset, model, device, test data.

`prepare` validates a `TrainConfig` completely and builds what it describes, writing nothing;
`load_run` rebuilds a finished (or interrupted) run from its directory and loads its checkpoint
(safely, checked against the model its config builds: `binaryvae.training.load_checkpoint`).
Everything that reads run directories (evaluate, sample, the report) goes through `load_run`.

A run remembers its data: `prepare` records the dataset's fingerprint and where it was found in
the config (config.json's ``data_fingerprint`` and ``data_source``), and refuses a dataset whose
fingerprint differs from the one a config already records (`DatasetChanged`, naming where the
data were when the run trained and where they were found now). So `evaluate`, the report and
`train --resume` never score or continue a run on other data than it trained on. A config.json
without a fingerprint (written before 0.2.0) is accepted with the data found now; a resume
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
from binaryvae.training.checkpoint import checkpoint_schema

__all__ = [
    "MIN_TEST_EXAMPLES",
    "DatasetChanged",
    "Prepared",
    "build_replica_model",
    "check_data_fingerprint",
    "check_dataset",
    "check_run_data",
    "check_run_memory",
    "estimate_run",
    "load_run",
    "prepare",
    "split_validation",
    "test_data",
]

# The sample Frechet distance fits a covariance to the test split's features (denominator
# N - 1): one test example leaves it undefined.
MIN_TEST_EXAMPLES = 2

class DatasetChanged(BadInput):
    """The data found now are not the data a run was trained on (their fingerprints differ)."""


def _changed(config: TrainConfig, where: str, fingerprint: str, source: str) -> DatasetChanged:
    return DatasetChanged(
        f"{where}: the {config.dataset} data found now at {source} (fingerprint "
        f"{fingerprint[:12]}) are not the data it was trained on at {config.data_source} "
        f"(fingerprint {config.data_fingerprint[:12]}, recorded in its config); make those "
        "findable again (where they were, or $BINARYVAE_DATA_DIR)"
    )


def check_data_fingerprint(config: TrainConfig, dataset: Any, where: str) -> None:
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


def prepare(
    config: TrainConfig,
    dataset: Any = None,
    where: str = "",
    *,
    replicas: int = 1,
    memory: bool = True,
    training: bool = True,
) -> Prepared:
    """Check ``config`` fully and build its dataset and model (seeded); write nothing.

    ``dataset``: an already loaded dataset to reuse (the replicas of one group share theirs).
    ``replicas``: how many seeds of ``config`` will train at once, stacked (the memory check
    counts them all). ``memory``: check the estimated memory of the run against what this
    machine has (`check_run_memory`) before the dataset is loaded or the model built.
    ``training``: the run will train (False: a finished run is rebuilt to be scored).
    Raises BadInput for unknown names or impossible combinations (from data and models), for a
    precision the device cannot run fast (`binaryvae.training.check_precision`), for trackers
    on a family without a binary latent, for ``tensorboard`` without its extra, for a run
    that would not fit in memory, and for a dataset whose images are not the shape the model
    is built for or whose splits are too small (`check_dataset`); `DatasetChanged` (message
    starting with ``where``) when ``config`` records another dataset fingerprint than the
    data's. Records the data's fingerprint and source in ``config`` (module docstring).
    """
    from binaryvae.data import DATASETS, dataset_geometry, load_dataset

    config.validate()
    threads = set_threads(config.threads)
    device = resolve_device(config.device)
    check_precision(config.precision, device)
    geometry = dataset_geometry(config.dataset)
    if memory:
        sizes = None if dataset is not None else DATASETS[config.dataset].sizes
        check_run_memory(config, geometry, replicas=replicas, sizes=sizes, device=device)
    if dataset is None:
        dataset = load_dataset(config.dataset, data_dir=config.data_dir, image_shape=geometry[1])
    check_data_fingerprint(config, dataset, where or f"the {config.dataset} run")
    dataset = split_validation(dataset, config)
    check_dataset(dataset, config, geometry, training=training)
    model = build_replica_model(config, dataset)
    _check_record_options(config, model, training)
    return Prepared(config, dataset, model.to(device), device, threads)


def _check_record_options(config: TrainConfig, model: torch.nn.Module, training: bool) -> None:
    """BadInput for trackers (``track``) on a family without a binary latent (they read its
    bit logits), for ``summary_grad_samples`` on one without a binary latent and a likelihood
    or above the enumeration limit (`binaryvae.diagnostics.final.check_final_gradient`) and,
    for a run that will train, for ``tensorboard`` without the optional extra installed."""
    from binaryvae.diagnostics.final import check_final_gradient

    check_final_gradient(model, config)
    if config.track and not getattr(model.family, "binary", False):
        raise BadInput(
            f"track {','.join(config.track)} follows the bits of a binary latent; family "
            f"{config.family!r} has none (its latent is not Bernoulli)"
        )
    if config.tensorboard and training:
        from binaryvae.runs.tensorboard import require_tensorboard

        require_tensorboard()


def estimate_run(
    config: TrainConfig,
    data_dim: int,
    image_shape: tuple[int, int] | None,
    data_kind: str,
    *,
    replicas: int = 1,
    sizes: tuple[int, int] | None = None,
) -> Any:
    """The memory a run of ``config`` needs (`binaryvae.resources.estimate`: model, optimizer,
    activations, data), ``replicas`` stacked seeds at once, on data of ``data_dim`` values;
    ``sizes`` (train, test) adds the dataset. The model is counted on the meta device
    (`binaryvae.models.size.count_model`), a batch is the larger of the training batch and the
    evaluation's (`binaryvae.evaluation.summary.BATCH`)."""
    from binaryvae.evaluation.summary import BATCH
    from binaryvae.models.size import count_model
    from binaryvae.resources import estimate

    parameters, buffers, widths, element = count_model(config, data_dim, image_shape, data_kind)
    return estimate(
        parameters=parameters,
        buffers=buffers,
        widths=widths,
        rows=max(int(config.batch_size), BATCH),
        replicas=replicas,
        element=element,
        data_dim=data_dim,
        data_kind=data_kind,
        sizes=sizes,
    )


def check_run_memory(
    config: TrainConfig,
    geometry: tuple[int, tuple[int, int] | None, str],
    *,
    replicas: int = 1,
    sizes: tuple[int, int] | None = None,
    device: Any = None,
) -> None:
    """BadInput (one line: the estimate, what it is made of, the memory available) when a run
    of ``config`` -- ``replicas`` seeds at once, on a dataset of ``geometry`` (data_dim,
    image_shape, kind) and ``sizes`` (train, test; None: already loaded) -- would not fit:
    its model and activations in the memory of ``device``, its data in this machine's
    (`binaryvae.resources`). Nothing is allocated."""
    from binaryvae.resources import check_memory

    estimate = estimate_run(config, *geometry, replicas=replicas, sizes=sizes)
    what = f"training {replicas} replicas of this configuration" if replicas > 1 else "this run"
    on_gpu = getattr(device, "type", None) == "cuda"
    if on_gpu:  # the model, its activations and the float test split on the GPU; the rest here
        on_device = estimate.model_bytes + estimate.activation_bytes + estimate.test_float_bytes
        check_memory(on_device, f"{what} on {device}", estimate.describe(), device=device)
        check_memory(estimate.data_bytes - estimate.test_float_bytes, f"the data of {what}",
                     estimate.describe())  # fmt: skip
    else:
        check_memory(estimate.total, what, estimate.describe())


def check_dataset(
    dataset: Any,
    config: TrainConfig,
    geometry: tuple[int, tuple[int, int] | None, str],
    *,
    training: bool = True,
) -> None:
    """BadInput naming the dataset, the split and its size when ``dataset`` cannot train or
    score ``config``'s model: images of another shape than the model is built for (the
    registry's ``geometry``, which `sample` and the report rebuild the model with), fewer
    training examples than one batch (``training``; else none at all: scoring fits the
    feature classifier on them), fewer than `MIN_TEST_EXAMPLES` test examples, or (for
    autoencoder-gmm) fewer training examples than mixture components."""
    from binaryvae.data.datasets import shape_text

    data_dim, image_shape, kind = geometry
    where = config.dataset + (f" ({dataset.source})" if getattr(dataset, "source", "") else "")
    own = getattr(dataset, "image_shape", None)
    if own != image_shape or int(dataset.train_x.shape[1]) != data_dim:
        mine = shape_text(own) if own else f"{int(dataset.train_x.shape[1])} values"
        theirs = shape_text(image_shape) if image_shape else f"{data_dim} values"
        raise BadInput(
            f"{where}: its examples are {mine}, but {config.dataset} models are built for {theirs}"
        )
    noun = "image" if kind == "image" else "example"
    n_train, n_test = int(dataset.train_x.shape[0]), int(dataset.test_x.shape[0])

    def holds(n: int) -> str:
        return f"{n} {noun}" + ("" if n == 1 else "s")

    if training and n_train < config.batch_size:
        raise BadInput(
            f"{where}: the training split holds {holds(n_train)}, fewer than one batch "
            f"(batch size {config.batch_size})"
        )
    if n_train == 0:
        raise BadInput(f"{where}: the training split holds no {noun}s")
    if n_test < MIN_TEST_EXAMPLES:
        raise BadInput(
            f"{where}: the test split holds {holds(n_test)}; scoring a run needs at least "
            f"{MIN_TEST_EXAMPLES} (the sample Frechet distance fits a covariance)"
        )
    if config.family == "autoencoder-gmm" and n_train < config.gmm_components:
        raise BadInput(
            f"{where}: the training split holds {holds(n_train)}, fewer than the "
            f"{config.gmm_components} mixture components (gmm_components) to fit"
        )


def split_validation(dataset: Any, config: TrainConfig) -> Any:
    """``dataset`` with the validation split ``config.validation`` asks for
    (`binaryvae.data.with_validation`: the last N training examples); BadInput naming the
    dataset when it holds too few. A dataset made in memory without the field passes as is
    when none is asked for."""
    from binaryvae.data import with_validation

    n = getattr(config, "validation", 0)
    if not n and getattr(dataset, "valid_x", None) is None:
        return dataset
    return with_validation(dataset, n)


def build_replica_model(config: TrainConfig, dataset: Any) -> torch.nn.Module:
    """The model of ``config`` on ``dataset``, initialised from ``config.seed`` exactly as a
    single run with that seed initialises it (on the CPU). The training split's mean
    (`binaryvae.data.train_mean`) is computed when the config's protocol options use it."""
    from binaryvae.models import build_model

    mean = None
    if (getattr(config, "encoder_input", "raw") == "centred"
            or getattr(config, "decoder_bias", "default") == "data-mean"):  # fmt: skip
        from binaryvae.data import train_mean

        train_x = dataset.train_x
        if getattr(config, "validation", 0) and getattr(dataset, "valid_x", None) is None:
            train_x = split_validation(dataset, config).train_x
        mean = train_mean(train_x, config.binarize)
    seed_everything(config.seed)
    return build_model(
        config,
        data_dim=dataset.train_x.shape[1],
        image_shape=dataset.image_shape,
        data_kind=dataset.kind,
        data_mean=mean,
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
    # memory checked before the model is built; the data against the fingerprint config records
    prepared = prepare(config, dataset=dataset, where=str(path), training=False)
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
