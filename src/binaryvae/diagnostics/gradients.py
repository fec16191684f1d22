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
  (mean estimate - exact gradient), with ``grad_bias_ratio`` = bias / exact norm,
  ``grad_bias_noise``: the root-mean-square norm that the mean's own sampling noise alone
  gives (sqrt(sum of variances / K)), and the bias test below (`bias_statistics`). A bias
  well above the noise is a measured bias: of straight-through, of a relaxation at its beta,
  of the Bernoulli ELBO (which is not the discrete ELBO's gradient); an unbiased estimator's
  bias sits at the noise.

All norms are per image (divided by sqrt(B)). The noise comes from its own generator, so
measuring never moves the training's random streams.

The bias test: what an unbiased estimator's ``grad_bias_norm`` should read
---------------------------------------------------------------------------
Write d_k = g_k - g for the k-th of K independent estimates (all P = B * p * n coordinates of
the batch in one vector) minus the exact gradient g, with mean mu (the bias) and covariance
Sigma. The mean estimate's error is dbar = (1/K) sum_k d_k, and with the sample covariance S
(ddof = 1, over the K draws, per coordinate: the diagonal is all that the trace needs):

    E ||dbar||^2  = ||mu||^2 + tr(Sigma) / K                                          (1)
    E tr(S)       = tr(Sigma)                                                         (2)

exactly, whatever the noise's distribution and correlations (only the trace enters: the
coordinates may be correlated across images and bits). So under unbiasedness (mu = 0) the
*squared* bias norm has expectation tr(Sigma) / K, which ``grad_bias_noise`` =
sqrt(tr(S) / K) / sqrt(B) estimates. It is a norm, not a ratio: it falls as 1/sqrt(K) with
the number of draws (on mnist-mini, 8 bits, at K = 64 it reads 2.2-2.6 and at K = 512
0.76-0.90, for DisARM and REINFORCE-LOO alike, while their bias / noise reads 0.99-1.04).
The *norm* itself is not centred on it: by Jensen E ||dbar|| < sqrt(E ||dbar||^2), and for
Gaussian noise E ||dbar|| = sqrt(tr(Sigma) / K) * c with c between sqrt(2 / pi) = 0.80 (the
noise in one direction) and 1 (many), c ~ 1 - 1 / (4 d_eff), where

    d_eff = tr(Sigma)^2 / tr(Sigma^2)                                                 (3)

is the number of directions the noise spreads over. The ratio of norms bias / noise therefore
reads low (down to 0.8) when few directions carry the noise, and its spread, sqrt(1 / (2 d_eff))
for many directions, is what decides whether a reading of 1.1 is a bias or noise. Hence, from
the same K draws:

- ``grad_bias_sq_ratio`` = ||dbar||^2 / (tr(S) / K): numerator and denominator have the same
  expectation under unbiasedness, by (1) and (2), so it sits near 1 at any K (for Gaussian
  noise dbar and S are independent and its mean is 1 + O(1 / (d_eff K)), at most
  (K - 1) / (K - 3) for one direction); its standard deviation is about sqrt(2 / d_eff). It is
  the square of grad_bias_norm / grad_bias_noise.
