"""Training: the only code in binaryvae that calls ``backward()`` and ``optimizer.step()``.

The pieces are small and independent so that the run layer (`binaryvae.runs`) can compose them:

- `set_threads`, `resolve_device`, `seed_everything`, `epoch_seed`, `tune_allocator` (setup.py):
  where and how a run computes, and the seeds that make CPU runs bit-for-bit reproducible;
- `make_optimizer` (optim.py): Adam (or SGD with momentum), fused where the device supports
  it; `lr_factor` and `set_epoch_lr`: the learning rate of an epoch under a one-time decay;
- `fit_epoch`, `kl_weight_at`, `NonFiniteLoss`, `EpochStats` (loop.py): one pass over the
  training batches with a NaN/inf guard;
- `save_checkpoint`, `load_checkpoint` (checkpoint.py): atomic checkpoints holding everything
  `--resume` needs (model, optimizer, RNG states, epoch);
- `fit_classifier` (classifier.py): the supervised fit of the Fréchet-distance feature network;
- `EpochProgress` (progress.py): a tqdm bar per epoch, or one plain line per epoch off a terminal.
"""

from binaryvae.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_state,
    restore_rng_state,
    rng_state,
    save_checkpoint,
)
from binaryvae.training.classifier import fit_classifier
from binaryvae.training.loop import EpochStats, NonFiniteLoss, autocast, fit_epoch, kl_weight_at
from binaryvae.training.optim import lr_factor, make_optimizer, set_epoch_lr
from binaryvae.training.progress import EpochProgress
from binaryvae.training.setup import (
    bf16_support,
    check_precision,
    default_threads,
    epoch_seed,
    resolve_device,
    seed_everything,
    set_threads,
    tune_allocator,
)

__all__ = [
    "bf16_support",
    "check_precision",
    "autocast",
    "CheckpointError",
    "load_state",
    "EpochProgress",
    "EpochStats",
    "NonFiniteLoss",
    "default_threads",
    "epoch_seed",
    "fit_classifier",
    "fit_epoch",
    "kl_weight_at",
    "load_checkpoint",
    "lr_factor",
    "make_optimizer",
    "resolve_device",
    "restore_rng_state",
    "rng_state",
    "save_checkpoint",
    "seed_everything",
    "set_epoch_lr",
    "set_threads",
    "tune_allocator",
]
