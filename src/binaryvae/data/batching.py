"""Epoch batches by shuffled index tensors, and the pixel modes (grey levels, threshold, dynamic).

The data stay in memory as one tensor (uint8 for images, float32 for real-valued data); a batch
is one gather by an index tensor and one conversion to float32. There is no DataLoader and no
per-image Python. Everything random in an epoch (the order, the dynamic-binarization draws)
depends only on ``(seed, epoch)``, so any epoch can be replayed on its own (exact resume).

Pixel modes (``binarize``), for uint8 images x:
- ``"none"``: grey levels x / 255 in [0, 1] (the dissertation's setting, a Bernoulli
  cross-entropy on grey levels);
- ``"threshold"``: 1 where x / 255 > 0.5, i.e. x >= 128 (the notes' setting);
- ``"dynamic"``: a fresh Bernoulli(x / 255) draw every epoch (the standard in the
  gradient-estimator literature). Test data is binarized once with a fixed seed
  (:func:`test_tensor`) so that evaluations are comparable across epochs and runs.
Real-valued data (the toy model) accepts only ``"none"``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch

from binaryvae.config import BINARIZE_MODES
from binaryvae.errors import BadInput

__all__ = ["EpochBatches", "test_tensor", "to_float", "train_mean", "derive_seed", "BINARIZE_MODES"]

# independent random streams derived from one seed
_STREAM_ORDER = 0
_STREAM_DYNAMIC = 1
_STREAM_TEST = 2


def derive_seed(*words: int) -> int:
    """A 63-bit torch seed from integers (seed, stream, epoch, ...), via numpy's SeedSequence.

    SeedSequence hashes its entropy words, so neighbouring (seed, epoch) pairs give unrelated
    streams, and its output is fixed across numpy versions.
    """
    state = np.random.SeedSequence([int(w) for w in words]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def _check_mode(x: torch.Tensor, binarize: str) -> None:
    if binarize not in BINARIZE_MODES:
        raise BadInput(
            f"unknown binarization {binarize!r}; choose one of {', '.join(BINARIZE_MODES)}"
        )
    if x.dtype != torch.uint8 and binarize != "none":
        raise BadInput(
            f"binarization {binarize!r} needs grey-level images; real-valued data "
            f"(e.g. the toy dataset) takes only 'none'"
        )
    if x.dim() != 2:
        raise BadInput(f"data must be a [N, D] tensor, got shape {tuple(x.shape)}")


def to_float(
    x: torch.Tensor, binarize: str = "none", generator: torch.Generator | None = None
) -> torch.Tensor:
    """Convert a batch ``[B, D]`` (uint8 images or float data) to float32 in the given mode.

    ``"dynamic"`` draws from ``generator`` (on x's device).
    """
    _check_mode(x, binarize)
    if x.dtype != torch.uint8:
        return x.to(torch.float32)
    if binarize == "threshold":
        return (x >= 128).to(torch.float32)  # x / 255 > 0.5  <=>  x > 127.5
    grey = x.to(torch.float32) / 255.0  # [B, D] in [0, 1]
    if binarize == "none":
        return grey
    u = torch.rand(grey.shape, generator=generator, device=grey.device)  # [B, D]
    return (u < grey).to(torch.float32)


def train_mean(train_x: torch.Tensor, binarize: str = "none", chunk: int = 10_000) -> torch.Tensor:
    """The mean training example ``[D]`` (float32) as training sees it in pixel mode
    ``binarize``: grey levels x / 255 for "none", the thresholded pixels for "threshold", and
    for "dynamic" the expectation of the Bernoulli(x / 255) draws, i.e. the grey-level mean
    (the reference code averages one epoch of draws instead: the same up to its sampling noise,
    about 0.002 per pixel over 50,000 images). Summed in float64, by chunks."""
    _check_mode(train_x, binarize)
    if len(train_x) == 0:
        raise BadInput("the mean of an empty training split is undefined")
    mode = "none" if binarize == "dynamic" else binarize
    total = torch.zeros(train_x.shape[1], dtype=torch.float64)
    for start in range(0, len(train_x), chunk):
        total += to_float(train_x[start : start + chunk].cpu(), mode).double().sum(0)
    return (total / len(train_x)).to(torch.float32)


class EpochBatches:
    """Mini-batches of one epoch: ``for x in EpochBatches(...).epoch(e)`` yields float32 ``[B, D]``.

    Args:
        train_x: uint8 ``[N, D]`` images or float32 ``[N, D]`` real-valued data; moved to
            ``device`` once (uint8 stays uint8).
        batch_size: images per batch; the last, partial batch of an epoch is kept.
        binarize: "none", "threshold" or "dynamic" (module docstring).
        seed: with the epoch number, fixes the order and the dynamic draws.
        device: where batches are produced.

    The order is a permutation drawn on the CPU (identical on every device); dynamic draws use a
    generator on ``device`` (reproducible for a given device).
    """

    def __init__(
        self,
        train_x: torch.Tensor,
        batch_size: int = 128,
        binarize: str = "none",
        seed: int = 0,
        device: str | torch.device = "cpu",
    ) -> None:
        _check_mode(train_x, binarize)
        if batch_size < 1:
            raise BadInput(f"batch size must be >= 1, got {batch_size}")
        if len(train_x) == 0:
            raise BadInput("cannot batch an empty dataset")
        self.device = torch.device(device)
        self.data = train_x.to(self.device)  # [N, D], dtype kept
        self.batch_size = int(batch_size)
        self.binarize = binarize
        self.seed = int(seed)

    @property
    def num_examples(self) -> int:
        return len(self.data)

    def __len__(self) -> int:
        return math.ceil(len(self.data) / self.batch_size)

    def order(self, epoch: int) -> torch.Tensor:
        """The permutation of epoch ``epoch``: int64 ``[N]`` on the CPU."""
        g = torch.Generator().manual_seed(derive_seed(self.seed, _STREAM_ORDER, epoch))
        return torch.randperm(len(self.data), generator=g)

    def epoch(self, epoch: int) -> Iterator[torch.Tensor]:
        """Yield the float32 ``[B, D]`` batches of epoch ``epoch`` (any epoch, in any order)."""
        index = self.order(epoch).to(self.device)  # [N]
        g = None
        if self.binarize == "dynamic":
            g = torch.Generator(device=self.device)
            g.manual_seed(derive_seed(self.seed, _STREAM_DYNAMIC, epoch))
        for start in range(0, len(index), self.batch_size):
            rows = self.data.index_select(0, index[start : start + self.batch_size])  # [B, D]
            yield to_float(rows, self.binarize, g)


def test_tensor(
    test_x: torch.Tensor, binarize: str = "none", seed: int = 0, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """The whole test set as float32 ``[N, D]``; under "dynamic" binarized once with ``seed``.

    The draw is made on the CPU, so the binarized test set is identical on every device.
    """
    _check_mode(test_x, binarize)
    g = None
    if binarize == "dynamic":
        g = torch.Generator().manual_seed(derive_seed(seed, _STREAM_TEST))
    return to_float(test_x.cpu(), binarize, g).to(device)


test_tensor.__test__ = False  # not a pytest test, despite its name
