"""Per-dimension statistics of the codes: lambda / posterior-mean histograms (diss. Figure 5.2),
active units (Burda et al. 2016, section 5.2) and bits stuck at 0 or 1.

- activity of dimension i: A_i = Var_x( E_q(z|x)[z_i] ) over the test images (Burda et al. 2016);
  for a binary family E_q[b_i] = lambda_i(x). Dimension i is *active* when A_i > 0.01, Burda's
  threshold (for bits, whose variance is at most 1/4, it means lambda_i moves by about 0.1 or
  more across images).
- a bit is *stuck at 0* (1) when lambda_i(x) < eps (> 1 - eps) for every test image: it carries
  no information and always decodes the same value. A bit with lambda = 1/2 everywhere is
  inactive but not stuck (it has collapsed to the prior).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from binaryvae.evaluation._common import eval_mode, is_binary, to_model

__all__ = ["BitStatistics", "bit_statistics", "ACTIVE_THRESHOLD", "STUCK_EPS"]

ACTIVE_THRESHOLD = 0.01  # Burda et al. 2016, section 5.2
STUCK_EPS = 0.01  # lambda within 1% of 0 or 1 on every image
LAMBDA_BINS = 20  # histogram of lambda over [0, 1]
MEAN_BINS = 45  # histogram of posterior means (diss. Figure 5.2 uses 45 bins)


@dataclass
class BitStatistics:
    """Per-dimension code statistics on a set of images (JSON-ready through `to_dict`)."""

    latent_dim: int
    binary: bool  # lambda is defined (binary family); else only posterior means are
    activity: list[float]  # [n] Var_x E_q[z_i] (Burda et al. 2016)
    active_bits: int  # number of dimensions with activity > ACTIVE_THRESHOLD
    lambda_mean: list[float] | None  # [n] mean over images of lambda_i(x)
    stuck_at_0: list[int] | None  # indices i with lambda_i(x) < STUCK_EPS for every x
    stuck_at_1: list[int] | None  # indices i with lambda_i(x) > 1 - STUCK_EPS for every x
    lambda_hist: dict[str, list[float]] | None  # {"edges": [21], "counts": [20]} over [0, 1]
    posterior_mean_hist: dict[str, list[float]]  # {"edges": [46], "counts": [45]} (Figure 5.2):
    # of logit(lambda) for binary families (= mu for logistic), of encode_mean otherwise

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _histogram(values: torch.Tensor, bins: int, lo: float, hi: float) -> dict[str, list[float]]:
    """Counts of values [N] in `bins` equal bins over [lo, hi] (values outside are clipped)."""
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    counts = torch.histc(values.float().clamp(lo, hi), bins=bins, min=lo, max=hi)
    edges = torch.linspace(lo, hi, bins + 1)
    return {"edges": edges.tolist(), "counts": counts.tolist()}


@torch.no_grad()
def bit_statistics(
    model: Any,
    x: torch.Tensor,
    *,
    active_threshold: float = ACTIVE_THRESHOLD,
    stuck_eps: float = STUCK_EPS,
    batch_size: int = 1000,
) -> BitStatistics:
    """Code statistics of `model` on images x [B, D] (all of them; batched by `batch_size`).

    The histogram of posterior means (Figure 5.2) is taken over the locations: logit(lambda(x))
    (`model.bit_logits`) for binary families, which is the Logistic family's mean mu exactly
    (lambda = sigmoid(mu), diss. 4.2); `model.encode_mean` otherwise (the Gaussian mean, the
    autoencoder's code). lambda comes from `model.bit_probs`.
    """
    x = to_model(model, x)
    binary = is_binary(model)
    means, lams = [], []
    with eval_mode(model):
        for i in range(0, x.shape[0], batch_size):
            xb = x[i : i + batch_size]
            means.append(_posterior_means(model, xb).float().cpu())  # [B', n]
            if binary:
                lams.append(model.bit_probs(xb).float().cpu())  # [B', n]
    means_t = torch.cat(means)  # [B, n]
    expectation = torch.cat(lams) if binary else means_t  # E_q[z] per image, [B, n]
    activity = (
        expectation.var(dim=0, unbiased=False)
        if len(expectation) > 1
        else torch.zeros(expectation.shape[1])
    )  # [n]
    lo, hi = float(means_t.min()), float(means_t.max())
    stats = BitStatistics(
        latent_dim=int(expectation.shape[1]),
        binary=binary,
        activity=activity.tolist(),
        active_bits=int((activity > active_threshold).sum()),
        lambda_mean=None,
        stuck_at_0=None,
        stuck_at_1=None,
        lambda_hist=None,
        posterior_mean_hist=_histogram(means_t.flatten(), MEAN_BINS, lo, hi),
    )
    if binary:
        lam = expectation  # [B, n]
        stats.lambda_mean = lam.mean(0).tolist()
        stats.stuck_at_0 = torch.nonzero(lam.amax(0) < stuck_eps).flatten().tolist()
        stats.stuck_at_1 = torch.nonzero(lam.amin(0) > 1 - stuck_eps).flatten().tolist()
        stats.lambda_hist = _histogram(lam.flatten(), LAMBDA_BINS, 0.0, 1.0)
    return stats


def _posterior_means(model: Any, x: torch.Tensor) -> torch.Tensor:
    """Posterior locations [B, n]: logit(lambda) for binary families, else model.encode_mean."""
    return model.bit_logits(x) if is_binary(model) else model.encode_mean(x)
