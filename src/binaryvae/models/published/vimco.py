"""VIMCO: the K-sample IWAE bound with per-sample leave-one-out baselines.

Mnih & Rezende (2016), "Variational Inference for Monte Carlo Objectives", ICML, section 3.
With b_1..b_K iid ~ q(b|x) and the log importance weights l_k = log p(x, b_k) - log q(b_k|x),
the objective is the IWAE-K bound (Burda, Grosse & Salakhutdinov 2016)

    L^K = E[ log 1/K sum_k exp(l_k) ]  <=  log p(x)

(not the ELBO: it is the ELBO at K = 1 and tighter for K > 1). Its gradient is

    grad L^K = E[ sum_j Lhat(j | -j) grad log q(b_j|x) + sum_j w~_j grad l_j ],
    Lhat = log 1/K sum_k exp(l_k),   w~_j = exp(l_j) / sum_k exp(l_k),
    Lhat(j | -j) = Lhat - log 1/K ( sum_{i != j} exp(l_i) + exp(mean_{i != j} l_i) ),

the learning signal of sample j having a baseline that depends on the other samples only (the
geometric mean of their weights stands in for sample j's weight), hence unbiased. Since
grad l_j = grad log p(x, b_j) - grad log q(b_j|x), the encoder also gets -w~_j grad log q(b_j|x).
The learning signal f it receives must be l(b): the family asks for the whole-ELBO signal
(``learning_signal = "elbo"``: f(b) = log p(x, b) - log q(b|x), log q with detached logits).
K decoder evaluations per image, one pass on ``[K, ..., B, n]``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from binaryvae.config import ModelOptions
from binaryvae.distributions import bernoulli_log_mass, draw
from binaryvae.models.published._samples import sample_count
from binaryvae.models.registry import register_estimator

__all__ = ["VIMCO", "leave_one_out_bounds"]


def leave_one_out_bounds(log_w: torch.Tensor) -> torch.Tensor:
    """log 1/K (sum_{i != j} exp(l_i) + exp(mean_{i != j} l_i)) for each j: ``[K, ...]`` from
    the log weights ``[K, ...]`` (detached)."""
    k = log_w.shape[0]
    others = (log_w.sum(0, keepdim=True) - log_w) / (k - 1)  # [K, ...] mean_{i != j} l_i
    table = log_w.unsqueeze(0).repeat(k, *([1] * log_w.dim()))  # [K (j), K (i), ...]
    eye = torch.eye(k, dtype=torch.bool, device=log_w.device)
    eye = eye.reshape(k, k, *([1] * (log_w.dim() - 1)))
    table = torch.where(eye, others.unsqueeze(1), table)  # l_j replaced in row j
    return torch.logsumexp(table, dim=1) - math.log(k)  # [K, ...]


class VIMCO(nn.Module):
    """VIMCO (module docstring): unbiased for the gradient of the IWAE-K bound, which is what
    it trains and reports (labelled ``iwae-K``)."""

    unbiased, takes_learning_signal = True, False
    takes_options = ("samples",)
    objective = "iwae"  # grad E log 1/K sum_k exp f(b_k) (binaryvae.models.registry)
    learning_signal = "elbo"  # f(b) is always the log importance weight

    def __init__(self, samples: int = 2):
        super().__init__()
        samples = sample_count("vimco", samples)
        self.samples = int(samples)

    @classmethod
    def from_options(cls, o: ModelOptions) -> VIMCO:
        return cls(o.samples if o.samples is not None else 2)

    @property
    def samples_per_step(self) -> int:
        return self.samples

    def forward(self, logits: torch.Tensor, f, generator=None):
        from binaryvae.models.estimators import EstimatorOutput

        k = self.samples
        probs = torch.sigmoid(logits.detach())  # [..., B, n]
        u = draw(torch.rand, (k, *logits.shape), logits, generator)
        b = (u < probs).to(logits.dtype)  # [K, ..., B, n]
        log_w = f(b)  # [K, ..., B]: l_k, differentiable in the decoder and the prior
        lw = log_w.detach()
        bound = torch.logsumexp(log_w, dim=0) - math.log(k)  # [..., B] Lhat; grad: sum w~ grad l
        weights = torch.softmax(lw, dim=0)  # [K, ..., B] w~_j
        signal = bound.detach() - leave_one_out_bounds(lw)  # [K, ..., B] Lhat(j | -j)
        log_q = bernoulli_log_mass(b, logits)  # [K, ..., B]
        score = log_q - log_q.detach()  # value 0, gradient grad log q(b_j|x)
        surrogate = bound + ((signal - weights) * score).sum(0)  # [..., B]
        return EstimatorOutput(surrogate, bound.detach())


register_estimator("vimco", VIMCO)