- ``grad_bias_z``: the standardised excess of the squared bias over the noise,

      U = ||dbar||^2 - tr(S) / K = (1 / (K (K - 1))) sum_{j != k} d_j . d_k,          (4)

  a U-statistic with E U = ||mu||^2 exactly, so E U = 0 under unbiasedness; with mu = 0 its
  pairs are uncorrelated and Var U = 2 tr(Sigma^2) / (K (K - 1)) exactly (Hoeffding). tr(Sigma^2)
  is estimated from the same draws, without bias under mu = 0, by Chen & Qin's leave-two-out
  estimator (their estimator of tr(Sigma_i^2), one sample)

      T = (1 / (K (K - 1))) sum_{j != k} (d_j . (d_k - dbar_(jk))) (d_k . (d_j - dbar_(jk))),

  dbar_(jk) the mean of the other K - 2 draws (computed from the K x K Gram matrix of the
  d_k). z = U / sqrt(2 T / (K (K - 1))): under unbiasedness U has mean 0 and the variance
  above exactly, so z has mean near 0 and variance near 1 for any noise distribution (T in
  place of tr(Sigma^2) is the approximation), approximately N(0, 1) when d_eff is large
  (Chen & Qin's condition tr(Sigma^4) = o(tr(Sigma^2)^2)), and right-skewed when few
  directions dominate. A bias is resolved above noise when z > 3 (one-sided). For a bias mu,
  z grows as ||mu||^2 / sqrt(2 tr(Sigma^2) / K^2): like K, not sqrt(K). Needs K >= 3.
- ``grad_bias_debiased`` = sqrt(max(U, 0)) / sqrt(B): the bias norm with the noise's share
  (1) taken out (0 when the noise explains the reading), and ``grad_noise_dims``: d_eff (3)
  with tr(S)^2 / T.

z is the one-sample form of the high-dimensional mean test of Chen & Qin (2010), "A two-sample
test for high-dimensional data with applications to gene-set testing", Ann. Statist. 38(2),
applied to the d_k.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from binaryvae.distributions import bernoulli_kl
from binaryvae.evaluation.exact import default_dtype, enumerate_codes, log_lik_matrix

__all__ = ["EXACT_GRADIENT_BITS", "bias_statistics", "exact_discrete_elbo", "gradient_diagnostics"]

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


def bias_statistics(draws: torch.Tensor, exact: torch.Tensor) -> dict[str, float]:
    """The bias test of the module docstring on K independent estimates ``draws [K, P]`` of a
    vector whose exact value is ``exact [P]`` (no per-image scaling: whole-vector norms).

    Returns ``bias_sq`` = ||dbar||^2, ``noise_sq`` = tr(S) / K (its expectation under
    unbiasedness, (1)-(2)), ``sq_ratio`` = bias_sq / noise_sq, ``excess`` = U (4) (unbiased for
    ||mu||^2), and for K >= 3 ``trace_sq`` = T (unbiased for tr(Sigma^2) when mu = 0),
    ``excess_se`` = sqrt(2 T / (K (K - 1))), ``z`` = U / excess_se and ``dims`` = tr(S)^2 / T.
    Computed in float64.
    """
    d = draws.double() - exact.double()  # [K, P]
    k = d.shape[0]
    if k < 2:
        raise ValueError(f"the bias test needs at least 2 draws, got {k}")
    dbar = d.mean(0)
    bias_sq = dbar.square().sum().item()
    trace = d.var(0, unbiased=True).sum().item()  # tr(S)
    noise_sq = trace / k
    out = {
        "bias_sq": bias_sq,
        "noise_sq": noise_sq,
        "sq_ratio": bias_sq / noise_sq if noise_sq > 0 else float("nan"),
        "excess": bias_sq - noise_sq,
    }
    if k >= 3:
        gram = d @ d.T  # [K, K]: d_j . d_k
        diag = gram.diagonal()
        rows = gram.sum(1)
        # d_j . dbar_(jk) = (r_j - G_jj - G_jk) / (K - 2)
        left = gram - (rows[:, None] - diag[:, None] - gram) / (k - 2)  # d_j . (d_k - dbar_(jk))
        prod = left * left.T  # [j, k]: times d_k . (d_j - dbar_(jk))
        t = (prod.sum() - prod.diagonal().sum()).item() / (k * (k - 1))
        se = math.sqrt(2 * t / (k * (k - 1))) if t > 0 else float("nan")
        out.update(
            trace_sq=t,
            excess_se=se,
            z=out["excess"] / se if se > 0 else float("nan"),
            dims=trace**2 / t if t > 0 else float("nan"),
        )
    return out


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

    ``samples``: K estimates (>= 2; the bias test's ``grad_bias_z`` and ``grad_noise_dims``
    need K >= 3). ``exact``: compare with the enumerated discrete-ELBO
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
            test = bias_statistics(g.reshape(samples, -1), exact_grad.reshape(-1))
            bias = math.sqrt(test["bias_sq"] / b)
            exact_norm = exact_grad.norm().item() / math.sqrt(b)
            out.update(
                grad_exact_norm=exact_norm,
                grad_bias_norm=bias,
                grad_bias_ratio=bias / exact_norm if exact_norm > 0 else float("nan"),
                grad_bias_noise=math.sqrt(test["noise_sq"] / b),
                grad_bias_sq_ratio=test["sq_ratio"],
                grad_bias_debiased=math.sqrt(max(test["excess"], 0.0) / b),
            )
            if "z" in test:
                out.update(grad_bias_z=test["z"], grad_noise_dims=test["dims"])
        return out
    finally:
        model.train(was_training)
