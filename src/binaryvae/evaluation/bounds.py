"""Monte Carlo bounds per image: the relaxed ELBO, the Bernoulli ELBO and the discrete ELBO.

- relaxed ELBO: the family's own objective (continuous densities), `model.score(x, "elbo").elbo`;
- Bernoulli ELBO: relaxed samples plugged into Bernoulli log-probabilities (diss. eq.
  4.11-4.12), `model.score(x, "bernoulli-elbo").elbo`; not a valid bound;
- discrete ELBO, the "true bound" of diss. 4.5: hard codes b ~ Bernoulli(lambda(x)) decoded,
  Bernoulli posterior and prior; a valid bound on log p(x) of the discrete model.

All are averaged over K samples per image, in nats, higher is better, shape [B].
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from binaryvae.distributions import bernoulli_kl, bernoulli_log_mass
from binaryvae.evaluation._common import eval_mode, prior_logits, to_model

__all__ = [
    "Bound",
    "relaxed_terms",
    "relaxed_elbo",
    "bernoulli_kl",
    "discrete_terms",
    "discrete_elbo",
]

DEFAULT_CELLS = 1 << 22  # samples x images x pixels decoded at once: 4M floats = 16 MB


class Bound(NamedTuple):
    """A bound and its two terms per image, each [B], averaged over the samples drawn."""

    elbo: torch.Tensor  # recon - kl
    recon: torch.Tensor  # E_q log p(x | decoder input)
    kl: torch.Tensor  # KL(q || prior), analytic or Monte Carlo as stated by the function


@torch.no_grad()
def relaxed_terms(
    model: Any, x: torch.Tensor, *, objective: str = "elbo", samples: int = 1
) -> Bound:
    """The family's objective `objective` ("elbo" or "bernoulli-elbo") and its terms per image.

    x: [B, D]. Calls `model.score(x, objective=objective)` `samples` times in eval mode and
    averages `.elbo`, `.recon`, `.kl` (each [B]): the family's objective through its posterior
    and decoder, never through a training estimator (an exact Bernoulli family's value is one
    hard draw with the analytic KL, whatever its estimator averages).
    """
    x = to_model(model, x)
    elbo = recon = kl = 0.0
    with eval_mode(model):
        for _ in range(samples):
            terms = model.score(x, objective=objective)
            elbo = elbo + terms.elbo.float()  # [B]
            recon = recon + terms.recon.float()  # [B]
            kl = kl + terms.kl.float()  # [B]
    return Bound(elbo / samples, recon / samples, kl / samples)


@torch.no_grad()
def relaxed_elbo(model: Any, x: torch.Tensor, *, samples: int = 1) -> torch.Tensor:
    """The family's own (relaxed) ELBO per image, averaged over `samples` draws: [B, D] -> [B]."""
    return relaxed_terms(model, x, objective="elbo", samples=samples).elbo


@torch.no_grad()
def discrete_terms(
    model: Any,
    x: torch.Tensor,
    *,
    samples: int = 1,
    kl: str = "analytic",
    generator: torch.Generator | None = None,
    cells: int = DEFAULT_CELLS,
) -> Bound:
    """The discrete ELBO ("true bound", diss. 4.5) and its terms per image: x [B, D] -> Bound.

    Hard codes b ~ Bernoulli(lambda(x)) [K, B, n] are decoded and scored:
        ELBO = (1/K) sum_k log p(x|b_k) - KL(q(b|x) || p(b)).
    kl="analytic" (default) uses the closed-form Bernoulli KL (`bernoulli_kl`): same expectation
    as the sampled form, less variance. kl="sampled" uses (1/K) sum_k [log q(b_k|x) - log p(b_k)]
    (eq. 4.11-4.12 with hard samples), the exact per-sample form of the dissertation.
    """
    if kl not in ("analytic", "sampled"):
        raise ValueError(f"kl must be 'analytic' or 'sampled', got {kl!r}")
    x = to_model(model, x)  # [B, D]
    batch, dim = x.shape
    with eval_mode(model):
        logits = model.bit_logits(x).float()  # [B, n]
    prior = prior_logits(model, logits.shape[-1], x.device)  # [n]
    lam = torch.sigmoid(logits)  # [B, n]
    per_chunk = max(1, cells // max(batch * dim, 1))
    recon = torch.zeros(batch, device=x.device)
    kl_sampled = torch.zeros(batch, device=x.device)
    for start in range(0, samples, per_chunk):
        k = min(per_chunk, samples - start)
        b = torch.bernoulli(lam.expand(k, batch, -1), generator=generator)  # [k, B, n]
        with eval_mode(model):
            out = model.decode(b)  # decoded hard codes
        recon += model.decoder.log_prob(x, out).float().sum(0)  # [k, B] -> [B]
        if kl == "sampled":
            kl_sampled += (bernoulli_log_mass(b, logits) - bernoulli_log_mass(b, prior)).sum(0)
    recon = recon / samples
    kl_term = bernoulli_kl(logits, prior) if kl == "analytic" else kl_sampled / samples  # [B]
    return Bound(recon - kl_term, recon, kl_term)


@torch.no_grad()
def discrete_elbo(
    model: Any,
    x: torch.Tensor,
    *,
    samples: int = 1,
    kl: str = "analytic",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The discrete ELBO per image (see `discrete_terms`): x [B, D] -> [B]."""
    return discrete_terms(model, x, samples=samples, kl=kl, generator=generator).elbo
