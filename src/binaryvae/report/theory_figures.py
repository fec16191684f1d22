"""Figures of the distributions and the theory (no trained model needed).

- StepLogistic: histogram of samples against the pdf, and the CDF (dissertation Figs 5.3, 5.4);
- the toy posterior of section 5.1 with its Logistic and StepLogistic fits (Figure 5.1), Table 5.1
  and the smoothed StepLogistic pdf / CDF (Figures 5.7, 5.8): data from `binaryvae.theory`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from binaryvae.report.plotting import new_figure, save

__all__ = ["steplogistic_figure"]


@torch.no_grad()
def steplogistic_figure(
    path: Path,
    alpha_hist: float = 0.5,
    alpha_cdf: float = 1.5,
    samples: int = 200_000,
    seed: int = 0,
) -> Path:
    """Left: normalised histogram of StepLogistic(alpha=0.5) samples (by the inverse CDF,
    eq. 5.7) against its pdf (eq. 5.4) -- Figure 5.4. Right: the CDF for alpha=1.5 (eq. 5.6)
    -- Figure 5.3, with the empirical CDF of the samples drawn for that alpha."""
    from binaryvae.distributions import StepLogistic

    torch.manual_seed(seed)
    z = torch.linspace(-8.0, 8.0, 1601, dtype=torch.float64)
    fig = new_figure(10, 4)
    ax1, ax2 = fig.subplots(1, 2)
    d = StepLogistic(alpha=torch.tensor(alpha_hist, dtype=torch.float64))
    s = d.sample((samples,)).numpy()
    ax1.hist(
        s, bins=200, range=(-8, 8), density=True, color="#9ecae1", label="samples (normalised)"
    )
    ax1.plot(z.numpy(), d.log_prob(z).exp().numpy(), color="#d62728", lw=1.5, label="pdf")
    ax1.set_title(f"StepLogistic(alpha={alpha_hist:g}): samples vs pdf (Fig. 5.4)", fontsize=9)
    ax1.set_xlabel("z")
    ax1.legend(fontsize=8)
    d2 = StepLogistic(alpha=torch.tensor(alpha_cdf, dtype=torch.float64))
    ax2.plot(z.numpy(), d2.cdf(z).numpy(), color="#1f77b4", lw=1.5, label="CDF (eq. 5.6)")
    s2 = torch.sort(d2.sample((20_000,))).values.numpy()
    ax2.plot(
        s2,
        (torch.arange(1, len(s2) + 1) / len(s2)).numpy(),
        ":",
        color="k",
        label="empirical CDF of samples",
    )
    ax2.axhline(1 - alpha_cdf / 2, color="#999", lw=0.8, ls="--")
    ax2.set_title(
        f"StepLogistic(alpha={alpha_cdf:g}) CDF (Fig. 5.3); jump-free, kink at 0", fontsize=9
    )
    ax2.set_xlabel("z")
    ax2.legend(fontsize=8)
    ax2.set_xlim(-8, 8)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    return save(fig, path)
