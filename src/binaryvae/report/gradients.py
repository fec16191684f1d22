"""Gradient diagnostics of the runs (metrics.jsonl key ``gradient``), as the estimator
literature reads them: the variance of the encoder gradient estimate against training steps on
a log scale, one line per run (Dong, Mnih & Tucker 2020, Figure 5, right column), and the bias
of each family's gradient against the exact gradient of the discrete ELBO (runs of n <= 12
bits), against steps and, where runs of one family differ only in beta, against beta.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.lines import Line2D

from binaryvae.report.collect import RunRecord
from binaryvae.report.style import colour_of, figure_legend, legend_outside, new_figure, save

__all__ = ["has_gradients", "gradient_figure", "bias_vs_beta"]


def _records(rec: RunRecord) -> list[dict]:
    return [g for row in rec.metrics for g in (row.get("gradient") or [])]


def has_gradients(records: list[RunRecord]) -> bool:
    return any(_records(r) for r in records)


def gradient_figure(records: list[RunRecord], path: Path) -> Path:
    """Left: mean variance of the encoder gradient estimate per coordinate vs training step
    (log scale). Right: the bias norm relative to the exact gradient's norm vs step (binary
    runs with an exact gradient), with each run's noise level dotted (the root-mean-square norm
    of the mean's noise) and a filled marker where the bias test resolves a bias above it
    (``grad_bias_z`` > 3), a hollow one where it does not. One legend under both
    panels names every run drawn in either (a continuous run has no exact gradient: it is in
    the left panel only)."""
    fig = new_figure(12, 4.4)
    ax_var, ax_bias = fig.subplots(1, 2)
    biased = False
    handles, labels = [], []
    for i, rec in enumerate(records):
        grads = _records(rec)
        if not grads:
            continue
        colour = colour_of(i)
        steps = [g["step"] for g in grads]
        ax_var.plot(steps, [g["grad_var"] for g in grads], "-o", color=colour, ms=3,
                    label=rec.label)  # fmt: skip
        handles.append(Line2D([], [], color=colour, marker="o", ms=3))
        labels.append(rec.label)
        with_exact = [g for g in grads if "grad_bias_ratio" in g]
        if with_exact:
            biased = True
            xs = [g["step"] for g in with_exact]
            ratios = [g["grad_bias_ratio"] for g in with_exact]
            ax_bias.plot(xs, ratios, "-", color=colour, label=rec.label)
            # filled: the bias test resolves a bias above the noise there (grad_bias_z > 3,
            # binaryvae.diagnostics.gradients); hollow: not resolved (or not computed)
            resolved = [(g.get("grad_bias_z") or 0) > 3 for g in with_exact]
            for on, face in ((True, colour), (False, "white")):
                pts = [(s, r) for s, r, z in zip(xs, ratios, resolved, strict=True) if z == on]
                if pts:
                    ax_bias.plot(*zip(*pts, strict=True), "o", color=colour, mfc=face, ms=4)
            noise = [g["grad_bias_noise"] / g["grad_exact_norm"] for g in with_exact]
            ax_bias.plot(xs, noise, ":", color=colour, lw=1)
    ax_var.set_yscale("log")
    ax_var.set_xlabel("training step")
    ax_var.set_ylabel("variance per coordinate (nats per unit of encoder output)^2")
    ax_var.set_title("Variance of the encoder gradient estimate (held-out batch)")
    ax_bias.set_xlabel("training step")
    ax_bias.set_ylabel("|mean estimate - exact| / |exact|")
    ax_bias.set_title("Bias against the exact discrete-ELBO gradient\n(dotted: the mean's own "
                      "noise, an unbiased estimator's level;\nfilled: bias resolved above it, "
                      "z > 3)")  # fmt: skip
    if not biased:
        ax_bias.text(0.5, 0.5, "no run small enough (n <= 12 bits)\nfor the exact gradient",
                     ha="center", va="center", transform=ax_bias.transAxes)  # fmt: skip
    if biased:  # name the runs of the left panel only
        exact = {r.label for r in records if any("grad_bias_ratio" in g for g in _records(r))}
        labels = [t if t in exact else f"{t} (variance only: no exact gradient)" for t in labels]
    figure_legend(fig, handles, labels, ncols=min(4, len(labels)))
    fig.suptitle("Gradient diagnostics during training")
    return save(fig, path)


def bias_vs_beta(records: list[RunRecord], path: Path) -> Path | None:
    """The last measured bias ratio of each run against its beta, one line per family and
    objective, where some family was run at two or more betas (else None)."""
    groups: dict[str, list[tuple[float, float]]] = {}
    for rec in records:
        grads = [g for g in _records(rec) if "grad_bias_ratio" in g]
        if grads and rec.kind == "relaxed":
            groups.setdefault(rec.label, []).append((rec.config.beta, grads[-1]["grad_bias_ratio"]))
    groups = {k: sorted(v) for k, v in groups.items() if len({b for b, _ in v}) >= 2}
    if not groups:
        return None
    fig = new_figure(7, 4)
    ax = fig.subplots()
    for i, (label, points) in enumerate(sorted(groups.items())):
        ax.plot([b for b, _ in points], [r for _, r in points], "-o", color=colour_of(i),
                label=label)  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("beta (inverse temperature of sigmoid(beta z))")
    ax.set_ylabel("|mean estimate - exact| / |exact|")
    ax.set_title("Bias of the relaxations' gradient against the discrete ELBO's, by beta")
    legend_outside(ax)
    return save(fig, path)
