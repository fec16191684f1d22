"""Figures and tables of the distributions and the theory (no trained model needed), drawn from
the data `binaryvae.theory` computes:

- StepLogistic: histogram of inverse-CDF samples against the pdf (Figure 5.4), and the CDF
  (Figure 5.3);
- the toy posterior of section 5.1 with its best Logistic and StepLogistic fits (Figure 5.1);
- Table 5.1: KL of Logistic(mu, 1) vs Bernoulli(sigmoid(mu)) to the prior;
- SmoothStepLogistic pdf against the StepLogistic pdf (Figure 5.7) and the CDFs (Figure 5.8).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from binaryvae.report.document import FigureItem, TableItem, fmt
from binaryvae.report.plotting import new_figure, save

__all__ = [
    "smoothstep_figure",
    "steplogistic_figure",
    "table_5_1_item",
    "theory_items",
    "toy_posterior_figure",
]


def steplogistic_figure(path: Path) -> Path:
    """Figure 5.4 (samples vs pdf, alpha = 0.5) beside Figure 5.3 (the CDF, alpha = 1.5)."""
    from binaryvae import theory

    h = theory.figure_5_4_data()
    c = theory.figure_5_3_data()
    fig = new_figure(10, 4)
    ax1, ax2 = fig.subplots(1, 2)
    edges = h["hist_edges"]
    ax1.bar(edges[:-1], h["hist_density"], width=np.diff(edges), align="edge", color="#9ecae1",
            label="samples by the inverse CDF (normalised)")  # fmt: skip
    ax1.plot(h["z"], h["pdf"], color="#d62728", lw=1.5, label="pdf (eq. 5.4)")
    ax1.set_title(f"StepLogistic(alpha={h['alpha']:g}): samples vs pdf (Fig. 5.4)", fontsize=9)
    ax2.plot(c["z"], c["cdf"], color="#1f77b4", lw=1.5, label="CDF (eq. 5.6)")
    ax2.axhline(1 - c["alpha"] / 2, color="#999", lw=0.8, ls="--", label="1 - alpha/2 = F(0)")
    ax2.set_title(f"StepLogistic(alpha={c['alpha']:g}): CDF (Fig. 5.3)", fontsize=9)
    for ax in (ax1, ax2):
        ax.set_xlabel("z")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save(fig, path)


def toy_posterior_figure(path: Path) -> tuple[Path, dict]:
    """Figure 5.1: the toy model's exact posterior p(z | x = 1) with its best Logistic(mu, 1)
    fit and its best StepLogistic fit (which is the posterior itself)."""
    from binaryvae import theory

    d = theory.figure_5_1_data()
    fig = new_figure(6.5, 4)
    ax = fig.subplots()
    ax.plot(d["z"], d["posterior"], color="k", lw=2.5, label="exact posterior p(z | x=1)")
    ax.plot(d["z"], d["best_logistic"], "--", color="#1f77b4",
            label=f"best Logistic(mu={d['mu']:.3f}, 1): KL {d['kl_logistic']:.4f}")  # fmt: skip
    ax.plot(d["z"], d["best_steplogistic"], ":", color="#d62728", lw=2,
            label=f"best StepLogistic: KL {d['kl_steplogistic']:.4f}")  # fmt: skip
    ax.set_xlabel("z")
    ax.set_ylabel("density")
    ax.set_title("Toy model of section 5.1: posterior and fits (Fig. 5.1)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path), d


def smoothstep_figure(path: Path) -> Path:
    """Figures 5.7 and 5.8: SmoothStepLogistic pdf (eq. 5.8) vs StepLogistic, and the CDFs."""
    from binaryvae import theory

    p = theory.figure_5_7_data()
    c = theory.figure_5_8_data()
    fig = new_figure(10, 4)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(p["z"], p["step_pdf"], color="#999", lw=1.5, label="StepLogistic pdf (eq. 5.4)")
    ax1.plot(p["z"], p["smooth_pdf"], color="#d62728", lw=1.5,
             label=f"SmoothStepLogistic pdf (eq. 5.8), beta={p['beta']:g}")  # fmt: skip
    ax1.set_title(f"alpha={p['alpha']:g}: smoothed pdf (Fig. 5.7)", fontsize=9)
    ax2.plot(c["z"], c["step_cdf"], color="#999", lw=1.5, label="StepLogistic CDF (eq. 5.6)")
    ax2.plot(c["z"], c["smooth_pdf_cdf"], color="#d62728", lw=1.5,
             label="exact CDF of eq. 5.8 (this library)")  # fmt: skip
    ax2.plot(c["z"], c["eq_5_9_cdf"], ":", color="#1f77b4", lw=1.5,
             label="dissertation's smooth CDF (eq. 5.9)")  # fmt: skip
    ax2.set_title(f"alpha={c['alpha']:g}, beta={c['beta']:g}: CDFs (Fig. 5.8)", fontsize=9)
    for ax in (ax1, ax2):
        ax.set_xlabel("z")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save(fig, path)


def table_5_1_item() -> TableItem:
    from binaryvae import theory

    rows = [
        [fmt(r["mu"], 1), fmt(r["kl_logistic"], 5), fmt(r["kl_bernoulli"], 5),
         fmt(r["ratio"], 2),
         "—" if r["dissertation_logistic"] is None
         else f"{r['dissertation_logistic']:.2f} / {r['dissertation_bernoulli']:.2f}"]
        for r in theory.table_5_1()
    ]  # fmt: skip
    return TableItem(
        "Table 5.1: KL to the prior, Logistic vs Bernoulli (one dimension)",
        [
            "mu",
            "KL(Logistic(mu,1) || Logistic(0,1))",
            "KL(Bern(sigmoid(mu)) || Bern(1/2))",
            "ratio",
            "dissertation (Logistic / Bernoulli)",
        ],  # fmt: skip
        rows,
        "Closed form mu coth(mu/2) - 2 for the Logistic KL (checked by quadrature in "
        "binaryvae.theory); the same for -mu. The Logistic KL grows like |mu| - 2 while the "
        "Bernoulli KL saturates at log 2: the Logistic relaxation over-penalises confident bits.",
    )


def theory_items(figs: Path) -> tuple[list, list[str]]:
    """The theory section's figures and tables; and what could not be drawn, with why."""
    items, omitted = [], []
    items.append(FigureItem(
        steplogistic_figure(figs / "steplogistic.png"),
        "StepLogistic samples, pdf and CDF",
        "Normalised histogram of 100,000 inverse-CDF samples (eq. 5.7) against the pdf "
        "(eq. 5.4), and the CDF (eq. 5.6), continuous with a kink at 0 (Figs 5.3, 5.4).",
    ))  # fmt: skip
    path, d = toy_posterior_figure(figs / "toy_posterior.png")
    items.append(FigureItem(
        path, "Toy posterior and its Logistic and StepLogistic fits",
        "Exact posterior of the toy model (x ~ N(step(z), 0.5^2), z ~ Logistic(0,1), x = 1), "
        f"the KL-optimal Logistic(mu, 1) (mu = {d['mu']:.3f}) and StepLogistic fits; the "
        "StepLogistic family contains the posterior exactly (Fig. 5.1, fitted to optimum rather "
        "than for 400 iterations).",
    ))  # fmt: skip
    items.append(table_5_1_item())
    items.append(FigureItem(
        smoothstep_figure(figs / "smoothstep.png"),
        "SmoothStepLogistic pdf and CDF",
        "The smoothed StepLogistic density (eq. 5.8) against the StepLogistic density, and its "
        "exact CDF (the dissertation's open problem, solved here) beside the dissertation's "
        "eq. 5.9, which is not a CDF for every alpha (Figs 5.7, 5.8).",
    ))  # fmt: skip
    return items, omitted
