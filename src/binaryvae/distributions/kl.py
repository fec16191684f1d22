"""KL divergences of the package's families, registered with `torch.distributions.register_kl`.

- KL(StepLogistic || Logistic): eq. 5.5, the Bernoulli KL, when the Logistic is (0, 1);
  otherwise by fixed-node quadrature.
- KL(Logistic(m1, s) || Logistic(m2, s)): closed form d·coth(d/2) - 2, d = (m1 - m2)/s
  (derived here: E[softplus(d + l)] = d / (1 - e^-d) for l ~ Logistic(0,1)); it gives
  Table 5.1's Logistic column exactly. Unequal scales: E|w| in closed form plus quadrature.
- KL(SmoothStepLogistic || Logistic): one-dimensional fixed-node quadrature (see
  `smooth_step_logistic`).
- KL(StepLogistic(a) || StepLogistic(a0)): both are the Logistic(0, 1) density g times 2(1 - p)
  on z < 0 and 2p on z > 0, so log q/p is constant on each half line and the KL is the
  Bernoulli KL of p = sigmoid(a) against p0 = sigmoid(a0) (a learned StepLogistic prior).
- KL(SmoothStepLogistic(a, beta) || SmoothStepLogistic(a0, beta)): both are g times a weight
  w(l); KL = E_g[w_q (log w_q - log w_p)] by the same quadrature (a learned smooth prior).
All are differentiable with respect to every parameter.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.distributions import register_kl

from binaryvae.distributions._quadrature import expect_under_logistic
from binaryvae.distributions.logistic import Logistic
from binaryvae.distributions.smooth_step_logistic import SmoothStepLogistic
from binaryvae.distributions.step_logistic import StepLogistic

__all__ = ["bernoulli_kl_to_half", "logistic_kl_equal_scale"]

_LOG2 = math.log(2.0)
_NODES = 64


def bernoulli_kl_to_half(logits: torch.Tensor) -> torch.Tensor:
    """KL(Bernoulli(sigmoid(logits)) || Bernoulli(1/2)) = log 2 + p log p + q log q (eq. 5.5)."""
    p, q = torch.sigmoid(logits), torch.sigmoid(-logits)
    return _LOG2 + p * F.logsigmoid(logits) + q * F.logsigmoid(-logits)


def logistic_kl_equal_scale(d: torch.Tensor) -> torch.Tensor:
    """KL(Logistic(m1, s) || Logistic(m2, s)) as a function of d = (m1 - m2) / s.

    KL = d·coth(d/2) - 2 = |d| - 2 + 2|d| / expm1(|d|); near d = 0 that difference cancels, so
    the Taylor series d²/6 - d⁴/360 + d⁶/15120 (from x/(e^x - 1) = sum B_n x^n / n!) is used.
    """
    a = d.abs()
    small = a < 0.1
    a_safe = torch.where(small, torch.ones_like(a), a)
    big = a_safe - 2 + 2 * a_safe / torch.expm1(a_safe)
    a2 = a * a
    series = a2 / 6 - a2 * a2 / 360 + a2 * a2 * a2 / 15120
    return torch.where(small, series, big)


def _is_standard(p: Logistic) -> bool:
    """True when p is Logistic(0, 1) everywhere and its parameters take no gradient."""
    if p.loc.requires_grad or p.scale.requires_grad:
        return False
    return bool((p.loc == 0).all()) and bool((p.scale == 1).all())


def _neg_log_logistic(z, loc, scale):
    """-log of the Logistic(loc, scale) density at z, without overflow."""
    w = ((z - loc) / scale).abs()
    return w + 2 * F.softplus(-w) + scale.log()


@register_kl(Logistic, Logistic)
def _kl_logistic_logistic(q: Logistic, p: Logistic):
    if not (q.scale.requires_grad or p.scale.requires_grad) and bool((q.scale == p.scale).all()):
        return logistic_kl_equal_scale((q.loc - p.loc) / p.scale)
    # KL = -H(q) + E_q[-log p] with z = m1 + s1 l, w = (z - m2) / s2;
    # -log p(z) = log s2 + |w| + 2 softplus(-|w|);
    # E|z - m2| = s1 (2 softplus(c) - c) with c = (m1 - m2) / s1
    m1, s1, m2, s2 = torch.broadcast_tensors(q.loc, q.scale, p.loc, p.scale)
    c = (m1 - m2) / s1
    e_abs = s1 * (2 * F.softplus(c) - c) / s2

    def soft(l):  # noqa: E741
        w = ((m1[..., None] + s1[..., None] * l - m2[..., None]) / s2[..., None]).abs()
        return 2 * F.softplus(-w)

    e_soft = expect_under_logistic(soft, [-c], n=_NODES, like=c)
    return -(s1.log() + 2.0) + s2.log() + e_abs + e_soft


@register_kl(StepLogistic, Logistic)
def _kl_steplogistic_logistic(q: StepLogistic, p: Logistic):
    if _is_standard(p):
        return bernoulli_kl_to_half(q.logits).expand(
            torch.broadcast_shapes(q.batch_shape, p.batch_shape)
        )
    x, m2, s2 = torch.broadcast_tensors(q.logits, p.loc, p.scale)
    log_w_left, log_w_right = _LOG2 + F.logsigmoid(-x), _LOG2 + F.logsigmoid(x)

    def cross(l):  # noqa: E741 - E_q[-log p] written as E_g[w(l) (-log p(l))]
        log_w = torch.where(l > 0, log_w_right[..., None], log_w_left[..., None])
        return log_w.exp() * _neg_log_logistic(l, m2[..., None], s2[..., None])

    zero = torch.zeros_like(m2)
    e_cross = expect_under_logistic(
        cross, [torch.minimum(zero, m2), torch.maximum(zero, m2)], n=_NODES, like=m2
    )
    return -q.entropy().expand(x.shape) + e_cross


@register_kl(StepLogistic, StepLogistic)
def _kl_steplogistic_steplogistic(q: StepLogistic, p: StepLogistic):
    a, a0 = torch.broadcast_tensors(q.logits, p.logits)
    pos = torch.sigmoid(a)
    return pos * (F.logsigmoid(a) - F.logsigmoid(a0)) + (1 - pos) * (
        F.logsigmoid(-a) - F.logsigmoid(-a0)
    )


@register_kl(SmoothStepLogistic, SmoothStepLogistic)
def _kl_smoothsteplogistic_smoothsteplogistic(q: SmoothStepLogistic, p: SmoothStepLogistic):
    if q.beta != p.beta:
        raise NotImplementedError("KL between smooth StepLogistics of different beta")
    x, x0 = torch.broadcast_tensors(q.logits, p.logits)
    c = min(30.0 / q.beta, 20.0)

    def fn(l):  # noqa: E741 - E_g[w_q (log w_q - log w_p)]
        log_wq = q._log_weight(l, x[..., None])
        return log_wq.exp() * (log_wq - p._log_weight(l, x0[..., None]))

    return expect_under_logistic(fn, [-c, 0.0, c], n=_NODES, like=x)


@register_kl(SmoothStepLogistic, Logistic)
def _kl_smoothsteplogistic_logistic(q: SmoothStepLogistic, p: Logistic):
    """E_q[log q - log p] = E_g[w(l) (log w(l) + log g(l) - log p(l))], w = q / g (eq. 5.8).

    Against Logistic(0, 1) this is E_g[w log w]. Breaks at ±30/beta and 0 resolve the sigmoid's
    transition; the quadrature error is below 1e-10 in float64 (tests/test_distributions_smooth.py).
    """
    c = min(30.0 / q.beta, 20.0)
    if _is_standard(p):
        x = q.logits.expand(torch.broadcast_shapes(q.batch_shape, p.batch_shape))

        def fn(l):  # noqa: E741
            log_w = q._log_weight(l, x[..., None])
            return log_w.exp() * log_w

        return expect_under_logistic(fn, [-c, 0.0, c], n=_NODES, like=x)
    x, m2, s2 = torch.broadcast_tensors(q.logits, p.loc, p.scale)

    def fn_general(l):  # noqa: E741
        log_w = q._log_weight(l, x[..., None])
        a = l.abs()
        log_g = -a - 2 * F.softplus(-a)
        return log_w.exp() * (log_w + log_g + _neg_log_logistic(l, m2[..., None], s2[..., None]))

    zero = torch.zeros_like(m2)
    lo, hi = torch.minimum(zero, m2), torch.maximum(zero, m2)
    return expect_under_logistic(fn_general, [-c + lo, lo, hi, hi + c], n=_NODES, like=m2)
