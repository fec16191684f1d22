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
"""

from __future__ import annotations

import torch
from torch import nn

from binaryvae.config import ModelOptions
from binaryvae.distributions import open_uniform
from binaryvae.errors import BadInput
from binaryvae.models.registry import register_estimator

__all__ = ["ARMS", "dirichlet_copula", "diagonal_copula_cdf"]


def dirichlet_copula(k: int, shape, like: torch.Tensor, generator=None) -> torch.Tensor:
    """``[k, *shape]`` uniforms, each U(0, 1), negatively dependent along the first axis:
    u = (1 - d)^(k-1), d ~ Dirichlet(1, ..., 1) (normalised exponentials)."""
    e = -torch.log(open_uniform((k, *shape), like, generator))  # [k, ...] Exp(1)
    d = e / e.sum(0, keepdim=True)  # flat Dirichlet over the k samples
    return (1.0 - d).pow(k - 1)


def diagonal_copula_cdf(q: torch.Tensor, k: int) -> torch.Tensor:
    """C(q) = P(u_j < q, u_k < q) for two of the k copula uniforms."""
    return (2.0 * q.pow(1.0 / (k - 1)) - 1.0).clamp_min(0.0).pow(k - 1)


class ARMS(nn.Module):
    """ARMS with the Dirichlet copula (module docstring); unbiased for grad E_q[f(b)]."""

    unbiased, takes_learning_signal = True, True

    def __init__(self, samples: int = 2):
        super().__init__()
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 2:
            raise BadInput(f"arms needs at least 2 samples (extra.samples), got {samples!r}")
        self.samples = int(samples)

    @classmethod
    def from_options(cls, o: ModelOptions) -> ARMS:
        return cls(o.samples if o.samples is not None else 2)

    @property
    def samples_per_step(self) -> int:
        return self.samples

    def forward(self, logits: torch.Tensor, f, generator=None):
        from binaryvae.models.estimators import EstimatorOutput

        k = self.samples
        a = logits.detach()
        p = torch.sigmoid(a)  # [..., B, n]
        q = torch.sigmoid(-a.abs())  # min(p, 1 - p), accurate in both tails
        u = dirichlet_copula(k, logits.shape, logits, generator)  # [K, ..., B, n]
        b = torch.where(a < 0, u < q, u > q).to(logits.dtype)  # [K, ..., B, n], b_k ~ Bern(p)
        fb = f(b)  # [K, ..., B]
        centred = (fb.detach() - fb.detach().mean(0)) * (k / (k - 1))  # [K, ..., B]
        # p (1 - p) / (q - C(q)) = (1 - q) / (1 - C(q) / q): finite where q underflows to 0
        ratio = torch.where(q > 0, diagonal_copula_cdf(q, k) / q.clamp_min(1e-300), 0.0)
        debias = (1.0 - q) / (1.0 - ratio)  # [..., B, n]
        weight = (centred.unsqueeze(-1) * (b - p)).mean(0) * debias  # [..., B, n] g
        surrogate = fb.mean(0) + (weight * (logits - a)).sum(-1)  # [..., B]
        return EstimatorOutput(surrogate, fb.detach().mean(0))


register_estimator("arms", ARMS)
