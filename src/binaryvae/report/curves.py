"""Per-epoch curves from metrics.jsonl: each run's bounds, all runs' trained objective against
the discrete bound, and the KL / reconstruction terms.

Every curve is a test-set value per epoch in nats per test image. A quantity that is on another
scale than the rest of a panel (the relaxed ELBO of a run trained on the Bernoulli ELBO, far
below its other curves: the report's caption gives the gap, `captions.off_scale_sentence`) gets
its own axes, and the axes start after the first fifth
of training (`zoom_start`; the dissertation's Fig. 5.5 starts at epoch 3), so that curves a few
nats apart stay apart instead of being flattened by the first epochs.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

from matplotlib.lines import Line2D

from binaryvae.report.collect import RunRecord
from binaryvae.report.labels import trained_series
from binaryvae.report.style import (
    NATS,
    colour_of,
    epoch_axis,
    figure_legend,
    new_figure,
    save,
)

__all__ = ["elbo_all_families", "elbo_per_family", "kl_recon_per_epoch", "zoom_start"]

# line styles shared by every panel of elbo_per_epoch.png: (style, colour, legend text)
_TRAINED = ("-", "#1f77b4", "objective the run was trained on (named in its title)")
_DISCRETE = ("--", "#d62728", "discrete ELBO: bound on log p(x) of the binary model")
_EXACT = (":", "#2ca02c", "exact log p(x) of the binary model (all 2^n codes)")
_OFF_SCALE = ("-.", "#7f7f7f", "relaxed ELBO of a run trained on the Bernoulli ELBO (own axis)")


def zoom_start(epochs: int) -> int:
    """First epoch the y axes are fitted to: 1 for short runs, else after the first fifth of
    training (epoch 3 of 15; the dissertation's Fig. 5.5 starts at epoch 3 of 125)."""
    return 1 if epochs < 6 else max(2, round(epochs / 5))


def _fit_y(ax, series: list[tuple[list[int], list[float]]], start: int) -> None:
    """y limits from the values at epochs >= start (all values when none are), 6% margin."""
    values = [y for xs, ys in series for x, y in zip(xs, ys, strict=True) if x >= start]
    values = values or [y for _, ys in series for y in ys]
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return
    lo, hi = min(values), max(values)
    pad = 0.06 * (hi - lo) or 0.5
    ax.set_ylim(lo - pad, hi + pad)


def _column(rec: RunRecord, key: str, start: int) -> tuple[list[int], list[float]]:
    """(epochs, values) of a metrics column from epoch ``start`` on."""
    xs, ys = rec.column(key)
    kept = [(x, y) for x, y in zip(xs, ys, strict=True) if x >= start]
    return [x for x, _ in kept], [y for _, y in kept]


def _plot(ax, xs, ys, style, colour, label=None) -> None:
    ax.plot(xs, ys, style, color=colour, label=label, lw=1.6, marker="." if len(xs) < 4 else None)


def _max_epoch(records: list[RunRecord]) -> int:
    return max((int(r["epoch"]) for rec in records for r in rec.metrics), default=1)


def elbo_per_family(records: list[RunRecord], path: Path) -> Path:
    """One panel per run: the objective it was trained on, the discrete ELBO and the exact
    log p(x) of the binary model it stands for (dissertation Figs 4.7, 4.8). The relaxed ELBO
    of a run trained on the Bernoulli ELBO sits far lower (`captions.off_scale_sentence`
    gives by how much): it gets its own small axes under the panel, so that the three curves
    above keep their separation."""
    n = len(records)
    ncols = min(4, n)
    nrows = math.ceil(n / ncols)
    start = zoom_start(_max_epoch(records))
    fig = new_figure(3.0 * ncols, 3.3 * nrows + 0.6)
    cells = list(fig.subfigures(nrows, ncols, squeeze=False).flat)
    used = set()
    for sf, rec in zip(cells, records, strict=False):
        key, trained_label = trained_series(rec.kind, rec.config.objective)
        off_scale = rec.kind == "relaxed" and rec.config.objective == "bernoulli-elbo"
        if off_scale:
            ax, aux = sf.subplots(2, 1, sharex=True, height_ratios=[3, 1])
        else:
            ax, aux = sf.subplots(), None
        main = [(key, _TRAINED)]
        if rec.binary:
            main += [("test_discrete_elbo", _DISCRETE), ("test_log_px_exact", _EXACT)]
        drawn, epochs = [], []
        for column, (style, colour, text) in main:
            xs, ys = _column(rec, column, start)
            if xs:
                _plot(ax, xs, ys, style, colour)
                drawn.append((xs, ys))
                epochs += xs
                used.add(text)
        _fit_y(ax, drawn, start)
        ax.set_ylabel(NATS)
        title = textwrap.fill(f"trained on: {trained_label}", width=36)
        ax.set_title(f"{rec.label}\n{title}", fontsize=8.5)
        if aux is not None:
            xs, ys = _column(rec, "test_relaxed_elbo", start)
            style, colour, text = _OFF_SCALE
            if xs:
                _plot(aux, xs, ys, style, colour)
                _fit_y(aux, [(xs, ys)], start)
                used.add(text)
            aux.set_ylabel("relaxed\nELBO", fontsize=8)
            epoch_axis(aux, epochs or xs, start)
            ax.tick_params(labelbottom=False)
        else:
            epoch_axis(ax, epochs, start)
    for sf in cells[n:]:
        sf.set_visible(False)  # the unused cells of the last row
    styles = [s for s in (_TRAINED, _DISCRETE, _EXACT, _OFF_SCALE) if s[2] in used]
    handles = [Line2D([], [], ls=s, color=c, lw=1.6) for s, c, _ in styles]
    figure_legend(fig, handles, [t for *_, t in styles], ncols=2)
    note = f" (from epoch {start}: the first epochs lie far below)" if start > 1 else ""
    fig.suptitle(f"Test-set bounds per epoch, one panel per run{note}")
    return save(fig, path)


def elbo_all_families(records: list[RunRecord], path: Path) -> Path:
    """All runs side by side: each one's trained objective (left) and the discrete ELBO of the
    binary model it stands for (right), on one shared y axis (dissertation Fig. 5.5, and A.5 on
    Fashion-MNIST). The autoencoder has no bound and is left out."""
    start = zoom_start(_max_epoch(records))
    fig = new_figure(11, 4.8)
    left, right = fig.subplots(1, 2, sharey=True)
    drawn, epochs, handles, labels = [], [], [], []
    for i, rec in enumerate(records):
        if rec.kind == "autoencoder":
            continue  # a reconstruction term is on no common footing with the bounds
        colour = colour_of(i)
        key, _ = trained_series(rec.kind, rec.config.objective)
        xs, ys = _column(rec, key, start)
        if xs:
            _plot(left, xs, ys, "-", colour)
            drawn.append((xs, ys))
            epochs += xs
        xs, ys = _column(rec, "test_discrete_elbo", start)
        if xs:
            _plot(right, xs, ys, "--", colour)
            drawn.append((xs, ys))
            epochs += xs
        handles.append(Line2D([], [], color=colour, lw=1.6))
        labels.append(rec.label)
    _fit_y(left, drawn, start)
    left.set_title("objective each run was trained on\n(Bernoulli ELBO runs: not a bound)")
    right.set_title("discrete ELBO of the binary model each run stands for\n(a bound; "
                    "the Normal-latent gaussian has none)")  # fmt: skip
    left.set_ylabel(NATS + " (higher is better)")
    for ax in (left, right):
        epoch_axis(ax, epochs, start)
    figure_legend(fig, handles, labels, ncols=min(4, len(labels)))
    note = f", from epoch {start} (the first epochs lie far below)" if start > 1 else ""
    fig.suptitle(f"Trained objective vs the discrete bound, test set{note}")
    return save(fig, path)


def kl_recon_per_epoch(records: list[RunRecord], path: Path) -> tuple[Path, str]:
    """Test KL and reconstruction terms per epoch (notes Figs 10-11), one panel per quantity:

    - the KL term of the ELBO each run was trained on (runs trained on their own ELBO);
    - the Bernoulli KL of the binary model, KL(Bernoulli(lambda(x)) || prior) (binary runs);
    - the reconstruction term E_q log p(x | decoder input) (every run; the autoencoder's is
      log p(x | code)).

    Runs trained on the Bernoulli ELBO were not trained on their family's KL (far larger than
    the others'): it is left out rather than flattening every other curve. Returns the
    path and a sentence naming what was left out (empty when nothing was).
    """
    start = zoom_start(_max_epoch(records))
    fig = new_figure(12, 4.2)
    ax_kl, ax_bits, ax_rec = fig.subplots(1, 3)
    left_out = []
    handles, labels, epochs = [], [], []
    for i, rec in enumerate(records):
        colour = colour_of(i)
        if rec.kind != "autoencoder" and rec.config.objective == "elbo":
            xs, ys = _column(rec, "test_kl", start)
            if xs:
                _plot(ax_kl, xs, ys, "-", colour)
        elif rec.kind != "autoencoder":
            xs, ys = _column(rec, "test_kl", start)
            if ys:
                left_out.append(f"{rec.label}: {ys[-1]:.1f} nats at epoch {xs[-1]}")
        xs, ys = _column(rec, "test_discrete_kl", start)
        if xs:
            _plot(ax_bits, xs, ys, "--", colour)
        xs, ys = _column(rec, "test_recon", start)
        if xs:
            _plot(ax_rec, xs, ys, "-", colour)
            epochs += xs
        handles.append(Line2D([], [], color=colour, lw=1.6))
        labels.append(rec.label + (" (code, no KL)" if rec.kind == "autoencoder" else ""))
    ax_kl.set_title("KL(q(z|x) || p(z)) of the trained ELBO")
    ax_bits.set_title("Bernoulli KL of the binary model\nKL(Bernoulli(lambda(x)) || prior)")
    ax_rec.set_title("reconstruction term\nE_q log p(x | decoder input)")
    ax_kl.set_ylabel("KL, " + NATS)
    ax_bits.set_ylabel("KL, " + NATS)
    ax_rec.set_ylabel(NATS + " (higher is better)")
    for ax in (ax_kl, ax_bits, ax_rec):
        epoch_axis(ax, epochs, start)
    figure_legend(fig, handles, labels, ncols=min(4, len(labels)))
    note = f", from epoch {start}" if start > 1 else ""
    fig.suptitle(f"KL and reconstruction terms per epoch, test set{note}")
    note = ""
    if left_out:
        note = (
            "The family's own KL of runs trained on the Bernoulli ELBO is not drawn (they were "
            "not trained on it, and it would flatten the other curves): "
            + "; ".join(left_out)
            + "."
        )
    return save(fig, path), note
