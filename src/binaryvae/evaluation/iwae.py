"""Importance-weighted bound IWAE-k (Burda, Grosse & Salakhutdinov 2016, eq. 8) per image.

    IWAE_k(x) = E[ log (1/k) sum_{j=1..k} p(x, z_j) / q(z_j|x) ],  z_j ~ q(z|x) i.i.d.,

which satisfies ELBO = IWAE_1 <= IWAE_k <= IWAE_2k <= log p(x) (Burda et al. 2016, Theorem 1).

- discrete model (binary families): proposal q(b|x) = Bernoulli(lambda(x)), prior p(b) the
  Bernoulli prior, decoder fed hard codes; a bound on log p(x) of the discrete model. When n is
  small enough, all 2^n codes are decoded once and each sample only gathers its code's score
  (same estimator, same distribution, far cheaper); otherwise samples are decoded in chunks.
- relaxed model (the gaussian family, and any family's own continuous model): proposal
  q(z|x) = model.posterior(x), prior model.prior(), decoder fed model.relax(z).

k may be large (Burda et al. use 5,000): samples are drawn in chunks and folded into a running
logsumexp, so memory is bounded by `cells` floats whatever k.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from binaryvae.distributions import bernoulli_log_mass
from binaryvae.evaluation._common import (
    eval_mode,
    is_binary,
    prior_logits,
    to_model,
)
from binaryvae.evaluation.exact import code_index, default_dtype, enumerate_codes, log_lik_matrix

__all__ = ["iwae_bound", "PROPOSALS"]

PROPOSALS = ("auto", "discrete", "relaxed")
DEFAULT_CELLS = 1 << 22  # samples x images x pixels decoded at once: 4M floats = 16 MB
IMAGE_CHUNK = 100  # images per outer chunk, so a sample chunk holds about 50 samples
ENUMERATE_BITS = 12  # discrete proposal with n <= 12: decode the 4,096 codes once, then gather


def _sum_event(log_prob: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Sum a per-coordinate log-density [..., n] over the latent dimension (no-op if already)."""
    return log_prob.sum(-1) if log_prob.dim() == z.dim() else log_prob


def _log_weights_discrete(
    model: Any, x: torch.Tensor, logits: torch.Tensor, prior: torch.Tensor, k: int, generator
) -> torch.Tensor:
    """log p(x, b_j) - log q(b_j|x) for k fresh codes b_j ~ Bernoulli(lambda(x)): [k, B]."""
    b = torch.bernoulli(torch.sigmoid(logits).expand(k, *logits.shape), generator=generator)
    with eval_mode(model):
        out = model.decode(b)  # hard codes [k, B, n] decoded
    log_lik = model.decoder.log_prob(x, out).float()  # [k, B]
    return log_lik + bernoulli_log_mass(b, prior) - bernoulli_log_mass(b, logits)


def _log_weights_enumerated(
    scores: torch.Tensor, logits: torch.Tensor, k: int, generator
) -> torch.Tensor:
    """As `_log_weights_discrete`, reading log p(x, b) off the score matrix [B, 2^n]: [k, B]."""
    b = torch.bernoulli(torch.sigmoid(logits).expand(k, *logits.shape), generator=generator)
    idx = code_index(b)  # [k, B]
    joint = scores.T.gather(0, idx)  # [k, B]: scores[i, idx[j, i]]
    return joint - bernoulli_log_mass(b, logits)


def _log_weights_relaxed(model: Any, x: torch.Tensor, q: Any, p: Any, k: int) -> torch.Tensor:
    """log p(x|relax(z_j)) + log p(z_j) - log q(z_j|x) for z_j ~ q(z|x): [k, B]."""
    z = q.sample((k,))  # [k, B, n]
    with eval_mode(model):
        out = model.decode(model.relax(z))
    log_lik = model.decoder.log_prob(x, out).float()  # [k, B]
    return log_lik + _sum_event(p.log_prob(z), z).float() - _sum_event(q.log_prob(z), z).float()


@torch.no_grad()
def iwae_bound(
    model: Any,
    x: torch.Tensor,
    k: int = 1000,
    *,
    proposal: str = "auto",
    generator: torch.Generator | None = None,
    cells: int = DEFAULT_CELLS,
    enumerate_bits: int = ENUMERATE_BITS,
) -> torch.Tensor:
    """IWAE-k per image (Burda et al. 2016, eq. 8): x [B, D] -> [B], nats, higher is better.

    proposal: "discrete" (q(b|x) = Bernoulli(lambda), the discrete model; binary families),
    "relaxed" (the family's q(z|x), prior and relaxation: the gaussian family's own model), or
    "auto" = discrete for binary families, relaxed otherwise. `generator` drives the discrete
    draws; relaxed draws use the global RNG (torch.distributions has no generator argument).
    """
    if proposal not in PROPOSALS:
        raise ValueError(f"proposal must be one of {PROPOSALS}, got {proposal!r}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if proposal == "auto":
        proposal = "discrete" if is_binary(model) else "relaxed"
    x = to_model(model, x)  # [B, D]
    n = int(model.latent_dim)
    enumerate_all = proposal == "discrete" and n <= enumerate_bits
    prior = prior_logits(model, n, x.device)  # [n] (discrete proposal only)
    if enumerate_all:
        codes = enumerate_codes(n, device=x.device)  # [2^n, n]
        with eval_mode(model):
            decoded = model.decode(codes)  # every code decoded once
        log_prior = bernoulli_log_mass(codes, prior)  # [2^n]
    results = []
    for rows in range(0, x.shape[0], IMAGE_CHUNK):
        xc = x[rows : rows + IMAGE_CHUNK]  # [B', D]
        per_sample = n if enumerate_all else xc.shape[1]  # floats per image per sample
        per_chunk = max(1, cells // (xc.shape[0] * per_sample))
        running = torch.full((xc.shape[0],), -math.inf, device=x.device)  # running logsumexp
        if proposal == "discrete":
            with eval_mode(model):
                logits = model.bit_logits(xc).float()  # [B', n]
            if enumerate_all:
                dtype = default_dtype(model, None)
                scores = log_lik_matrix(model, xc, decoded, dtype, log_prior.to(dtype)).float()
                # scores: [B', 2^n] = log p(x, b) for every code
        else:
            with eval_mode(model):
                q, p = model.posterior(xc), model.prior()
        for start in range(0, k, per_chunk):
            kc = min(per_chunk, k - start)
            if enumerate_all:
                log_w = _log_weights_enumerated(scores, logits, kc, generator)
            elif proposal == "discrete":
                log_w = _log_weights_discrete(model, xc, logits, prior, kc, generator)
            else:
                log_w = _log_weights_relaxed(model, xc, q, p, kc)
            running = torch.logaddexp(running, torch.logsumexp(log_w, dim=0))  # [B']
        results.append(running - math.log(k))
    return torch.cat(results)
