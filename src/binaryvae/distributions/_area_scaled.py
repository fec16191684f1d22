"""The parameterization shared by StepLogistic and SmoothStepLogistic: a Logistic(0, 1) whose
halves are rescaled by 2 - alpha (z < 0) and alpha (z > 0), alpha in (0, 2), given either as
``alpha`` or as ``logits`` = logit(alpha / 2) (dissertation section 5.2, eq. 5.3).

The parameter handling lives here (constructor, broadcasting, ``expand``, the lazy
alpha/logits duality; ``probs`` = alpha / 2 = sigmoid(logits): as in torch.distributions,
``logits`` and ``probs`` are two views of the one parameter) and the sampler, ``rsample`` =
``icdf`` of open uniforms; each subclass defines its density, CDF and inverse CDF.
"""

from __future__ import annotations

from numbers import Number

import torch
from torch.distributions import Distribution, constraints
from torch.distributions.utils import broadcast_all, lazy_property

from binaryvae.distributions.noise import open_uniform

__all__ = ["AreaScaledLogistic", "open_interval"]

_EMPTY_SHAPE = torch.Size()


class _OpenInterval(constraints.Constraint):
    """lower < value < upper (torch ships only closed and half-open intervals)."""

    def __init__(self, lower_bound: float, upper_bound: float):
        self.lower_bound, self.upper_bound = lower_bound, upper_bound
        super().__init__()

    def check(self, value):
        return (self.lower_bound < value) & (value < self.upper_bound)

    def __repr__(self):
        name = self.__class__.__name__[1:]
        return f"{name}(lower_bound={self.lower_bound}, upper_bound={self.upper_bound})"


open_interval = _OpenInterval


class AreaScaledLogistic(Distribution):
    """Base class: stores what was given (alpha or logits) and derives the other lazily."""

    arg_constraints = {"alpha": open_interval(0.0, 2.0), "logits": constraints.real}
    support = constraints.real
    has_rsample = True

    def __init__(self, alpha=None, logits=None, validate_args=None):
        if (alpha is None) == (logits is None):
            raise ValueError("Either `alpha` or `logits` must be specified, but not both.")
        if alpha is not None:
            is_scalar = isinstance(alpha, Number)
            (self.alpha,) = broadcast_all(alpha)
        else:
            is_scalar = isinstance(logits, Number)
            (self.logits,) = broadcast_all(logits)
        self._param = self.alpha if alpha is not None else self.logits
        batch_shape = torch.Size() if is_scalar else self._param.size()
        super().__init__(batch_shape, validate_args=validate_args)

    def _expand_attributes(self, new) -> None:
        """Copy the subclass's non-tensor hyperparameters onto an expanded instance."""

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(type(self), _instance)
        batch_shape = torch.Size(batch_shape)
        self._expand_attributes(new)
        if "alpha" in self.__dict__:
            new.alpha = self.alpha.expand(batch_shape)
            new._param = new.alpha
        if "logits" in self.__dict__:
            new.logits = self.logits.expand(batch_shape)
            new._param = new.logits
        Distribution.__init__(new, batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @lazy_property
    def logits(self):
        return torch.log(self.alpha) - torch.log(2 - self.alpha)

    @lazy_property
    def alpha(self):
        return 2 * torch.sigmoid(self.logits)

    @property
    def probs(self):
        """alpha / 2 = sigmoid(logits): the parameter as a probability (for StepLogistic it is
        P(z > 0); each subclass gives P(z > 0) as ``positive_probs``)."""
        if "alpha" in self.__dict__:
            return self.alpha / 2
        return torch.sigmoid(self.logits)

    @property
    def param_shape(self):
        return self._param.size()

    def rsample(self, sample_shape=_EMPTY_SHAPE, generator=None):
        """Reparameterised sample: ``icdf`` of uniforms in (0, 1) (``generator``: see
        `binaryvae.distributions.noise.draw`). The gradient is the inverse CDF's: closed form
        for StepLogistic (eq. 5.7), implicit for SmoothStepLogistic."""
        shape = self._extended_shape(sample_shape)
        return self.icdf(open_uniform(shape, self._param, generator))
