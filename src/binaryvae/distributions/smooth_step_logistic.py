"""The smoothed StepLogistic of eq. 5.8, made sampleable (dissertation section 5.4.1).

The dissertation could not sample it because its CDF had no closed form. Here the CDF is
F(z) = 2q sigmoid(z) + 2(p - q) G_beta(z) with the single tabulated function G_beta of
`smooth_step_cdf`; the inverse CDF is a safeguarded Newton solve, and rsample gradients come
from implicit reparameterization (Figurnov et al. 2018), never from the solver's iterations.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from binaryvae.distributions._area_scaled import AreaScaledLogistic
from binaryvae.distributions._quadrature import expect_under_logistic
from binaryvae.distributions.smooth_step_cdf import smooth_step_g0, smooth_step_h

__all__ = ["SmoothStepLogistic", "smooth_step_contraction"]

_LOG2 = math.log(2.0)
_MAX_ITER = 60
_NODES = 64


def smooth_step_contraction(beta: float) -> float:
    """kappa(beta) = 1 - 4 G_beta(0): P(z > 0) = 1/2 + kappa (alpha/2 - 1/2).

    kappa(1) = 1/2 exactly, kappa -> 0 as beta -> 0 (the density becomes Logistic(0, 1)) and
    kappa = 1 - log(2)/beta + 3 zeta(3) / (8 beta^3) + ... -> 1 as beta -> inf; kappa(10) = 0.93113.
    """
    return 1.0 - 4.0 * smooth_step_g0(beta)


@functools.lru_cache(maxsize=64)
def _first_moment(beta: float) -> float:
    """E_{l ~ Logistic(0,1)}[l sigmoid(beta l)] (float64 quadrature; 1/2 E|l| as beta -> inf)."""
    b = torch.tensor(beta, dtype=torch.float64)

    def fn(l):  # noqa: E741
        return l * torch.sigmoid(b * l)

    c = min(30.0 / beta, 20.0)
    return float(expect_under_logistic(fn, [-c, 0.0, c], n=_NODES, like=b))


class _ImplicitIcdf(torch.autograd.Function):
    """z = F^{-1}(u; logits) by a safeguarded Newton solve; gradients by implicit differentiation.

    dz/dlogits = -(dF/dlogits)(z) / f(z) and dz/du = 1 / f(z); the solver runs without grad.
    """

    @staticmethod
    def forward(ctx, logits, u, dist):
        with torch.no_grad():
            z = dist._solve(logits, u)
        ctx.dist = dist
        ctx.save_for_backward(logits, z)
        return z

    @staticmethod
    def backward(ctx, grad_z):
        logits, z = ctx.saved_tensors
        dist = ctx.dist
        grad_logits = grad_u = None
        log_f = dist._log_density(z, logits)
        if ctx.needs_input_grad[0]:
            grad_logits = grad_z * dist._dz_dlogits(z, logits, log_f)
        if ctx.needs_input_grad[1]:
            grad_u = grad_z * torch.exp(-log_f)
        return grad_logits, grad_u, None


class SmoothStepLogistic(AreaScaledLogistic):
    r"""StepLogistic whose step is smoothed by a steep sigmoid (eq. 5.8), with a tractable CDF.

    .. math::
        f(z; \alpha, \beta) = \frac{2-\alpha}{4}\operatorname{sech}^2\Big(\frac z2\Big)
            \sigma(-\beta z) + \frac{\alpha}{4}\operatorname{sech}^2\Big(\frac z2\Big)
            \sigma(\beta z),
        \qquad F(z) = (2-\alpha)\,\sigma(z) + (2\alpha-2)\,G_\beta(z),

    with G_beta(z) = ∫_{-inf}^z g(t) sigma(beta t) dt (`smooth_step_cdf.smooth_step_g`). It
    integrates to 1 for every beta (appendix A.4) and tends to StepLogistic(alpha) as
    beta -> inf and to Logistic(0, 1) as beta -> 0.

    As in torch.distributions, `logits` = logit(alpha / 2) and `probs` = sigmoid(logits) =
    alpha / 2 are two views of the one parameter. The bit probability is its own quantity:
    `positive_probs` = P(z > 0) = 1 - F(0) = 1/2 + kappa(beta)·(alpha/2 - 1/2) with
    kappa(beta) = 1 - 4 G_beta(0) (`smooth_step_contraction`), alpha/2 pulled towards 1/2 by the
    factor kappa (kappa(10) = 0.931, kappa(1) = 1/2); `positive_logits` = logit(positive_probs).

    Example::

        >>> d = SmoothStepLogistic(alpha=torch.tensor([0.5, 1.5]), beta=10.0)
        >>> z = d.rsample((4,))  # [4, 2], differentiable in alpha by implicit reparameterization

    Args:
        alpha (float or Tensor): area scale of the right half, in (0, 2).
        logits (float or Tensor): logit(alpha / 2). Give one of alpha, logits.
        beta (float): inverse temperature of the smoothing sigmoid, > 0 (a fixed hyperparameter).
    """

    def __init__(self, alpha=None, logits=None, beta=10.0, validate_args=None):
        beta = float(beta)
        if not (beta > 0 and math.isfinite(beta)):
            raise ValueError(f"beta must be a positive finite number, got {beta}")
        self.beta = beta
        super().__init__(alpha=alpha, logits=logits, validate_args=validate_args)

    def _expand_attributes(self, new) -> None:
        new.beta = self.beta

    @property
    def kappa(self) -> float:
        return smooth_step_contraction(self.beta)

    @property
    def positive_probs(self):
        """P(z > 0) = 1 - F(0) = (1 - kappa)/2 + kappa·sigmoid(logits) (not ``probs``)."""
        k = self.kappa
        return (1 - k) / 2 + k * torch.sigmoid(self.logits)

    @property
    def positive_logits(self):
        """logit P(z > 0), from P(z > 0) and P(z <= 0) = (1 - kappa)/2 + kappa·sigmoid(-logits)."""
        k = self.kappa
        x = self.logits
        return torch.log((1 - k) / 2 + k * torch.sigmoid(x)) - torch.log(
            (1 - k) / 2 + k * torch.sigmoid(-x)
        )

    @property
    def mean(self):
        # E[z] = 2(p - q) E_g[l sigmoid(beta l)], since E_g[l] = 0
        return 2 * torch.tanh(self.logits / 2) * _first_moment(self.beta)

    @property
    def variance(self):
        # E[z^2] = E_g[w(l) l^2] = (2q + 2p) E_g[l^2] / 2 = pi^2 / 3: l^2 g(l) is even and
        # w(l) + w(-l) = 2q + 2p = 2
        return math.pi**2 / 3 - self.mean.pow(2)

    # --- pieces shared by log_prob, cdf, icdf and the implicit gradient -----------------------

    def _log_weight(self, z, x):
        """log w(z) = log(2q sigmoid(-beta z) + 2p sigmoid(beta z)), w = f / g."""
        bz = self.beta * z
        return _LOG2 + torch.logaddexp(
            F.logsigmoid(-x) + F.logsigmoid(-bz), F.logsigmoid(x) + F.logsigmoid(bz)
        )

    def _log_density(self, z, x):
        a = z.abs()
        return -a - 2 * F.softplus(-a) + self._log_weight(z, x)

    def _log_phi(self, z, x):
        """log Phi_x(z) with F_x(z) = sigmoid(z) Phi_x(z) for z <= 0.

        Phi_x(z) = 2q + 2(p - q) H(z) sigmoid(beta z) lies between 2q and 2F(0) and is >= min(1, 2q)
        (H sigmoid(beta z) <= 1/2), so its log is safe; p - q = tanh(x / 2).
        """
        hs = smooth_step_h(z, self.beta) * torch.sigmoid(self.beta * z)
        return torch.log(2 * torch.sigmoid(-x) + 2 * torch.tanh(x / 2) * hs)

    def _log_cdf_left(self, z, x):
        """log F_x(z) for z <= 0; by the reflection f_x(-z) = f_{-x}(z),
        log(1 - F_x(z)) = _log_cdf_left(-z, -x) for z >= 0."""
        return F.logsigmoid(z) + self._log_phi(z, x)

    def _dz_dlogits(self, z, x, log_f):
        """-(dF/dlogits)(z) / f(z), formed without cancellation on both sides of 0.

        dF/dx = pq (-2 sigmoid(z) + 4 G(z)); with a = -|z| this is
        dz/dx = pq (2 - 4 H(a) sigmoid(beta a)) sigmoid(a) / f(z), for either sign of z.
        """
        a = -z.abs()
        hs = smooth_step_h(a, self.beta) * torch.sigmoid(self.beta * a)
        log_pq = F.logsigmoid(x) + F.logsigmoid(-x)
        return (2 - 4 * hs) * torch.exp(log_pq + F.logsigmoid(a) - log_f)

    def _solve(self, x, u):
        """z with F_x(z) = u: Newton on log F (or log(1 - F)) inside a shrinking bracket.

        Shapes: x and u broadcast to the sample shape. On the side u <= F(0) we solve
        log sigmoid(z) + log Phi_x(z) = log u for z <= 0; otherwise the reflected problem with
        (-x, 1 - u). Phi is monotone between 2q and 2F(0), which brackets the root in closed form:
        z in [logit(u / Phi_max), min(0, logit(u / Phi_min))]. A Newton step that leaves the
        bracket is clamped to it, a step that makes no progress is a bisection; at most
        _MAX_ITER iterations (typically 4-6).
        """
        x, u = torch.broadcast_tensors(x, u)
        log_phi0 = self._log_phi(torch.zeros_like(x), x)
        log_f0 = log_phi0 - _LOG2  # log F(0)
        right = torch.log(u) > log_f0
        xe = torch.where(right, -x, x)
        log_u = torch.where(right, torch.log1p(-u), torch.log(u))
        log_2q = _LOG2 + F.logsigmoid(-xe)
        log_phi0 = self._log_phi(torch.zeros_like(xe), xe)
        log_phi_min, log_phi_max = torch.minimum(log_2q, log_phi0), torch.maximum(log_2q, log_phi0)

        def logit_of(log_r):  # logit(r) for log r < 0; 0 where r >= 1/2 (z <= 0 anyway)
            log_r = log_r.clamp(max=-_LOG2)
            return log_r - torch.log1p(-torch.exp(log_r))

        lo = logit_of(log_u - log_phi_max)
        hi = logit_of(log_u - log_phi_min)
        z = logit_of(log_u - self._log_phi(lo, xe)).clamp(lo, hi)
        tol = 16 * torch.finfo(z.dtype).eps
        # loop invariants: log p, log q, 2q and 2(p - q) of the reflected problem
        log_p, log_q = F.logsigmoid(xe), F.logsigmoid(-xe)
        two_q, two_p_minus_q = 2 * torch.sigmoid(-xe), 2 * torch.tanh(xe / 2)
        beta = self.beta
        for _ in range(_MAX_ITER):
            # log F(z) = log sigma(z) + log Phi(z) for z <= 0 (as in _log_cdf_left)
            bz = beta * z
            log_s_bz = F.logsigmoid(bz)
            log_phi = torch.log(two_q + two_p_minus_q * smooth_step_h(z, beta) * log_s_bz.exp())
            log_s_z = F.logsigmoid(z)
            phi = log_s_z + log_phi - log_u
            lo = torch.where(phi < 0, z, lo)
            hi = torch.where(phi > 0, z, hi)
            # d/dz log F = f / F = sigma(-z) w(z) / Phi(z), log w as in _log_weight
            log_w = _LOG2 + torch.logaddexp(log_q + log_s_bz - bz, log_p + log_s_bz)
            slope = torch.exp(log_s_z - z + log_w - log_phi)
            # A Newton step that leaves the bracket is pulled back to its edge: the edges are
            # tight bounds (the root often sits within 1e-4 of lo), and from an edge the next
            # step heads inwards. Only if that makes no progress do we bisect.
            z_new = (z - phi / slope).clamp(lo, hi)
            stuck = (z_new == z) & (phi != 0)
            z_new = torch.where(stuck, 0.5 * (lo + hi), z_new)
            step = (z_new - z).abs()
            z = z_new
            done = (step <= tol * (1 + z.abs())) | (hi - lo <= tol * (1 + z.abs()))
            if bool(done.all()):
                break
        return torch.where(right, -z, z)

    # --- Distribution API -----------------------------------------------------------------------

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return self._log_density(value, self.logits)

    def cdf(self, value):
        if self._validate_args:
            self._validate_sample(value)
        x = self.logits
        a = -value.abs()
        left = torch.exp(self._log_cdf_left(a, x))
        upper = torch.exp(self._log_cdf_left(a, -x))  # 1 - F(|z|)
        return torch.where(value > 0, 1 - upper, left)

    def icdf(self, value):
        x = self.logits
        shape = torch.broadcast_shapes(x.shape, value.shape)
        return _ImplicitIcdf.apply(x.expand(shape), value.expand(shape), self)

    def entropy(self):
        # H = E_g[w(l) (-log g(l) - log w(l))], w = f / g; breaks around the sigmoid's transition
        x = self.logits

        def fn(l):  # noqa: E741
            log_w = self._log_weight(l, x[..., None])
            a = l.abs()
            return log_w.exp() * (a + 2 * F.softplus(-a) - log_w)

        c = min(30.0 / self.beta, 20.0)
        return expect_under_logistic(fn, [-c, 0.0, c], n=_NODES, like=x)
