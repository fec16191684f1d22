"""The toy model of the dissertation's section 5.1, as a seeded dataset with its exact posterior.

Each of n independent dimensions is generated as (diss. 5.1)

    z ~ Logistic(0, 1),   x | z ~ Normal(step(z), sigma^2),   step(z) = 1 if z > 0 else 0,

so step(z) ~ Bernoulli(1/2) and x is a mixture 1/2 N(0, sigma^2) + 1/2 N(1, sigma^2) per
dimension. With sigma = 0.5 (the dissertation's value): E[x] = 1/2 and
Var[x] = sigma^2 + 1/4 = 0.5.

The exact quantities a test needs are closed-form:
- ``toy_log_px``: log p(x) = sum_i log(1/2 N(x_i; 0, sigma^2) + 1/2 N(x_i; 1, sigma^2));
- ``toy_posterior_probs``: P(z_i > 0 | x) = sigmoid((2 x_i - 1) / (2 sigma^2));
- ``toy_log_posterior``: the density of z | x (diss. eq. 5.1-5.2), a Logistic(0, 1) density
  whose two halves are re-weighted by P(z > 0 | x) and P(z < 0 | x).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from binaryvae.errors import BadInput

__all__ = [
    "ToySample",
    "sample_toy",
    "toy_log_px",
    "toy_posterior_probs",
    "toy_log_posterior",
    "TOY_SIGMA",
    "TOY_DIM",
]

TOY_SIGMA = 0.5  # likelihood standard deviation of diss. 5.1
TOY_DIM = 8  # independent dimensions; matches the 8-bit latent default of the comparisons


class ToySample(NamedTuple):
    """Draws of the toy model and the true codes behind them."""

    x: torch.Tensor  # float32 [N, dim]
    bits: torch.Tensor  # step(z), float32 0./1. [N, dim]


def _check_sigma(sigma: float) -> None:
    if not sigma > 0:
        raise BadInput(f"toy model sigma must be > 0, got {sigma}")


def sample_toy(
    num: int, dim: int = TOY_DIM, sigma: float = TOY_SIGMA, generator: torch.Generator | None = None
) -> ToySample:
    """Draw ``num`` vectors from the toy model: z ~ Logistic(0,1), x = step(z) + sigma * eps."""
    _check_sigma(sigma)
    if num < 0 or dim < 1:
        raise BadInput(f"toy model needs num >= 0 and dim >= 1, got num={num}, dim={dim}")
    u = torch.rand(num, dim, generator=generator, dtype=torch.float64)  # [N, dim]
    z = torch.logit(u)  # Logistic(0, 1) by inverse CDF; [N, dim]
    bits = (z > 0).to(torch.float32)  # step(z); [N, dim]
    eps = torch.randn(num, dim, generator=generator, dtype=torch.float32)  # [N, dim]
    return ToySample(bits + sigma * eps, bits)


def _log_normal(x: torch.Tensor, mean: float, sigma: float) -> torch.Tensor:
    return -0.5 * ((x - mean) / sigma) ** 2 - math.log(sigma) - 0.5 * math.log(2 * math.pi)


def toy_log_px(x: torch.Tensor, sigma: float = TOY_SIGMA) -> torch.Tensor:
    """Exact log p(x) in nats per vector: x ``[..., dim]`` -> ``[...]``."""
    _check_sigma(sigma)
    per_dim = torch.logaddexp(_log_normal(x, 0.0, sigma), _log_normal(x, 1.0, sigma)) - math.log(2)
    return per_dim.sum(-1)


def toy_posterior_probs(x: torch.Tensor, sigma: float = TOY_SIGMA) -> torch.Tensor:
    """Exact P(z > 0 | x) per dimension: x ``[..., dim]`` -> ``[..., dim]``.

    The log-odds are log N(x; 1, s^2) - log N(x; 0, s^2) = (2x - 1) / (2 s^2); the prior odds are 1.
    """
    _check_sigma(sigma)
    return torch.sigmoid((2 * x - 1) / (2 * sigma**2))


def toy_log_posterior(z: torch.Tensor, x: torch.Tensor, sigma: float = TOY_SIGMA) -> torch.Tensor:
    """Exact log density of z | x per dimension (diss. eq. 5.1), broadcasting z and x.

    log f(z | x) = log Logistic(z; 0, 1) + log 2 + log P(step(z) | x): each half of the
    Logistic(0, 1) density (mass 1/2) is rescaled to the posterior mass of its sign.
    """
    _check_sigma(sigma)
    logits = (2 * x - 1) / (2 * sigma**2)  # log-odds of z > 0 given x
    log_logistic = -z.abs() - 2 * F.softplus(-z.abs())  # log sech^2(z/2)/4, stable
    # logsigmoid, not log(sigmoid): the posterior mass of one sign can underflow for large |x|
    log_mass = torch.where(z > 0, F.logsigmoid(logits), F.logsigmoid(-logits))
    return log_logistic + math.log(2) + log_mass
