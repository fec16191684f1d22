"""Objectives: pure functions ``(model, x, kl_weight, generator, params) -> LossTerms``.

``params`` (None: ``model.encoder_params(x)``) are the encoder outputs to use.

``LossTerms.surrogate`` is what training backpropagates; ``elbo``, ``recon`` and ``kl`` are the
detached per-image values that are reported (nats per image, higher is better for ``elbo``).
The reported ``elbo`` is recon - kl with KL weight 1 whatever ``kl_weight`` trains with; a run
with weight != 1 is labelled "not a bound" by its config (TrainConfig.objective_label).

- ``relaxed_elbo``: the family's own ELBO (diss. eq. 2.3/2.5): E_q log p(x|relax(z)) - KL(q||p),
  reparameterised z (diss. 3.1), KL analytic where the family has a closed form, else the
  one-sample Monte Carlo estimate log q(z) - log p(z) (diss. 2.2.3).
- ``relaxed_bernoulli_elbo``: the Bernoulli ELBO (diss. 4.4, eq. 4.11-4.12): the soft bits
  z_r = sigma(beta z) plugged into Bernoulli log-probabilities of posterior lambda(x) and prior.
  Not a valid bound; labelled "bernoulli-elbo".
- ``estimated_discrete_elbo``: the exact-Bernoulli families: E_q log p(x|b) - KL(Bern||Bern)
  with analytic KL (notes eq. 8) and the family's gradient estimator for the expectation.
  Here the Bernoulli ELBO, the family's ELBO and the discrete ELBO are one and the same, so
  these families offer "elbo" only ("bernoulli-elbo" is the label of a number that is *not* a
  bound, which would mislabel theirs).
- ``reconstruction``: the deterministic autoencoder's loss, log p(x | code) (notes eq. 12), KL 0.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from binaryvae.distributions import bernoulli_kl, bernoulli_log_mass, draw

__all__ = [
    "LossTerms",
    "relaxed_elbo",
    "relaxed_bernoulli_elbo",
    "estimated_discrete_elbo",
    "sampled_discrete_elbo",
    "reconstruction",
    "bernoulli_kl",
]


class LossTerms(NamedTuple):
    surrogate: torch.Tensor  # scalar with grad: what training backpropagates (minimised)
    elbo: torch.Tensor  # [..., B] detached: the named objective per image (NOT the surrogate)
    recon: torch.Tensor  # [..., B] detached: E_q log p(x | decoder input)
    kl: torch.Tensor  # [..., B] detached
    objective: str  # "elbo" | "bernoulli-elbo"


def _terms(
    recon: torch.Tensor,
    kl: torch.Tensor,
    kl_weight: float,
    label: str,
    recon_surrogate: torch.Tensor | None = None,
) -> LossTerms:
    # recon, kl: [..., B] ([S, B] for S stacked replicas); recon_surrogate: like recon, its
    # gradient estimates grad E_q log p(x|.)
    rs = recon if recon_surrogate is None else recon_surrogate
    # minimise -ELBO (notes eq. 6), KL weighted: the mean over a replica's batch, summed over
    # replicas, so that each replica's parameters get exactly their own run's gradient
    surrogate = -(rs - kl_weight * kl).mean(-1).sum()
    return LossTerms(surrogate, (recon - kl).detach(), recon.detach(), kl.detach(), label)


def _params(model, x: torch.Tensor, params):
    return model.encoder_params(x) if params is None else params  # tuple of [..., B, n]


def relaxed_elbo(
    model, x: torch.Tensor, kl_weight: float = 1.0, generator=None, params=None
) -> LossTerms:
    """The family's own (relaxed) ELBO, diss. eq. 2.3/2.5, one reparameterised sample."""
    family = model.family
    params = _params(model, x, params)
    q = family.posterior(params)  # batch [B, n]
    z = family.rsample(q, generator)  # [B, n]  (diss. 3.1 / 4.2.1 / 5.2.1)
    recon = model.decoder.log_prob(x, model.decoder(family.relax(z)))  # [B]
    kl = family.kl(q, model.prior(), z)  # [B]: closed form or log q(z) - log p(z)
    return _terms(recon, kl, kl_weight, "elbo")


