"""The VAE module: encoder -> posterior family -> decoder input -> decoder (docs/internals.md).

The model knows nothing about training: ``loss`` returns LossTerms (a surrogate to backpropagate
and detached per-image values to report); only ``binaryvae.training`` calls backward/step.
"""

from __future__ import annotations

import torch
from torch import nn

from binaryvae.errors import BadInput
from binaryvae.models.families import Family
from binaryvae.models.objectives import LossTerms

__all__ = ["VAE"]


class VAE(nn.Module):
    """A VAE with a posterior family from the registry.

    Args:
        family: the posterior family (binaryvae.models.families).
        encoder: network ``[.., D] -> [.., family.params_per_dim * n]``.
        decoder: a decoder (binaryvae.models.decoders) taking ``[.., n]`` codes.
        latent_dim: n.
        prior: the prior module from ``family.make_prior`` (fixed or learned parameters, or GMM).
        estimator: gradient estimator module of the exact Bernoulli families (else None).
        logit_clamp: C, to clamp the encoder's logits to [-C, C] (families with
            ``family.logit_encoder``; `encoder_params`); None: no clamp.
    """

    def __init__(
        self,
        family: Family,
        encoder: nn.Module,
        decoder: nn.Module,
        latent_dim: int,
        prior: nn.Module,
        estimator: nn.Module | None = None,
        logit_clamp: float | None = None,
    ):
        super().__init__()
        if logit_clamp is not None and not (family.logit_encoder and family.params_per_dim == 1):
            raise BadInput(
                f"logit_clamp clamps the encoder's bit logits; family {family.name!r} has none "
                "(its encoder outputs no logits)"
            )
        self.logit_clamp = None if logit_clamp is None else float(logit_clamp)
        self.family = family
        self.latent_dim = int(latent_dim)
        self.encoder = encoder
        self.decoder = decoder
        self.prior_module = prior
        self.estimator = estimator

    # ------------------------------------------------------------------ encoder side
    def encoder_params(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Encoder outputs split per parameter: ``params_per_dim`` tensors, each [B, n].

        With ``logit_clamp`` C the logits are ``clamp(h, -C, C)``: their gradient is zero
        where the encoder's output lies outside [-C, C] (torch.clamp's)."""
        h = self.encoder(x)  # [B, p * n]
        if self.logit_clamp is not None:
            h = h.clamp(-self.logit_clamp, self.logit_clamp)
        p = self.family.params_per_dim
        if p == 1:
            return (h,)
        return tuple(h.unflatten(-1, (p, self.latent_dim)).unbind(-2))

    def posterior(self, x: torch.Tensor):
        """q(z|x), batch shape [B, n]."""
        return self.family.posterior(self.encoder_params(x))

    def prior(self):
        """p(z), batch shape [n] (autoencoder-gmm: the fitted mixture, event shape [n])."""
        return self.family.prior(self.prior_module)

    def relax(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder input for a latent sample: sigma(beta z), bits, or the code itself."""
        return self.family.relax(z)

    def bit_logits(self, x: torch.Tensor) -> torch.Tensor:
        """logit lambda(x) [B, n] of the discrete model (binary families)."""
        return self.family.bit_logits(self.encoder_params(x))

    def bit_probs(self, x: torch.Tensor) -> torch.Tensor:
        """lambda(x) = P(bit = 1 | x) [B, n]."""
        return torch.sigmoid(self.bit_logits(x))

    def prior_bit_logits(self) -> torch.Tensor:
        """Bernoulli prior logits [n] (zeros unless the prior is learned)."""
        return self.family.prior_bit_logits(self.prior_module)

    def encode_mean(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic code [B, n]: lambda(x) for binary families, mu / the code otherwise."""
        return self.family.encode_mean(self.encoder_params(x))

    # ------------------------------------------------------------------ decoder side
    def decode(self, codes: torch.Tensor):
        """Decoder output for codes [..., n]: logits [..., D] or (mean [..., D], log_scale [D])."""
        return self.decoder(codes)

    def sample_codes(self, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Prior codes [num, n] to decode: bits, N(0,1) draws, or GMM samples."""
        return self.family.sample_codes(self.prior_module, num, generator)

    # ------------------------------------------------------------------ objectives
    @property
    def decoder_evaluations_per_step(self) -> int:
        """Decoder passes per training step (1; K for reinforce-loo, arms, vimco, rodeo and
        disarm with ``samples`` K, 2 for disarm and arm by default; 3 for relax; one more with
        an independent decoder sample)."""
        if self.estimator is None:
            return 1
        extra = 1 if getattr(self.estimator, "independent", False) else 0
        return int(self.estimator.samples_per_step) + extra

    def loss(
        self,
        x: torch.Tensor,
        objective: str = "elbo",
        kl_weight: float = 1.0,
        generator=None,
        params: tuple[torch.Tensor, ...] | None = None,
    ) -> LossTerms:
        """LossTerms of ``objective`` on the batch ``x [..., B, D]`` (binaryvae.models.objectives).

        ``params``: encoder outputs to use instead of ``encoder_params(x)`` (the gradient
        diagnostics hold them fixed and differentiate with respect to them).
        """
        try:
            fn = self.family.objectives[objective]
        except KeyError:
            raise BadInput(
                f"objective {objective!r} is not available for family {self.family.name!r}; "
                f"choose one of {', '.join(self.family.objectives)}"
            ) from None
        return fn(self, x, kl_weight, generator, params)

    def score(self, x: torch.Tensor, objective: str = "elbo", generator=None) -> LossTerms:
        """The value of ``objective`` on ``x`` as evaluation reports it: the family's objective
        computed without any training estimator (``family.scores``); for the exact Bernoulli
        families one hard draw and the analytic KL, whatever their estimator averages."""
        try:
            fn = self.family.scores[objective]
        except KeyError:
            raise BadInput(
                f"objective {objective!r} is not available for family {self.family.name!r}; "
                f"choose one of {', '.join(self.family.scores)}"
            ) from None
        return fn(self, x, 1.0, generator, None)

    @torch.no_grad()
    def finalize(self, train_x: torch.Tensor, batch_size: int = 1024) -> None:
        """After training: autoencoder-gmm fits its GaussianMixture to the training codes
        (``train_x``: [N, D] float in [0, 1], or uint8 pixels); a no-op for other families."""
        fit = getattr(self.prior_module, "fit", None)
        if fit is None:
            return
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        codes = []
        for start in range(0, train_x.shape[0], batch_size):
            xb = train_x[start : start + batch_size].to(device)
            xb = xb.float() / 255.0 if xb.dtype == torch.uint8 else xb.float()
            codes.append(self.encode_mean(xb))  # [b, n]
        fit(torch.cat(codes), seed=getattr(self.family, "seed", 0))
        self.train(was_training)
