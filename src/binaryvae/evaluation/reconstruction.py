"""Reconstruction loss averaged over repeated posterior samples (dissertation Table 5.2, R = 5).

"Due to the random nature of sampling from the latent distribution, we must take repeated samples
and work out an average reconstruction loss" (diss. 5.3): loss(x) = -(1/R) sum_r log p(x | c_r),
with c_r the decoder input of the r-th posterior draw. Nats per image, lower is better.
"""

from __future__ import annotations

from typing import Any

import torch

from binaryvae.evaluation.bounds import discrete_terms, relaxed_terms

__all__ = ["reconstruction_loss", "RECONSTRUCTION_MODES"]

RECONSTRUCTION_MODES = ("relaxed", "discrete")


@torch.no_grad()
def reconstruction_loss(
    model: Any,
    x: torch.Tensor,
    *,
    repeats: int = 5,
    mode: str = "relaxed",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """-(1/R) sum_r log p(x | c_r) per image: x [B, D] -> [B] (Table 5.2 with R = repeats).

    mode "relaxed": c_r is what the family itself feeds the decoder (a relaxed sample, as in the
    dissertation; the deterministic code for autoencoder-gmm), i.e. -mean of `loss(x).recon`.
    mode "discrete": c_r = hard codes b_r ~ Bernoulli(lambda(x)) (binary families only).
    """
    if mode == "relaxed":
        return -relaxed_terms(model, x, samples=repeats).recon
    if mode == "discrete":
        return -discrete_terms(model, x, samples=repeats, generator=generator).recon
    raise ValueError(f"mode must be one of {RECONSTRUCTION_MODES}, got {mode!r}")
