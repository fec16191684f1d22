"""Factorized Bernoulli codes b in {0,1}^n: log-mass and KL, from logits (the discrete model).

Shared by the models (estimators, the exact families' ELBO) and by evaluation (the discrete
ELBO, exact enumeration), which must not import each other.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["bernoulli_log_mass", "bernoulli_kl"]


def bernoulli_log_mass(bits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """log prod_i Bernoulli(b_i; sigmoid(l_i)) = sum_i [b_i l_i - softplus(l_i)] (diss. eq. 4.13).

    bits: [..., n] values 0./1.; logits: [..., n] broadcastable to bits. Returns [...].
    The form b*l - softplus(l) is exact for b in {0, 1} and stable for large |l|.
    """
    return (bits * logits - F.softplus(logits)).sum(-1)


def bernoulli_kl(logits: torch.Tensor, prior_logits: torch.Tensor) -> torch.Tensor:
    """KL(Bern(sigmoid(l)) || Bern(sigmoid(l0))) summed over bits: [..., n] -> [...].

    = sum_i p_i (log p_i - log p0_i) + (1 - p_i)(log(1 - p_i) - log(1 - p0_i)); with l0 = 0 this
    is -H[q] - n log(1/2) (notes eq. 8; diss. eq. 5.5 per bit). Written with logsigmoid so that
    saturated logits stay finite.
    """
    p = torch.sigmoid(logits)
    kl = p * (F.logsigmoid(logits) - F.logsigmoid(prior_logits)) + (1 - p) * (
        F.logsigmoid(-logits) - F.logsigmoid(-prior_logits)
    )
    return kl.sum(-1)