def relaxed_bernoulli_elbo(
    model, x: torch.Tensor, kl_weight: float = 1.0, generator=None, params=None
) -> LossTerms:
    """The Bernoulli ELBO of diss. 4.4: soft bits in Bernoulli log-probabilities (eq. 4.11-4.12).

    log q(z) := sum_i z_r,i log lambda_i + (1 - z_r,i) log(1 - lambda_i)      (eq. 4.12)
    log p(z) := sum_i z_r,i log pi_i + (1 - z_r,i) log(1 - pi_i)              (eq. 4.11)
    with z_r = relax(z), lambda = sigmoid(bit logits), pi = sigmoid(prior bit logits) (1/2 fixed).
    """
    family = model.family
    params = _params(model, x, params)
    q = family.posterior(params)
    z = family.rsample(q, generator)  # [B, n]
    zr = family.relax(z)  # [B, n] soft bits in (0, 1)
    recon = model.decoder.log_prob(x, model.decoder(zr))  # [B]
    lam = family.bit_logits(params)  # [B, n] logit lambda(x)
    pri = model.prior_bit_logits()  # [n]
    kl = (
        zr * (F.logsigmoid(lam) - F.logsigmoid(pri))
        + (1 - zr) * (F.logsigmoid(-lam) - F.logsigmoid(-pri))
    ).sum(-1)  # [B] eq. 4.12 - 4.11
    return _terms(recon, kl, kl_weight, "bernoulli-elbo")


def estimated_discrete_elbo(
    model, x: torch.Tensor, kl_weight: float = 1.0, generator=None, params=None
) -> LossTerms:
    """Exact Bernoulli latent: the discrete ELBO with the family's gradient estimator.

    The estimator's learning signal f(b) is the family's ``learning_signal`` option:

    - "reconstruction" (default): f(b) = log p(x|b) (notes eq. 7); the KL is analytic (notes
      eq. 8) and its gradient exact;
    - "elbo": f(b) = log p(x, b) - log q(b|x), the whole single-sample ELBO through the
      estimator, the configuration of the estimator papers (Dong, Mnih & Tucker 2020, section
      6). log q(b|x) enters with detached logits: its own gradient has expectation 0
      (E_q[grad log q] = 0), so dropping it keeps the estimate unbiased.

    The reported recon is an unbiased estimate of E_q log p(x|b) in both cases; kl is analytic.
    An estimator of the IWAE-K bound (VIMCO, ``estimator_objective == "iwae"``) always gets the
    "elbo" signal; its value, hence the reported ``elbo``, is then the IWAE-K estimate.
    """
    logits = _params(model, x, params)[0]  # [..., B, n]
    prior = model.prior_bit_logits()  # [n] (or [S, 1, n])
    kl = bernoulli_kl(logits, prior)  # [..., B] notes eq. 8
    # an estimator with a fixed signal (VIMCO: the log importance weight) gets it whatever the
    # option says
    whole = model.family.options.learning_signal == "elbo" or (
        getattr(model.family, "estimator_signal", None) == "elbo"
    )

    def signal(bits: torch.Tensor) -> torch.Tensor:
        # [..., B, n] -> [..., B]: log p(x|b) (notes eq. 7), or log p(x, b) - log q(b|x)
        f = model.decoder.log_prob(x, model.decoder(bits))
        if whole:
            f = f + bernoulli_log_mass(bits, prior) - bernoulli_log_mass(bits, logits.detach())
        return f

    est = model.estimator(logits, signal, generator)  # surrogate, value: [..., B]
    if not whole:
        return _terms(est.value, kl, kl_weight, "elbo", recon_surrogate=est.surrogate)
    # est.value estimates the ELBO itself; est.surrogate's gradient is the ELBO's, KL included
    recon = est.value + kl.detach()
    return _terms(recon, kl, kl_weight, "elbo", recon_surrogate=est.surrogate + kl)


def sampled_discrete_elbo(
    model, x: torch.Tensor, kl_weight: float = 1.0, generator=None, params=None
) -> LossTerms:
    """The discrete ELBO with one hard draw b = 1[u < lambda(x)] and the analytic KL (notes eq.
    8): the value the exact-Bernoulli families report, computed without any gradient estimator
    (evaluation scores through this, never through the family's estimator). Its surrogate has
    no gradient for the encoder; it is not for training."""
    logits = _params(model, x, params)[0]  # [..., B, n]
    u = draw(torch.rand, logits.shape, logits, generator)  # as the estimators draw
    bits = (u < torch.sigmoid(logits)).to(logits.dtype)  # [..., B, n]
    recon = model.decoder.log_prob(x, model.decoder(bits))  # [..., B] notes eq. 7
    kl = bernoulli_kl(logits, model.prior_bit_logits())  # [..., B] notes eq. 8
    return _terms(recon, kl, kl_weight, "elbo")


def reconstruction(
    model, x: torch.Tensor, kl_weight: float = 1.0, generator=None, params=None
) -> LossTerms:
    """Deterministic autoencoder (notes section 4, eq. 12): log p(x | code), no KL."""
    code = _params(model, x, params)[0]  # [B, n]
    recon = model.decoder.log_prob(x, model.decoder(code))  # [B]
    return _terms(recon, torch.zeros_like(recon), kl_weight, "elbo")
