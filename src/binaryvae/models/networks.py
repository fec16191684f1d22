"""Encoder and decoder networks: an MLP with configurable hidden layers and a small conv option.

The default MLP has three hidden layers (512, 256, 128) with ReLU: the dissertation's better model
(section 3.2, Figure 3.3: 3 hidden layers give smoother outputs than 1). The decoder mirrors the
encoder's hidden sizes. `leaky_relu` uses slope 0.3, the activation of the published estimator
benchmarks (Dong, Mnih & Tucker 2020, DisARM, section 6: 784-200-200-200 LeakyReLU(0.3) nets).
The convolutional option is the notes' suggestion (section 5): two stride-2 convolutions.

The reference protocol's options (issue 28) live here too: `InputAffine` (a network fed
``scale * x + shift``: the centred encoder input x - mean, the signed decoder input 2b - 1) and
`glorot_init_` (Keras' glorot-uniform weights and zero biases).

Networks map ``[..., in]`` to ``[..., out]``; leading dimensions are flattened for the layers and
restored afterwards, so a decoder accepts codes of shape ``[S, B, n]`` as well as ``[B, n]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from binaryvae.config import ModelOptions
from binaryvae.errors import BadInput

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "ConvEncoder",
    "ConvDecoder",
    "InputAffine",
    "NETWORKS",
    "glorot_bound",
    "glorot_init_",
    "last_linear",
    "make_networks",
]

# name -> factory of the activation module
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.3),  # DisARM protocol (Dong et al. 2020, section 6)
    "tanh": nn.Tanh,
}


def _activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise BadInput(
            f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}"
        ) from None


class MLP(nn.Module):
    """Fully connected ``in -> hidden... -> out``, an activation after each hidden layer."""

    def __init__(
        self, in_features: int, hidden: Sequence[int], out_features: int, activation: str = "relu"
    ):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), _activation(activation)]
            width = h
        layers.append(nn.Linear(width, out_features))
        self.net = nn.Sequential(*layers)
        self.in_features, self.out_features = in_features, out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [..., in] -> [..., out]; nn.Linear handles any leading dimensions
        return self.net(x)


class ConvEncoder(nn.Module):
    """Two stride-2 convolutions (28 -> 14 -> 7 for MNIST) then a linear layer to ``out`` values."""

    def __init__(
        self,
        image_shape: tuple[int, int],
        out_features: int,
        channels: int = 32,
        activation: str = "relu",
    ):
        super().__init__()
        h, w = image_shape
        self.image_shape = (h, w)
        c = channels
        self.conv = nn.Sequential(
            nn.Conv2d(1, c, 4, stride=2, padding=1),
            _activation(activation),
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1),
            _activation(activation),
        )
        self.feature_shape = (2 * c, h // 4, w // 4)
        self.head = nn.Linear(2 * c * (h // 4) * (w // 4), out_features)
        self.in_features, self.out_features = h * w, out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        img = x.reshape(-1, 1, *self.image_shape)  # [N, 1, H, W]
        feats = self.conv(img).flatten(1)  # [N, 2c * H/4 * W/4]
        return self.head(feats).reshape(*lead, self.out_features)  # [..., out]


class ConvDecoder(nn.Module):
    """Mirror of ConvEncoder: linear layer, then two stride-2 transposed convolutions."""

    def __init__(
        self,
        in_features: int,
        image_shape: tuple[int, int],
        out_channels: int = 1,
        channels: int = 32,
        activation: str = "relu",
    ):
        super().__init__()
        h, w = image_shape
        if h % 4 or w % 4:
            raise BadInput(f"the conv network needs image sides divisible by 4, got {image_shape}")
        c = channels
        self.feature_shape = (2 * c, h // 4, w // 4)
        self.head = nn.Sequential(
            nn.Linear(in_features, 2 * c * (h // 4) * (w // 4)), _activation(activation)
        )
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1),
            _activation(activation),
            nn.ConvTranspose2d(c, out_channels, 4, stride=2, padding=1),
        )
        self.in_features, self.out_features = in_features, out_channels * h * w

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        lead = z.shape[:-1]
        feats = self.head(z.reshape(-1, self.in_features)).reshape(-1, *self.feature_shape)
        return self.deconv(feats).reshape(*lead, self.out_features)  # [..., out_channels * H * W]


class InputAffine(nn.Module):
    """``net(scale * x + shift)``: a network whose input is first mapped elementwise.

    ``shift [in]`` is a buffer (saved with the model: the training mean that centres the
    encoder's input travels with the checkpoint), ``scale`` a number. The reference protocol
    uses it twice (issue 28): the encoder's x - mean (scale 1, shift -mean) and the decoder's
    2b - 1 (scale 2, shift -1). Leading dimensions pass through, as for the wrapped network.
    """

    def __init__(self, net: nn.Module, shift: torch.Tensor, scale: float = 1.0):
        super().__init__()
        self.net = net
        self.scale = float(scale)
        self.register_buffer("shift", shift.detach().clone().to(torch.float32))  # [in]
        self.in_features = getattr(net, "in_features", None)
        self.out_features = getattr(net, "out_features", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x * self.scale if self.scale != 1.0 else x
        return self.net(h + self.shift)  # [..., in] -> [..., out]


def glorot_bound(weight: torch.Tensor) -> float:
    """sqrt(6 / (fan_in + fan_out)) of a linear or convolution weight (Keras' glorot_uniform
    limit; the same fans as ``torch.nn.init.xavier_uniform_``)."""
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(weight)
    return math.sqrt(6.0 / (fan_in + fan_out))


def glorot_init_(net: nn.Module) -> nn.Module:
    """Re-initialise every linear and convolution layer of ``net`` as Keras does by default
    (the reference code's Dense layers): weights U(-b, b), b = `glorot_bound`, biases zero.
    In place; returns ``net``."""
    for module in net.modules():
        if isinstance(module, nn.Linear | nn.Conv2d | nn.ConvTranspose2d):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return net


def last_linear(net: nn.Module) -> nn.Linear | None:
    """The output layer of an `MLP` (through `InputAffine`), or None for other networks."""
    while isinstance(net, InputAffine):
        net = net.net
    if isinstance(net, MLP) and isinstance(net.net[-1], nn.Linear):
        return net.net[-1]
    return None


def _mlp_pair(
    data_dim, latent_out, latent_in, decoder_out, hidden, activation, image_shape, options
):
    encoder = MLP(data_dim, hidden, latent_out, activation)
    decoder = MLP(latent_in, tuple(reversed(hidden)), decoder_out, activation)
    return encoder, decoder


def _conv_pair(
    data_dim, latent_out, latent_in, decoder_out, hidden, activation, image_shape, options
):
    if image_shape is None:
        raise BadInput(
            "the conv network needs image data (image_shape); use --network mlp for real data"
        )
    if decoder_out % data_dim:
        raise BadInput(
            f"conv decoder output {decoder_out} is not a multiple of the image size {data_dim}"
        )
    channels = options.conv_channels
    encoder = ConvEncoder(tuple(image_shape), latent_out, channels, activation)
    decoder = ConvDecoder(
        latent_in, tuple(image_shape), decoder_out // data_dim, channels, activation
    )
    return encoder, decoder


# name -> factory(data_dim, encoder_out, latent_in, decoder_out, hidden, activation,
#                 image_shape, options)
NETWORKS: dict[str, Callable[..., tuple[nn.Module, nn.Module]]] = {
    "mlp": _mlp_pair,
    "conv": _conv_pair,
}


def make_networks(
    kind: str,
    data_dim: int,
    encoder_out: int,
    latent_in: int,
    decoder_out: int,
    hidden: Sequence[int],
    activation: str,
    image_shape: tuple[int, int] | None,
    options: ModelOptions | None = None,
) -> tuple[nn.Module, nn.Module]:
    """Build ``(encoder [.., D] -> [.., encoder_out], decoder [.., latent_in] -> [.., D_out])``."""
    try:
        factory = NETWORKS[kind]
    except KeyError:
        raise BadInput(f"unknown network {kind!r}; choose one of {', '.join(NETWORKS)}") from None
    return factory(
        data_dim,
        encoder_out,
        latent_in,
        decoder_out,
        tuple(hidden),
        activation,
        image_shape,
        options if options is not None else ModelOptions(),
    )
