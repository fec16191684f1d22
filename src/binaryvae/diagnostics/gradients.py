"""Gradient diagnostics: variance and bias of a family's gradient estimator, measured.

On a fixed batch ``x [B, D]`` the encoder's outputs ``h = encoder(x)`` (the family's parameters,
``[B, p * n]``) are held fixed and the training objective's gradient with respect to them is
estimated ``K`` times, with fresh noise each time (the family's own estimator: the
reparameterised relaxation, straight-through, or a score-function estimator). Per image the
gradient is that of the image's own objective (not of the batch mean), in nats per unit of h.

- ``grad_var``: the variance over the K estimates, averaged over all B * p * n coordinates:
  the spread of the per-image gradient with respect to the encoder's *outputs* (the logits),
  at fixed parameters, on this batch. It is not the gradient variance the DisARM/ARMS papers
  plot (Dong, Mnih & Tucker 2020, Figure 5; their code's ``var/grad``): that one is an EMA over
  training steps of the encoder *parameter* gradients' moments, `binaryvae.models.grad_moments`,
  reported beside this one as ``grad_var_param_ema`` for models that track it;
- ``grad_mean_norm``: the Euclidean norm of the mean estimate over the batch, divided by
  sqrt(B) (a per-image scale);
- for binary families with n <= `EXACT_GRADIENT_BITS` bits, ``grad_exact_norm``: the norm of the
  exact gradient of the *discrete* ELBO (hard bits, Bernoulli posterior and prior) with respect
  to the same h, by enumerating the 2^n codes, and ``grad_bias_norm``: the norm of
  (mean estimate - exact gradient), with ``grad_bias_ratio`` = bias / exact norm and
  ``grad_bias_noise``: the norm that the mean's own sampling noise alone would give
  (sqrt(sum of variances / K)). A bias well above the noise is a measured bias: of
  straight-through, of a relaxation at its beta, of the Bernoulli ELBO (which is not the
  discrete ELBO's gradient); an unbiased estimator's bias sits at the noise.

All numbers are per image (divided by sqrt(B) for the norms). The noise comes from its own
generator, so measuring never moves the training's random streams.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from binaryvae.distributions import bernoulli_kl
from binaryvae.evaluation.exact import default_dtype, enumerate_codes, log_lik_matrix

__all__ = ["EXACT_GRADIENT_BITS", "exact_discrete_elbo", "gradient_diagnostics"]

EXACT_GRADIENT_BITS = 12  # 4,096 codes decoded once per measurement


def exact_discrete_elbo(model: Any, x: torch.Tensor, params: tuple[torch.Tensor, ...]):
    """The discrete ELBO per image, its expectation over q(b|x) by enumeration: [B].

    ELBO(x) = sum_b q(b|x) log p(x|b) - KL(q(b|x) || p(b)) with q = Bernoulli(lambda(h)),
    differentiable with respect to the encoder outputs ``params`` (decoder fixed).
    """
    n = int(model.latent_dim)
    logits = model.family.bit_logits(params)  # [B, n]
    codes = enumerate_codes(n, device=x.device, dtype=logits.dtype)  # [C, n]
    dtype = torch.float64 if logits.dtype == torch.float64 else default_dtype(model, None)
    with torch.no_grad():
        log_lik = log_lik_matrix(model, x, model.decode(codes), dtype).to(logits.dtype)  # [B, C]
        prior = model.prior_bit_logits().detach()  # [n]
    log_q = codes @ logits.T - F.softplus(logits).sum(-1)  # [C, B]
    recon = (log_q.T.exp() * log_lik).sum(-1)  # [B]
    return recon - bernoulli_kl(logits, prior)


def _flat(params: tuple[torch.Tensor, ...]) -> torch.Tensor:
    return torch.cat([p.reshape(p.shape[0], -1) for p in params], dim=-1)  # [B, p * n]


def gradient_diagnostics(
    model: Any,
    x: torch.Tensor,
    *,
    objective: str = "elbo",
    samples: int = 50,
    generator: torch.Generator | None = None,
    exact: bool | None = None,
) -> dict[str, float]:
    """The module docstring's numbers for ``model`` on the batch ``x [B, D]``.

    ``samples``: K estimates (>= 2). ``exact``: compare with the enumerated discrete-ELBO
    gradient (default: for binary families with n <= `EXACT_GRADIENT_BITS`).
    """
    if samples < 2:
        raise ValueError(f"gradient diagnostics need at least 2 samples, got {samples}")
    family = model.family
    n = int(model.latent_dim)
    if exact is None:
        exact = bool(getattr(family, "binary", False)) and n <= EXACT_GRADIENT_BITS
    was_training = model.training
    # eval mode: a score-function baseline (a running average of past batches) is used as it
    # stands but not updated by the measurement
    model.eval()
    try:
        with torch.no_grad():
            fixed = model.encoder_params(x)  # tuple of [B, n]
        leaves = tuple(p.detach().requires_grad_() for p in fixed)
        estimates = []
        for _ in range(samples):
            terms = model.loss(x, objective=objective, generator=generator, params=leaves)
            # the surrogate is -(mean over the batch); the per-image objective's gradient:
            grads = torch.autograd.grad(-terms.surrogate * x.shape[0], leaves)
            estimates.append(_flat(grads).double())
        g = torch.stack(estimates)  # [K, B, p * n]
        b = x.shape[0]
        mean = g.mean(0)
        var = g.var(0, unbiased=True)  # [B, p * n]
        out = {
            "grad_samples": samples,
            "grad_batch": b,
            "grad_var": var.mean().item(),
            "grad_mean_norm": mean.norm().item() / math.sqrt(b),
        }
        tracker = getattr(model, "grad_ema", None)
        if tracker is not None:  # the reference's quantity, beside ours (module docstring)
            out["grad_var_param_ema"] = tracker.variance()
        if exact:
            elbo = exact_discrete_elbo(model, x, leaves)
            exact_grad = _flat(torch.autograd.grad(elbo.sum(), leaves)).double()
            bias = (mean - exact_grad).norm().item() / math.sqrt(b)
            exact_norm = exact_grad.norm().item() / math.sqrt(b)
            out.update(
                grad_exact_norm=exact_norm,
                grad_bias_norm=bias,
                grad_bias_ratio=bias / exact_norm if exact_norm > 0 else float("nan"),
                grad_bias_noise=math.sqrt(var.sum().item() / samples) / math.sqrt(b),
            )
        return out
    finally:
        model.train(was_training)
