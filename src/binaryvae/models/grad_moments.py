"""The reference code's gradient variance: an EMA over training steps of the encoder's
parameter gradients' first and second moments (`ParamGradientEMA`, metrics key
``grad_var_param_ema``).

What the DisARM/ARMS public code (alekdimi/arms, ``networks.py``: ``compute_grad_variance``;
``experiment_launcher.py``: ``train_one_step``) logs as ``var/grad`` and plots as the gradient
variance: after every training step, for every component g of the encoder's parameter gradient,
the exponential moving averages (decay 0.999, started at zero, no bias correction: TensorFlow's
``ExponentialMovingAverage`` as it uses it) m1 <- 0.999 m1 + 0.001 g and m2 <- 0.999 m2 +
0.001 g^2; the logged number is the mean over all components of m2 - m1^2, divided by B^2.
The reference's encoder gradient is that of the *sum* over the batch, so dividing by B^2 gives
the same number as these moments of binaryvae's gradient of the batch *mean* (the training
surrogate's) without division: this is what `ParamGradientEMA.variance` returns.

It is not binaryvae's ``grad_var`` (`binaryvae.diagnostics.gradient_diagnostics`: the
variance over repeated estimates, at fixed parameters, of the per-image gradient with respect
to the encoder's *outputs*); the two measure different things and are logged under their own keys.

The moments are buffers of the model (saved in its checkpoint, so a resumed run continues them
exactly); the optimizer updates them before each step (`binaryvae.training.make_optimizer`),
i.e. with the gradients of exactly the steps that are taken.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["EMA_DECAY", "ParamGradientEMA"]

EMA_DECAY = 0.999  # the reference's tf.train.ExponentialMovingAverage(0.999)


def _buffer_name(kind: str, param_name: str) -> str:
    return f"{kind}__{param_name.replace('.', '__')}"


class ParamGradientEMA(nn.Module):
    """EMA moments of the gradients of ``params`` (the encoder's named parameters).

    Buffers ``mean__<param>`` and ``sq__<param>`` (the parameter's shape, zeros at start);
    `update` folds in the parameters' current ``.grad``; `variance` is the mean over every
    component of sq - mean^2 (the module docstring's quantity).
    """

    def __init__(self, params: Iterable[tuple[str, nn.Parameter]], decay: float = EMA_DECAY):
        super().__init__()
        self.decay = float(decay)
        named = [(name, p) for name, p in params if p.requires_grad]
        self.param_names = [name for name, _ in named]
        self.tracked = [p for _, p in named]  # plain references, not registered
        for name, p in named:
            self.register_buffer(_buffer_name("mean", name), torch.zeros_like(p.detach()))
            self.register_buffer(_buffer_name("sq", name), torch.zeros_like(p.detach()))

    def moments(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(first moments, second moments), one tensor per tracked parameter."""
        means = [getattr(self, _buffer_name("mean", n)) for n in self.param_names]
        sqs = [getattr(self, _buffer_name("sq", n)) for n in self.param_names]
        return means, sqs

    @torch.no_grad()
    def update(self) -> None:
        """One step of the EMA with the tracked parameters' gradients (none: a zero gradient)."""
        means, sqs = self.moments()
        grads = [
            p.grad.detach() if p.grad is not None else torch.zeros_like(p) for p in self.tracked
        ]
        weight = 1.0 - self.decay
        torch._foreach_lerp_(means, grads, weight)  # m1 += (1 - decay) (g - m1)
        torch._foreach_lerp_(sqs, torch._foreach_mul(grads, grads), weight)

    @torch.no_grad()
    def variance(self) -> float:
        """Mean over every component of E[g^2] - E[g]^2 (the EMAs), as a float."""
        means, sqs = self.moments()
        total = sum(int(m.numel()) for m in means)
        if total == 0:
            return float("nan")
        acc = sum((s.double() - m.double().square()).sum() for m, s in zip(means, sqs, strict=True))
        return float(acc) / total
