"""Bernoulli probabilities lambda = P(z > 0) of the discrete model each family stands for.

Gaussian N(mu, sigma²): Phi(mu / sigma); Logistic(mu, s): sigmoid(mu / s); binary Concrete with
parameter gamma: gamma / (1 + gamma) = sigmoid(log gamma); StepLogistic(alpha): alpha / 2;
SmoothStepLogistic: 1 - F(0). Every distribution of this package gives its own as
`positive_probs` and `positive_logits`. The `*_logits` versions return logit(lambda)
without forming lambda, so that they stay exact where lambda rounds to 0 or 1.
"""

from __future__ import annotations

import torch

__all__ = [
    "bernoulli_probs_from_gaussian",
    "bernoulli_logits_from_gaussian",
    "bernoulli_probs_from_logistic",
    "bernoulli_probs_from_concrete",
    "bernoulli_probs_from_step_logistic",
]


def bernoulli_probs_from_gaussian(loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Phi(loc / scale) = exp(log_ndtr(loc / scale)).

    Not `torch.special.ndtr`: in torch 2.x it loses the lower tail (relative error 2% at t = -8
    in float64, 4% at t = -5 in float32, 0 instead of 3e-89 at t = -20), while `log_ndtr` is
    accurate to a few ulps there (checked against scipy in tests/test_distributions_kl.py).
    """
    return torch.special.log_ndtr(loc / scale).exp()


def bernoulli_logits_from_gaussian(loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """logit Phi(t) = log Phi(t) - log Phi(-t), t = loc / scale: exact where Phi rounds to 0, 1."""
    t = loc / scale
    return torch.special.log_ndtr(t) - torch.special.log_ndtr(-t)


def bernoulli_probs_from_logistic(loc: torch.Tensor, scale: torch.Tensor | float = 1.0):
    """sigmoid(loc / scale) (eq. 4.2 at z = 0)."""
    return torch.sigmoid(loc / scale)


def bernoulli_probs_from_concrete(log_gamma: torch.Tensor) -> torch.Tensor:
    """gamma / (1 + gamma) = sigmoid(log gamma) (section 4.3)."""
    return torch.sigmoid(log_gamma)


def bernoulli_probs_from_step_logistic(alpha: torch.Tensor) -> torch.Tensor:
    """alpha / 2 (section 5.2)."""
    return alpha / 2
