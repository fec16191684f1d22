"""Likelihoods p(x | decoder input): Bernoulli (cross-entropy on grey levels) and Gaussian.

Each decoder wraps a network and exposes ``kind``, ``forward(code) -> out``,
``log_prob(x, out) -> [..., B]`` (summed over pixels) and ``mean(out) -> [..., D]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from binaryvae.config import ModelOptions
from binaryvae.errors import BadInput

__all__ = ["BernoulliDecoder", "GaussianDecoder", "DECODERS", "make_decoder"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class BernoulliDecoder(nn.Module):
    """p(x|z) = prod_i Bernoulli(x_i; sigmoid(l_i)), l = net(z): the decoder of diss. section 3.3.

    ``log_prob`` is the negative cross-entropy sum_i x_i log sigma(l_i) + (1 - x_i) log sigma(-l_i)
    = sum_i x_i l_i - softplus(l_i) (diss. eq. 3.3; notes eq. 7), valid for grey levels
    x in [0, 1] as well as binary pixels. Computed from logits by the fused
    ``binary_cross_entropy_with_logits`` (stable, one kernel forward and backward).
    """

    kind = "bernoulli"

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.net(code)  # [..., n] -> logits [..., D]

    def log_prob(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        # x: [B, D]; out: logits [..., B, D] (or broadcastable, e.g. [C, 1, D]) -> [..., B]
        if x.shape != out.shape:
            shape = torch.broadcast_shapes(x.shape, out.shape)
            x, out = x.expand(shape), out.expand(shape)
        # -BCE(l, x) = sum_i x_i l_i - softplus(l_i)   (diss. eq. 3.3)
        return -F.binary_cross_entropy_with_logits(out, x, reduction="none").sum(-1)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(out)  # pixel probabilities [..., D]


class GaussianDecoder(nn.Module):
    """p(x|z) = prod_i N(x_i; m_i, s_i^2), m = net(z) (diss. ch. 2-3; the toy model of 5.1).

    The scale is one value per data dimension: learned (a free parameter, log s initialised at
    ``log_scale``) or fixed (a buffer). Output ``out = (mean [..., D], log_scale [D])``.
    """

    kind = "gaussian"

    def __init__(self, net: nn.Module, data_dim: int, learned: bool = True, log_scale: float = 0.0):
        super().__init__()
        self.net = net
        init = torch.full((data_dim,), float(log_scale))
        if learned:
            self.log_scale = nn.Parameter(init)  # [D]
        else:
            self.register_buffer("log_scale", init)  # [D]

    def forward(self, code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # clamp: keeps the density finite if a dimension is fitted exactly (s -> 0)
        return self.net(code), self.log_scale.clamp(-7.0, 5.0)  # ([..., D], [D])

    def log_prob(self, x: torch.Tensor, out: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        mean, log_scale = out  # [..., B, D], [D]
        z = (x - mean) * torch.exp(-log_scale)
        return (-0.5 * z.square() - log_scale - _HALF_LOG_2PI).sum(-1)  # [..., B]

    def mean(self, out: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return out[0]


def _bernoulli(net: nn.Module, data_dim: int, options: ModelOptions) -> nn.Module:
    return BernoulliDecoder(net)


def _gaussian(net: nn.Module, data_dim: int, options: ModelOptions) -> nn.Module:
    # options.decoder_scale: a float (> 0, checked by ModelOptions) fixes the standard
    # deviation; None -> learned, initialised at 1
    scale = options.decoder_scale
    if scale is None:
        return GaussianDecoder(net, data_dim, learned=True, log_scale=0.0)
    return GaussianDecoder(net, data_dim, learned=False, log_scale=math.log(scale))


# name -> factory(net, data_dim, options)
DECODERS: dict[str, Callable[[nn.Module, int, ModelOptions], nn.Module]] = {
    "bernoulli": _bernoulli,
    "gaussian": _gaussian,
}


def make_decoder(
    kind: str, net: nn.Module, data_dim: int, options: ModelOptions | None = None
) -> nn.Module:
    try:
        factory = DECODERS[kind]
    except KeyError:
        raise BadInput(f"unknown decoder {kind!r}; choose one of {', '.join(DECODERS)}") from None
    return factory(net, data_dim, options if options is not None else ModelOptions())
