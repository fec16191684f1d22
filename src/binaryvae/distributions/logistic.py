"""The Logistic(loc, scale) distribution (dissertation section 4.2, eqs. 4.1, 4.2, 4.7)."""

from __future__ import annotations

import math
from numbers import Number

import torch
import torch.nn.functional as F
from torch.distributions import Distribution, constraints
from torch.distributions.utils import broadcast_all

from binaryvae.distributions.noise import open_uniform

_EMPTY_SHAPE = torch.Size()

__all__ = ["Logistic"]


class Logistic(Distribution):
    r"""Logistic distribution with location `loc` and scale `scale`.

    .. math::
        f(z; \mu, s) = \frac{1}{4s}\operatorname{sech}^2\Big(\frac{z-\mu}{2s}\Big)
                     = \frac{1}{s}\,\sigma(x)\,\sigma(-x), \quad x = (z - \mu)/s

    (dissertation eq. 4.1), with CDF sigma(x) (eq. 4.2) and inverse CDF mu + s logit(u) (eq. 4.7).
    `positive_probs` is P(z > 0) = sigmoid(mu / s): the Bernoulli probability of the bit
    sign(z); `positive_logits` = mu / s its logit.

    Example::

        >>> d = Logistic(torch.tensor([0.0, 1.0]), torch.tensor(1.0))
        >>> d.rsample((3,)).shape
        torch.Size([3, 2])

    Args:
        loc (float or Tensor): location mu.
        scale (float or Tensor): scale s > 0.
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.real
    has_rsample = True

    def __init__(self, loc, scale, validate_args=None):
        self.loc, self.scale = broadcast_all(loc, scale)
        if isinstance(loc, Number) and isinstance(scale, Number):
            batch_shape = torch.Size()
        else:
            batch_shape = self.loc.size()
        super().__init__(batch_shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(Logistic, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape)
        new.scale = self.scale.expand(batch_shape)
        super(Logistic, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self):
        return self.loc

    @property
    def mode(self):
        return self.loc

    @property
    def variance(self):
        return self.scale.pow(2) * (math.pi**2 / 3)

    @property
    def stddev(self):
        return self.scale * (math.pi / math.sqrt(3))

    @property
    def positive_logits(self):
        """logit P(z > 0) = loc / scale."""
        return self.loc / self.scale

    @property
    def positive_probs(self):
        """P(z > 0) = sigmoid(loc / scale)."""
        return torch.sigmoid(self.positive_logits)

    def rsample(self, sample_shape=_EMPTY_SHAPE, generator=None):
        """loc + scale * logit(u), u uniform in (0, 1) (``generator``: see
        `binaryvae.distributions.noise.draw`)."""
        shape = self._extended_shape(sample_shape)
        u = open_uniform(shape, self.loc, generator)
        return self.loc + self.scale * (torch.log(u) - torch.log1p(-u))

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        x = ((value - self.loc) / self.scale).abs()
        # log sigma(x) + log sigma(-x) written with |x| so that exp never overflows
        return -x - 2 * F.softplus(-x) - self.scale.log()

    def cdf(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return torch.sigmoid((value - self.loc) / self.scale)

    def icdf(self, value):
        return self.loc + self.scale * (torch.log(value) - torch.log1p(-value))

    def entropy(self):
        return self.scale.log() + 2.0
