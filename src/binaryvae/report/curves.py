"""Per-epoch curves from metrics.jsonl: bounds per family, and the KL / reconstruction terms."""

from __future__ import annotations

import math
from pathlib import Path

from binaryvae.report.collect import RunRecord
from binaryvae.report.plotting import COLOURS, new_figure, save

__all__ = ["elbo_per_family", "elbo_all_families", "kl_recon_per_epoch"]

# metrics column -> (legend text, line style); DESIGN.md vocabulary
BOUND_LINES = (
    ("test_relaxed_elbo", "relaxed ELBO (bound, relaxed model)", "-"),
    ("test_bernoulli_elbo", "Bernoulli ELBO (not a bound)", "--"),
    ("test_discrete_elbo", "discrete ELBO (bound, discrete model)", ":"),
    ("test_log_px_exact", "exact log p(x) (discrete model)", "-."),
)


def _legend(ax, ncols: int = 1) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, ncols=ncols)


def elbo_per_family(records: list[RunRecord], path: Path) -> Path:
    """One panel per run: the trained bound against the discrete bound and the exact log p(x)
    (dissertation Figures 4.6, 4.7, 4.8, A.5)."""
    n = len(records)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig = new_figure(4.2 * ncols, 3.2 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax, rec in zip(axes.flat, records, strict=False):
        lines = BOUND_LINES
        if not rec.has_likelihood:
            lines = (("test_recon", "reconstruction term E log p(x|code) (not a bound)", "-"),)
        for (key, text, style), colour in zip(lines, COLOURS, strict=False):
            xs, ys = rec.column(key)
            if xs:
                ax.plot(
                    xs, ys, style, color=colour, label=text, marker="." if len(xs) < 3 else None
                )
        trained = rec.summary.get("objective_label") or rec.config.objective_label()
        ax.set_title(f"{rec.label}\ntrained on: {trained}", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("nats per test image (higher is better)")
        ax.grid(alpha=0.3)
        _legend(ax)
    fig.suptitle("Test-set bounds per epoch", fontsize=11)
    return save(fig, path)


def elbo_all_families(records: list[RunRecord], path: Path) -> Path:
    """All families on one axes: each one's trained objective (solid) and its discrete ELBO
    (dotted) -- the comparison of dissertation Figure 5.5, on the footing of the discrete model."""
    fig = new_figure(7.5, 4.5)
    ax = fig.subplots()
    for rec, colour in zip(records, COLOURS * 3, strict=False):
        if not rec.has_likelihood:
            continue  # an autoencoder's reconstruction term is on no common footing
        own = (
            "test_bernoulli_elbo"
            if rec.config.objective == "bernoulli-elbo"
            else "test_relaxed_elbo"
        )
        xs, ys = rec.column(own)
        if xs:
            ax.plot(xs, ys, "-", color=colour, label=f"{rec.label}: {own[5:].replace('_', ' ')}")
        xs, ys = rec.column("test_discrete_elbo")
        if xs:
            ax.plot(xs, ys, ":", color=colour, label=f"{rec.label}: discrete ELBO")
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per test image (higher is better)")
    ax.set_title("Trained objective (solid) vs the discrete bound (dotted)")
    ax.grid(alpha=0.3)
    _legend(ax, ncols=2)
    return save(fig, path)


def kl_recon_per_epoch(records: list[RunRecord], path: Path) -> Path:
    """Test KL term and reconstruction term E_q log p(x|z) per epoch (notes Figures 10-11)."""
    fig = new_figure(10, 4)
    ax_kl, ax_rec = fig.subplots(1, 2)
    for rec, colour in zip(records, COLOURS * 3, strict=False):
        for ax, key in ((ax_kl, "test_kl"), (ax_rec, "test_recon")):
            xs, ys = rec.column(key)
            if xs:
                ax.plot(xs, ys, color=colour, label=rec.label)
    ax_kl.set_title("KL(q(z|x) || p(z)) per test image")
    ax_rec.set_title("reconstruction term E_q[log p(x|z)] per test image")
    for ax in (ax_kl, ax_rec):
        ax.set_xlabel("epoch")
        ax.set_ylabel("nats")
        ax.grid(alpha=0.3)
        _legend(ax)
    return save(fig, path)
