"""ARMS: antithetic REINFORCE with K negatively correlated samples (the Dirichlet copula).

Dimitriev & Zhou (2021), "ARMS: Antithetic-REINFORCE-Multi-Sample Gradient for Binary
Variables", ICML. Per logit a_i, K uniforms are drawn from the Dirichlet copula: with
d ~ Dirichlet(1, ..., 1) over the K samples, u_k = (1 - d_k)^(K-1) is U(0, 1) marginally and
the u_k are negatively dependent (K = 2: u_2 = 1 - u_1, the antithetic pair). With
q = min(p, 1 - p), p = sigmoid(a), the bits are b_k = 1[u_k < q] where a < 0 and 1[u_k > q]
where a >= 0 (b_k ~ Bernoulli(p) marginally; the copula is applied to the rarer outcome). The
estimate is REINFORCE with the leave-one-out baseline, reweighted to stay unbiased under the
dependence:

    g_i = 1/(K-1) sum_k (f(b_k) - 1/K sum_j f(b_j)) (b_k,i - p_i) * p_i (1 - p_i) / (q_i - C(q_i))

where C(q) = P(u_j < q, u_k < q) = max(2 q^(1/(K-1)) - 1, 0)^(K-1) is the copula's bivariate
CDF on the diagonal (q - C(q) = p (1 - p) - Cov(b_j, b_k)). At K = 2 it is DisARM exactly.
The decoder parameters get 1/K sum_k grad f(b_k) (each b_k ~ q). K decoder evaluations per
image, one pass on ``[K, ..., B, n]``. Option ``samples`` (K, default 2).

``arms-normal`` (`ARMSNormal`) is the paper's Gaussian-copula variant: z = sqrt(K/(K-1))
(eps - mean(eps)), eps iid N(0, 1) over the K samples (unit variances, correlations
-1/(K-1)), b_k = 1[z_k < c] where a < 0 and 1[z_k > c] where a >= 0, c = Phi^-1(q), and the
same reweighting with C(q) = Phi_2(c, c; -1/(K-1)), the bivariate normal CDF on the diagonal,
computed by Plackett's identity d Phi_2 / d rho = phi_2 as
Phi_2(c, c; rho) = Phi(c)^2 - 1/(2 pi) int_{asin rho}^0 exp(-c^2 / (1 + sin t)) dt
(r = sin t makes the integrand smooth; 32-point Gauss-Legendre).
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from binaryvae.config import ModelOptions
from binaryvae.distributions import draw, open_uniform
from binaryvae.models.published._samples import sample_count
from binaryvae.models.registry import register_estimator

__all__ = ["ARMS", "ARMSNormal", "dirichlet_copula", "diagonal_copula_cdf", "diagonal_normal_cdf"]


def dirichlet_copula(k: int, shape, like: torch.Tensor, generator=None) -> torch.Tensor:
    """``[k, *shape]`` uniforms, each U(0, 1), negatively dependent along the first axis:
    u = (1 - d)^(k-1), d ~ Dirichlet(1, ..., 1) (normalised exponentials)."""
    e = -torch.log(open_uniform((k, *shape), like, generator))  # [k, ...] Exp(1)
    d = e / e.sum(0, keepdim=True)  # flat Dirichlet over the k samples
    return (1.0 - d).pow(k - 1)


def diagonal_copula_cdf(q: torch.Tensor, k: int) -> torch.Tensor:
    """C(q) = P(u_j < q, u_k < q) for two of the k copula uniforms."""
    return (2.0 * q.pow(1.0 / (k - 1)) - 1.0).clamp_min(0.0).pow(k - 1)


def _gauss_legendre(m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes and weights on [-1, 1] (Golub-Welsch), float64."""
    i = torch.arange(1, m, dtype=torch.float64)
    off = i / torch.sqrt(4 * i * i - 1)
    nodes, vecs = torch.linalg.eigh(torch.diag(off, 1) + torch.diag(off, -1))
    return nodes, 2 * vecs[0] ** 2


_NODES, _WEIGHTS = _gauss_legendre(32)


