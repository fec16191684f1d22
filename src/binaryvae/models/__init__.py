"""Models: networks, decoders (likelihoods), posterior families (registry), estimators, the VAE.

``build_model(config, data_dim, image_shape, data_kind)`` builds a VAE from a TrainConfig.
Family-, estimator- and network-specific options come typed and validated from
``config.options`` (`binaryvae.config.ModelOptions`, stored as ``extra`` in config.json).
"""

from __future__ import annotations

import torch

from binaryvae.errors import BadInput
from binaryvae.models.decoders import DECODERS, make_decoder
from binaryvae.models.estimators import ESTIMATORS
from binaryvae.models.families import (
    FAMILIES,
    FAMILY_CLASSES,
    Family,
    check_options,
    make_family,
)
from binaryvae.models.grad_moments import ParamGradientEMA
from binaryvae.models.networks import InputAffine, glorot_init_, last_linear, make_networks
from binaryvae.models.objectives import LossTerms
from binaryvae.models.vae import VAE

__all__ = [
    "make_family",
    "FAMILIES",
    "ESTIMATORS",
    "DECODERS",
    "Family",
    "VAE",
    "LossTerms",
    "build_model",
]

# decoder "auto": the likelihood that fits the data kind
_AUTO_DECODER = {"image": "bernoulli", "real": "gaussian"}


def build_model(
    config,
    data_dim: int,
    image_shape: tuple[int, int] | None = None,
    data_kind: str = "image",
    data_mean: torch.Tensor | None = None,
) -> VAE:
    """Build the VAE that ``config`` (a TrainConfig) describes, for data of ``data_dim`` values.

    ``data_kind`` is "image" (pixels in [0, 1]) or "real" (e.g. the toy data); with
    ``config.decoder == "auto"`` it picks the bernoulli or the gaussian decoder.
    ``data_mean [D]``: the mean of the training split (`binaryvae.data.train_mean`), which the
    reference-protocol options ``encoder_input="centred"`` and ``decoder_bias="data-mean"``
    use; without it (a model rebuilt to load its checkpoint, or counted) those values are NaN
    placeholders, so a model trained without its checkpoint's values fails loudly.
    Raises BadInput for an unknown family, an objective the family does not offer, or a
    protocol option the model cannot take.
    """
    family = make_family(config)
    if config.objective not in family.objectives:
        raise BadInput(
            f"objective {config.objective!r} is not available for family {family.name!r}; "
            f"choose one of {', '.join(family.objectives)}"
        )
    kind = config.decoder
    if kind == "auto":
        try:
            kind = _AUTO_DECODER[data_kind]
        except KeyError:
            raise BadInput(
                f"unknown data kind {data_kind!r}; expected one of {', '.join(_AUTO_DECODER)}"
            ) from None
    check_options(config, kind)
    n = int(config.latent_dim)
    encoder, decoder_net = make_networks(
        config.network,
        data_dim,
        family.params_per_dim * n,
        n,
        data_dim,
        config.hidden,
        config.activation,
        image_shape,
        config.options,
    )
    encoder, decoder_net = _protocol_networks(config, encoder, decoder_net, kind, n, data_mean)
    decoder = make_decoder(kind, decoder_net, data_dim, config.options)
    prior = family.make_prior(n, learned=config.prior == "learned")
    estimator = family.make_estimator()
    if estimator is not None and callable(getattr(estimator, "setup", None)):
        estimator.setup(n)  # an estimator whose parameters' shapes depend on n (relax)
    if getattr(config, "decoder_sample", "shared") == "independent":
        if estimator is None or not getattr(estimator, "independent_decoder_sample", False):
            able = [name for name, cls in FAMILY_CLASSES.items()
                    if getattr(cls, "independent_decoder_sample", False)]  # fmt: skip
            raise BadInput(
                f"decoder_sample 'independent' applies to {', '.join(able)}, not to "
                f"{family.name!r}; use decoder_sample 'shared' (--decoder-sample shared)"
            )
        estimator.independent = True
    clamp = getattr(config, "logit_clamp", None)
    if clamp is not None and not family.logit_encoder:
        able = [n for n, c in FAMILY_CLASSES.items() if c.logit_encoder and not c.exact]
        raise BadInput(
            f"logit_clamp (--logit-clamp) clamps the encoder's bit logits; family "
            f"{family.name!r} outputs none (the families with logits: {', '.join(able)} and "
            "every bernoulli-* family)"
        )
    model = VAE(family, encoder, decoder, n, prior, estimator, logit_clamp=clamp)
    model.optimizer_options = {
        "eps": float(getattr(config, "adam_eps", 1e-8)),
        "prior_sgd_lr": getattr(config, "prior_sgd_lr", None),
        "optimizer": getattr(config, "optimizer", "adam"),
        "momentum": float(getattr(config, "momentum", 0.0)),
    }
    if getattr(config, "grad_var_param_ema", False):
        model.grad_ema = ParamGradientEMA(model.encoder.named_parameters())
    if getattr(config, "summary_iwae_k", None) is not None:
        model.summary_iwae_k = int(config.summary_iwae_k)  # evaluate_summary's k
    return model


def _protocol_networks(config, encoder, decoder_net, kind: str, n: int, data_mean):
    """The reference protocol's network options (issue 28): glorot init, the data-mean output
    bias of the decoder, the centred encoder input and the signed decoder input."""
    encoder_input = getattr(config, "encoder_input", "raw")
    decoder_bias = getattr(config, "decoder_bias", "default")
    if getattr(config, "init", "torch") == "glorot":
        glorot_init_(encoder)
        glorot_init_(decoder_net)
    mean = None
    if encoder_input == "centred" or decoder_bias == "data-mean":
        d = int(getattr(encoder, "in_features", 0) or 0)
        mean = (torch.full((d,), float("nan")) if data_mean is None
                else torch.as_tensor(data_mean, dtype=torch.float32).reshape(-1))  # fmt: skip
    if decoder_bias == "data-mean":
        last = last_linear(decoder_net)
        if kind != "bernoulli" or last is None:
            raise BadInput(
                "decoder_bias 'data-mean' sets the output bias of a bernoulli mlp decoder; "
                f"this one is a {kind} {config.network} decoder"
            )
        with torch.no_grad():
            p = mean.clamp(0.001, 0.999)
            last.bias.copy_((p.log() - torch.log1p(-p)).to(last.bias.dtype))  # logit
    if encoder_input == "centred":
        encoder = InputAffine(encoder, -mean)
    if getattr(config, "decoder_input", "bits") == "signed":
        decoder_net = InputAffine(decoder_net, torch.full((n,), -1.0), scale=2.0)
    return encoder, decoder_net
