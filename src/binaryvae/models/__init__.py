"""Models: networks, decoders (likelihoods), posterior families (registry), estimators, the VAE.

``build_model(config, data_dim, image_shape, data_kind)`` builds a VAE from a TrainConfig.
Family-, estimator- and network-specific options come typed and validated from
``config.options`` (`binaryvae.config.ModelOptions`, stored as ``extra`` in config.json).
"""

from __future__ import annotations

from binaryvae.errors import BadInput
from binaryvae.models.decoders import DECODERS, make_decoder
from binaryvae.models.estimators import ESTIMATORS
from binaryvae.models.families import FAMILIES, Family, check_options, make_family
from binaryvae.models.networks import make_networks
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
    config, data_dim: int, image_shape: tuple[int, int] | None = None, data_kind: str = "image"
) -> VAE:
    """Build the VAE that ``config`` (a TrainConfig) describes, for data of ``data_dim`` values.

    ``data_kind`` is "image" (pixels in [0, 1]) or "real" (e.g. the toy data); with
    ``config.decoder == "auto"`` it picks the bernoulli or the gaussian decoder.
    Raises BadInput for an unknown family or an objective the family does not offer.
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
    decoder = make_decoder(kind, decoder_net, data_dim, config.options)
    prior = family.make_prior(n, learned=config.prior == "learned")
    return VAE(family, encoder, decoder, n, prior, family.make_estimator())
