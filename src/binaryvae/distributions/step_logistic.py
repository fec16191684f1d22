"""The StepLogistic(alpha) distribution (dissertation section 5.2, eqs. 5.4-5.7), computed stably.

The dissertation's StepLogistic was numerically unstable (section 5.3) and clamped the uniforms to
[1e-6, 1 - 1e-6]. Here every quantity is a function of the logits x = logit(alpha / 2), written
with `logsigmoid`/`log1p` so that values and gradients stay finite for x in [-30, 30] and for
uniforms anywhere in (0, 1) (tiny and 1 - eps included), without clamping u.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from binaryvae.distributions._area_scaled import AreaScaledLogistic, open_interval

__all__ = ["StepLogistic", "open_interval"]

_LOG2 = math.log(2.0)


class StepLogistic(AreaScaledLogistic):
    r"""Logistic(0, 1) whose two halves are rescaled so that P(z > 0) = alpha / 2.

    .. math::
        f(z; \alpha) = \frac{2-\alpha}{4}\operatorname{sech}^2\Big(\frac z2\Big)\Theta(-z)
                     + \frac{\alpha}{4}\operatorname{sech}^2\Big(\frac z2\Big)\Theta(z),
        \qquad \alpha \in (0, 2)

    (dissertation eq. 5.4). With p = alpha / 2 = sigmoid(logits) and q = 1 - p the density is
    2q·g(z) for z <= 0 and 2p·g(z) for z > 0, g the Logistic(0, 1) density; the CDF is
    2q·sigmoid(z) for z <= 0 and 1 - 2p·sigmoid(-z) for z > 0 (eq. 5.6), and its inverse is
    eq. 5.7. KL(StepLogistic(alpha) || Logistic(0, 1)) = KL(Bernoulli(p) || Bernoulli(1/2))
    (eq. 5.5), registered in `binaryvae.distributions.kl`.

    Example::

        >>> d = StepLogistic(logits=torch.tensor([-2.0, 0.0, 3.0]))
        >>> d.positive_probs  # P(z > 0) = probs = sigmoid(logits)
        tensor([0.1192, 0.5000, 0.9526])

    Args:
        alpha (float or Tensor): area scale of the right half, in (0, 2).
        logits (float or Tensor): logit(alpha / 2), the logit of P(z > 0). Give one of the two.
    """

    @property
    def positive_probs(self):
        """P(z > 0) = alpha / 2 = ``probs``: the bit probability of the family."""
        return self.probs

    @property
    def positive_logits(self):
        """logit P(z > 0) = ``logits``: the logits of the Bernoulli the family stands for."""
        return self.logits

    @property
    def mean(self):
        # E[z] = (2p - 2q) ∫_0^inf t g(t) dt = 2 (2p - 1) log 2
        return 2 * _LOG2 * torch.tanh(self.logits / 2)

    @property
    def variance(self):
        # both halves carry the Logistic(0,1) second moment pi^2 / 3
        return math.pi**2 / 3 - self.mean.pow(2)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        x = self.logits
        # log(2 - alpha) = log 2 + logsigmoid(-x) on the left, log(alpha) = log 2 + logsigmoid(x)
        # on the right; the density at z = 0 is taken from the left half
        log_half = F.logsigmoid(torch.where(value > 0, x, -x))
        a = value.abs()
        return _LOG2 + log_half - a - 2 * F.softplus(-a)

    def cdf(self, value):
        if self._validate_args:
            self._validate_sample(value)
        x = self.logits
        left = 2 * torch.sigmoid(-x) * torch.sigmoid(value)  # eq. 5.6, z <= 0
        right = 1 - 2 * torch.sigmoid(x) * torch.sigmoid(-value)  # eq. 5.6, z > 0
        return torch.where(value > 0, right, left)

    def icdf(self, value):
        """Eq. 5.7 in a stable form.

        For u < q = 1 - p: z = logit(r) with r = u / (2q) in (0, 1/2);
        for u >= q: z = -logit(s) with s = (1 - u) / (2p) in (0, 1/2].
        Both r and s are formed in log space (log 2q = log 2 + logsigmoid(-x)) so that no
        division by a tiny q or p loses range, and each branch is evaluated only on safe inputs
        (the unused branch gets r = s = 1/4) so that `torch.where` passes no NaN gradient.
        """
        x = self.logits
        u = value
        left = u < torch.sigmoid(-x)
        log_r = torch.log(u) - _LOG2 - F.logsigmoid(-x)
        log_s = torch.log1p(-u) - _LOG2 - F.logsigmoid(x)
        quarter = torch.full_like(log_r, -2 * _LOG2)
        log_r = torch.where(left, log_r, quarter)
        log_s = torch.where(left, quarter, log_s)
        z_left = log_r - torch.log1p(-torch.exp(log_r))
        z_right = torch.log1p(-torch.exp(log_s)) - log_s
        return torch.where(left, z_left, z_right)

    def entropy(self):
        # H = 2 - log 2 + H_Bernoulli(p): each half contributes the Logistic entropy share 1
        x = self.logits
        p, q = torch.sigmoid(x), torch.sigmoid(-x)
        h_bern = -(p * F.logsigmoid(x) + q * F.logsigmoid(-x))
        return 2.0 - _LOG2 + h_bern
