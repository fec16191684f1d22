"""Per-row trackers: exact bound, |logit| quantiles and bit flips on a fixed test subset.

A run with ``TrainConfig.track`` (a subset of `binaryvae.config.TRACKERS`) measures, at every
metrics row (every epoch's end and every ``eval_every_steps`` row), on the first
``track_images`` test images binarized once with `TRACK_SEED` (the same images for every seed
of a replica group; fewer when the test split has fewer):

- ``"exact"``: the exact discrete ELBO, the exact log p(x) and their gap
  KL(q(b|x) || p(b|x)), averaged over the images, by enumerating all 2^n codes
  (`binaryvae.evaluation.exact_evaluation`; n <= `binaryvae.config.TRACK_EXACT_BITS`):
  keys ``track_discrete_elbo``, ``track_log_px_exact``, ``track_exact_gap``;
- ``"logits"``: the quantiles `LOGIT_QUANTILES` of |logit P(bit = 1 | x)| over all the images'
  bits (linear interpolation between order statistics, numpy's default): keys
  ``track_logit_abs_q50``, ``track_logit_abs_q90``, ``track_logit_abs_q99``;
- ``"flips"``: the fraction of the images' bits (images x bits) whose most probable value
  (the sign of the logit) changed since the previous row, ``track_bits_flipped``, and the
  fraction of them that were saturated (|logit| > `SATURATED`) at the previous row,
  ``track_saturated_flipped`` (also a fraction of images x bits). The run's first row has no
  previous row: both are None there. "flips" does not need "logits" (each tracker writes its
  own keys); it keeps the logits of the previous row, which the run's checkpoint stores, so a
  resumed run counts its flips exactly as an uninterrupted one.

The trackers draw no random numbers (enumeration and the encoder's logits are deterministic)
and run in eval mode under a forked RNG with the model's mode restored, so training with
trackers is bit for bit training without them. Ported from the ``EpochTracker`` of
bench/dissertation.py (its ``SATURATED``, ``TRACK_IMAGES``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from binaryvae.evaluation._common import eval_mode, model_device
from binaryvae.evaluation.exact import exact_evaluation

__all__ = [
    "LOGIT_QUANTILES",
    "SATURATED",
    "TRACK_KEYS",
    "TRACK_SEED",
    "Tracker",
    "exact_means",
    "flip_fractions",
    "logit_quantiles",
    "quantiles",
    "track_subset",
]

SATURATED = 10.0  # |logit P(bit = 1 | x)| above which a bit counts as saturated
LOGIT_QUANTILES = (0.5, 0.9, 0.99)
TRACK_SEED = 0  # the dynamic binarization of the tracked images: one draw, every seed alike
# tracker -> the metrics keys it writes
TRACK_KEYS = {
    "exact": ("track_discrete_elbo", "track_log_px_exact", "track_exact_gap"),
    "logits": ("track_logit_abs_q50", "track_logit_abs_q90", "track_logit_abs_q99"),
    "flips": ("track_bits_flipped", "track_saturated_flipped"),
}
_BATCH = 500  # images per encoder pass


def track_subset(test_x: torch.Tensor, binarize: str, images: int) -> torch.Tensor:
    """The tracked images: the first ``images`` of ``test_x`` [N, D] (all N when fewer) as
    float32 [M, D], M = min(images, N), binarized once with `TRACK_SEED` under "dynamic"
    (`binaryvae.data.test_tensor`)."""
    from binaryvae.data import test_tensor

    return test_tensor(test_x[:images], binarize=binarize, seed=TRACK_SEED)


def quantiles(values: torch.Tensor, levels: Sequence[float]) -> list[float]:
    """Quantiles of ``values`` (any shape, flattened) at ``levels`` in [0, 1]: linear
    interpolation between the order statistics (numpy's and torch.quantile's default), in
    float64, with no limit on the number of values (torch.quantile takes at most 2^24)."""
    v = values.detach().flatten().double().sort().values  # [K]
    last = v.numel() - 1
    out = []
    for q in levels:
        pos = q * last
        lo = math.floor(pos)
        hi = min(lo + 1, last)
        out.append(float(v[lo] + (v[hi] - v[lo]) * (pos - lo)))
    return out


def logit_quantiles(logits: torch.Tensor) -> dict[str, float]:
    """``track_logit_abs_q50/q90/q99``: quantiles of |logits| ([M, n], all entries)."""
    values = quantiles(logits.abs(), LOGIT_QUANTILES)
    return dict(zip(TRACK_KEYS["logits"], values, strict=True))


def flip_fractions(
    logits: torch.Tensor, previous: torch.Tensor | None, saturated: float = SATURATED
) -> dict[str, float | None]:
    """``track_bits_flipped`` and ``track_saturated_flipped`` of logits [M, n] against the
    previous row's ``previous`` [M, n]: the fraction of the M x n bits whose sign (logit > 0)
    changed, and of those that changed while |previous| > ``saturated``. None for both without
    a previous row."""
    if previous is None:
        return dict.fromkeys(TRACK_KEYS["flips"])
    previous = previous.to(logits.device)
    changed = (logits > 0) != (previous > 0)  # [M, n]
    flipped = changed.double().mean().item()
    sat = (changed & (previous.abs() > saturated)).double().mean().item()
    return dict(zip(TRACK_KEYS["flips"], (flipped, sat), strict=True))


def exact_means(model: Any, x: torch.Tensor) -> dict[str, float]:
    """``track_discrete_elbo``, ``track_log_px_exact``, ``track_exact_gap``: the exact
    per-image values of ``x`` [M, D] (`binaryvae.evaluation.exact_evaluation`), averaged in
    float64."""
    result = exact_evaluation(model, x)
    values = [float(t.double().mean()) for t in (result.elbo, result.log_px, result.gap)]
    return dict(zip(TRACK_KEYS["exact"], values, strict=True))


class Tracker:
    """The trackers ``track`` of one run on its tracked images ``x`` [M, D].

    ``previous`` [M, n] float32 (CPU): the bit logits at the previous row (None: there was
    none), advanced by every `measure`; what the run's checkpoint stores as
    ``track_logits``.
    """

    def __init__(
        self, x: torch.Tensor, track: Sequence[str], previous: torch.Tensor | None = None
    ):
        self.x = x  # [M, D] float32
        self.track = tuple(track)
        self.previous = previous

    @property
    def keeps_logits(self) -> bool:
        """Whether the tracker carries logits from row to row (it tracks flips)."""
        return "flips" in self.track

    def bit_logits(self, model: Any) -> torch.Tensor:
        """The model's bit logits of the tracked images, float32 [M, n] on the CPU."""
        x = self.x.to(device=model_device(model), dtype=torch.float32)
        parts = [model.bit_logits(x[i : i + _BATCH]) for i in range(0, x.shape[0], _BATCH)]
        return torch.cat(parts).float().cpu()

    def measure(self, model: Any) -> dict[str, float | None]:
        """The metrics keys of the selected trackers for ``model`` now (`TRACK_KEYS`), in eval
        mode under a forked RNG (the model's mode and every random state as they were)."""
        if not self.track:
            return {}
        device = model_device(model)
        devices = [device] if device.type == "cuda" else []
        row: dict[str, float | None] = {}
        with torch.random.fork_rng(devices=devices), torch.no_grad(), eval_mode(model):
            if "exact" in self.track:
                row.update(exact_means(model, self.x))
            if "logits" in self.track or "flips" in self.track:
                logits = self.bit_logits(model)  # [M, n]
                if "logits" in self.track:
                    row.update(logit_quantiles(logits))
                if "flips" in self.track:
                    row.update(flip_fractions(logits, self.previous))
                    self.previous = logits
        return row