def diagonal_normal_cdf(c: torch.Tensor, rho: float) -> torch.Tensor:
    """Phi_2(c, c; rho) = P(z_1 < c, z_2 < c) for standard normals of correlation rho <= 0
    (module docstring: Plackett's identity, r = sin t, Gauss-Legendre)."""
    half = 0.5 * math.asin(rho)  # the interval [asin rho, 0] is half * (1 - x), x in [-1, 1]
    nodes = _NODES.to(c.device, c.dtype).reshape(-1, *([1] * c.dim()))
    weights = _WEIGHTS.to(c.device, c.dtype).reshape(-1, *([1] * c.dim()))
    t = half * (1.0 - nodes)  # [M, ...]
    integrand = torch.exp(-c.square() / (1.0 + torch.sin(t)).clamp_min(1e-300))
    integral = -half * (weights * integrand).sum(0)  # int_{asin rho}^0 ... dt
    phi = torch.special.ndtr(c)
    return (phi.square() - integral / (2 * math.pi)).clamp_min(0.0)


def _debias(q: torch.Tensor, joint: torch.Tensor) -> torch.Tensor:
    """p (1 - p) / (q - C(q)) = (1 - q) / (1 - C(q) / q): finite where q underflows to 0."""
    ratio = torch.where(q > 0, joint / q.clamp_min(1e-300), 0.0)
    return (1.0 - q) / (1.0 - ratio)


def _arms_surrogate(logits, f, b, p, debias, k, independent=False, generator=None):
    """ARMS's surrogate from the K samples ``b`` [K, ..., B, n]. ``independent``: the decoder and
    prior gradients come from one more sample b' ~ q drawn after the copula's noise (the
    reference code's split, as DisARM's `binaryvae.models.estimators._independent_term`), the K
    f values only weight the logits' gradient."""
    from binaryvae.models.estimators import EstimatorOutput, _independent_term

    with torch.no_grad() if independent else contextlib.nullcontext():
        fb = f(b)  # [K, ..., B]
    centred = (fb.detach() - fb.detach().mean(0)) * (k / (k - 1))  # [K, ..., B]
    weight = (centred.unsqueeze(-1) * (b - p)).mean(0) * debias  # [..., B, n] g
    surrogate = fb.mean(0) + (weight * (logits - logits.detach())).sum(-1)  # [..., B]
    if independent:
        surrogate = surrogate + _independent_term(logits, f, generator)
    return EstimatorOutput(surrogate, fb.detach().mean(0))


class ARMS(nn.Module):
    """ARMS with the Dirichlet copula (module docstring); unbiased for grad E_q[f(b)]."""

    unbiased, takes_learning_signal, independent_decoder_sample = True, True, True
    takes_options = ("samples",)

    def __init__(self, samples: int = 2, independent: bool = False):
        super().__init__()
        samples = sample_count("arms", samples)
        self.samples = int(samples)
        self.independent = bool(independent)

    @classmethod
    def from_options(cls, o: ModelOptions) -> ARMS:
        return cls(o.samples if o.samples is not None else 2)

    @property
    def samples_per_step(self) -> int:
        return self.samples

    def forward(self, logits: torch.Tensor, f, generator=None):
        k = self.samples
        a = logits.detach()
        p = torch.sigmoid(a)  # [..., B, n]
        q = torch.sigmoid(-a.abs())  # min(p, 1 - p), accurate in both tails
        u = dirichlet_copula(k, logits.shape, logits, generator)  # [K, ..., B, n]
        b = torch.where(a < 0, u < q, u > q).to(logits.dtype)  # [K, ..., B, n], b_k ~ Bern(p)
        debias = _debias(q, diagonal_copula_cdf(q, k))  # [..., B, n]
        return _arms_surrogate(logits, f, b, p, debias, k, self.independent, generator)


class ARMSNormal(ARMS):
    """ARMS with the Gaussian copula (module docstring); unbiased for grad E_q[f(b)]."""

    def forward(self, logits: torch.Tensor, f, generator=None):
        k = self.samples
        a = logits.detach()
        p = torch.sigmoid(a)
        q = torch.sigmoid(-a.abs())
        eps = draw(torch.randn, (k, *logits.shape), logits, generator)  # [K, ..., B, n]
        z = math.sqrt(k / (k - 1)) * (eps - eps.mean(0, keepdim=True))  # corr -1/(K-1)
        c = torch.special.ndtri(q)  # Phi^-1(q) <= 0
        b = torch.where(a < 0, z < c, z > c).to(logits.dtype)  # b_k ~ Bernoulli(p)
        debias = _debias(q, diagonal_normal_cdf(c, -1.0 / (k - 1)))
        return _arms_surrogate(logits, f, b, p, debias, k, self.independent, generator)


register_estimator("arms", ARMS)
register_estimator("arms-normal", ARMSNormal)
