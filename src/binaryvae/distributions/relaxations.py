"""Relaxations: what the decoder receives in place of a bit (dissertation sections 4.1 and 4.3).

The binary Concrete of Maddison et al. (2017) with temperature 1/beta draws
y = beta·(log gamma + l), l ~ Logistic(0, 1), and relaxes the bit to sigmoid(y) (eq. 4.8). Since
log gamma + l ~ Logistic(log gamma, 1), this is exactly the Logistic(log gamma, 1) family passed
through the steep sigmoid sigmoid(beta·z) of section 4.1: the two differ only in
parameterization (lambda = gamma / (1 + gamma) = sigmoid(loc)). torch's
`LogitRelaxedBernoulli(temperature=1/beta, logits=log gamma)` samples the same y; we reuse it and
stay in logit space, because `RelaxedBernoulli` at low temperature clamps its output and its
`log_prob` (through the sigmoid's log-Jacobian) turns into -inf/NaN.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.distributions.relaxed_bernoulli import LogitRelaxedBernoulli

from binaryvae.distributions._quadrature import expect_under_logistic

_EMPTY_SHAPE = torch.Size()

__all__ = [
    "steep_sigmoid",
    "binary_concrete",
    "binary_concrete_kl",
    "binary_concrete_rsample",
    "binary_concrete_logit_log_prob",
]


def steep_sigmoid(z: torch.Tensor, beta: float | torch.Tensor = 10.0) -> torch.Tensor:
    """sigma(beta·z): the soft bit of section 4.1 (beta = inverse temperature, 10 by default).

    Shapes: any; returns the shape of z broadcast with beta. Finite for any beta (sigmoid of ±inf
    is 0/1 and its gradient is 0).
    """
    return torch.sigmoid(beta * z)


def binary_concrete(logits: torch.Tensor, beta: float = 10.0) -> LogitRelaxedBernoulli:
    """The binary Concrete in logit space: y = beta (logits + l), l ~ Logistic(0, 1) (eq. 4.8).

    `logits` is log gamma (so lambda = sigmoid(logits)); the relaxed bit is sigmoid(y).
    """
    return LogitRelaxedBernoulli(temperature=torch.as_tensor(1.0 / beta).to(logits), logits=logits)


def binary_concrete_rsample(
    logits: torch.Tensor, beta: float = 10.0, sample_shape: torch.Size = _EMPTY_SHAPE
) -> torch.Tensor:
    """A relaxed bit sigmoid(beta (logits + l)) in (0, 1); shape sample_shape + logits.shape.

    torch's uniforms are clamped to (tiny, 1 - eps) inside `LogitRelaxedBernoulli.rsample`; the
    sigmoid is taken last so that large beta saturates to 0/1 instead of producing NaN.
    """
    return torch.sigmoid(binary_concrete(logits, beta).rsample(sample_shape))


def binary_concrete_logit_log_prob(
    y: torch.Tensor, logits: torch.Tensor, beta: float = 10.0
) -> torch.Tensor:
    """log density of y = beta (logits + l) (the logit of the relaxed bit), overflow-free.

    Equals `LogitRelaxedBernoulli(1/beta, logits).log_prob(y)` =
    log T + d - 2 log(1 + e^d), d = logits - T y, but uses softplus, since torch's
    `exp(d).log1p()` overflows to inf for d > 88 (float32) and returns -inf.
    """
    t = 1.0 / beta
    d = logits - t * y
    return torch.log(torch.as_tensor(t).to(y)) + d - 2 * F.softplus(d)


def binary_concrete_kl(
    q_logits: torch.Tensor, q_beta: float, p_logits: torch.Tensor, p_beta: float, nodes: int = 48
) -> torch.Tensor:
    """KL between two binary Concretes in logit space, q: y = q_beta (a + l) and
    p: y = p_beta (a0 + m), l, m ~ Logistic(0, 1) (Maddison et al. 2017, appendix C: the KL of
    the relaxed model, computed where it is well behaved, in logit space).

    With r = q_beta / p_beta and the densities of `binary_concrete_logit_log_prob`, log q(y) is
    log g(l) - log q_beta (g the Logistic(0,1) density, whose entropy is 2) and
    d_p = a0 - y / p_beta = a0 - r (a + l), so

        KL = log(p_beta / q_beta) - 2 - a0 + r a + 2 E_l[softplus(a0 - r a - r l)],

    the last expectation by fixed-node quadrature (`expect_under_logistic`) with a break where
    the softplus bends (l = (a0 - r a) / r): deterministic and differentiable in both logits.
    At r = 1 it equals the Logistic KL d coth(d / 2) - 2, d = a - a0.
    Shapes: q_logits and p_logits broadcast; returns their broadcast shape.
    """
    r = q_beta / p_beta
    a, a0 = torch.broadcast_tensors(q_logits, p_logits)
    c = a0 - r * a

    def soft(l):  # noqa: E741
        return F.softplus(c[..., None] - r * l)

    e_soft = expect_under_logistic(soft, [c / r], n=nodes, like=c)
    return math.log(p_beta / q_beta) - 2.0 - a0 + r * a + 2.0 * e_soft
