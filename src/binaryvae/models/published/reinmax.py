"""ReinMax: straight-through with a second-order (Heun's method) correction.

Liu, Li, Yang & Gao (2023), "Bridging Discrete and Backpropagation: Straight-Through and
Beyond", NeurIPS, section 4 (the ReinMax algorithm). For a categorical with logits theta,
pi_0 = softmax(theta), hard sample D ~ pi_0,

    pi_1 = (D + softmax(theta / tau)) / 2
    pi_1 <- softmax(stop_grad(log pi_1 - theta) + theta)      (value pi_1, gradient at pi_1)
    pi_2 = 2 pi_1 - pi_0 / 2
    output D + pi_2 - stop_grad(pi_2).

For a bit b ~ Bernoulli(p), p = sigmoid(a) (two classes, logits (a, 0), the decoder reading the
first component, as `StraightThrough` does), the decoder gets b + pi_2 - stop_grad(pi_2) with
pi_1 = (b + sigmoid(a / tau)) / 2 and d pi_2 / d a = 2 pi_1 (1 - pi_1) - p (1 - p) / 2.
Biased (its bias is measured by the enumeration test, never called unbiased); one decoder
evaluation. Option ``st_temperature`` (tau, default 1; the paper recommends tau >= 1).
"""

from __future__ import annotations

import torch
from torch import nn

from binaryvae.config import ModelOptions
from binaryvae.distributions import draw
from binaryvae.errors import BadInput
from binaryvae.models.registry import register_estimator

__all__ = ["ReinMax"]


class ReinMax(nn.Module):
    """ReinMax for Bernoulli latents (module docstring)."""

    unbiased, takes_learning_signal, samples_per_step = False, False, 1
    takes_options = ("st_temperature",)

    def __init__(self, temperature: float = 1.0):
        super().__init__()
        if not temperature > 0:
            raise BadInput(f"reinmax needs a positive temperature, got {temperature!r}")
        self.temperature = float(temperature)

    @classmethod
    def from_options(cls, o: ModelOptions) -> ReinMax:
        return cls(o.st_temperature)

    def forward(self, logits: torch.Tensor, f, generator=None):
        from binaryvae.models.estimators import EstimatorOutput

        pi0 = torch.sigmoid(logits)  # [..., B, n] p
        u = draw(torch.rand, logits.shape, logits, generator)
        b = (u < pi0.detach()).to(logits.dtype)  # [..., B, n] the hard sample
        pi1 = 0.5 * (b + torch.sigmoid(logits.detach() / self.temperature))
        pi1 = torch.sigmoid((torch.logit(pi1) - logits).detach() + logits)  # gradient at pi_1
        pi2 = 2.0 * pi1 - 0.5 * pi0
        fb = f(b + pi2 - pi2.detach())  # [..., B]; forward value f(b)
        return EstimatorOutput(fb, fb.detach())


register_estimator("reinmax", ReinMax)
