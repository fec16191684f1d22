"""Gumbel-Rao: straight-through Gumbel-softmax, Rao-Blackwellised over the noise given the sample.

Paulus, Maddison & Krause (2021), "Rao-Blackwellizing the Straight-Through Gumbel-Softmax
Gradient Estimator", ICLR, section 3. For a categorical with logits theta, the forward pass uses
the hard sample D = onehot(argmax(theta + G)), G iid Gumbel, and the backward pass the
conditional expectation of the straight-through Gumbel-softmax Jacobian given D,

    grad_GR = E[ grad_theta softmax_tau(theta + G) | D ],

estimated with M samples of G from its conditional law given D (their Rao-Blackwellisation).
For a bit b ~ Bernoulli(sigmoid(a)) the two-class case reads: b = 1[a + L > 0] with L = G_1 -
G_0 ~ Logistic(0, 1), softmax_tau's first component is sigmoid((a + L) / tau), and L given b is
the logistic truncated to (-a, inf) (b = 1) or (-inf, -a) (b = 0), sampled by its inverse CDF:
L = logit(v), v ~ U(1 - p, 1) or U(0, 1 - p), p = sigmoid(a). The decoder gets

    b + s - stop_grad(s),   s = 1/M sum_m sigmoid((a + L_m) / tau)   (L_m fixed noise)

Biased (it is a straight-through estimator: its mean is not the gradient of E_q[f(b)]; the
enumeration test measures by how much); one decoder evaluation, M cheap inner samples.
Options: ``inner_samples`` (M, default 10) and ``st_temperature`` (tau, default 1).
"""

from __future__ import annotations

import torch
from torch import nn

from binaryvae.config import ModelOptions
from binaryvae.distributions import draw
from binaryvae.errors import BadInput
from binaryvae.models.registry import register_estimator

__all__ = ["GumbelRao"]


class GumbelRao(nn.Module):
    """Gumbel-Rao for Bernoulli latents (module docstring)."""

    unbiased, takes_learning_signal, samples_per_step = False, False, 1
    takes_options = ("inner_samples", "st_temperature")

    def __init__(self, inner_samples: int = 10, temperature: float = 1.0):
        super().__init__()
        if isinstance(inner_samples, bool) or not isinstance(inner_samples, int) \
                or inner_samples < 1:  # fmt: skip
            raise BadInput(f"gumbel-rao needs at least 1 inner sample, got {inner_samples!r}")
        if not temperature > 0:
            raise BadInput(f"gumbel-rao needs a positive temperature, got {temperature!r}")
        self.inner_samples, self.temperature = int(inner_samples), float(temperature)

    @classmethod
    def from_options(cls, o: ModelOptions) -> GumbelRao:
        return cls(o.inner_samples, o.st_temperature)

    def forward(self, logits: torch.Tensor, f, generator=None):
        from binaryvae.models.estimators import EstimatorOutput

        p = torch.sigmoid(logits.detach())  # [..., B, n]
        u = draw(torch.rand, logits.shape, logits, generator)
        b = (u < p).to(logits.dtype)  # [..., B, n] the hard sample
        v = draw(torch.rand, (self.inner_samples, *logits.shape), logits, generator)
        # L | b by the inverse CDF of the logistic truncated to the side of -a that b says
        cdf = torch.where(b.bool(), (1.0 - p) + v * p, v * (1.0 - p))  # [M, ..., B, n]
        noise = torch.logit(cdf)  # L_m, fixed (no gradient)
        soft = torch.sigmoid((logits + noise) / self.temperature).mean(0)  # [..., B, n]
        fb = f(b + soft - soft.detach())  # [..., B]; forward value f(b)
        return EstimatorOutput(fb, fb.detach())


register_estimator("gumbel-rao", GumbelRao)
