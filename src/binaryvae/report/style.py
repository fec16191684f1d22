"""The one plotting style of every figure binaryvae draws: sizes, fonts, colours, axes, legends.

Figures are matplotlib `Figure`s on the Agg canvas (no pyplot global state), drawn inside
`context()` so that every figure gets the same fonts and grid. The rules each figure follows:

- at most `MAX_WIDTH` inches wide at `DPI` (1,200 px: the width report.html shows at 1:1);
- axis labels with units: nats per test image for bounds and terms, "epoch" with integer ticks
  (`epoch_axis`), densities and counts named as such;
- a title that says what is plotted; legends outside the data (`legend_outside`,
  `figure_legend`);
- every title, axis label and legend inside the figure: before a figure of `new_figure` is
  saved, `fit_text` widens it to its text (up to `MAX_WIDTH`), then wraps the titles and
  narrows the legends that still do not fit;
- one scale per quantity: a series that dwarfs the others gets its own axes (the callers split
  panels), never a shared axis that flattens the rest.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.artist import Artist
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.ticker import MaxNLocator

from binaryvae.storage import atomic_write_bytes

__all__ = [
    "COLOURS",
    "DPI",
    "MAX_WIDTH",
    "NATS",
    "colour_of",
    "context",
    "epoch_axis",
    "figure_legend",
    "fit_text",
    "legend_outside",
    "new_figure",
    "save",
    "show_grid",
    "text_artists",
    "tile",
]

DPI = 100
MAX_WIDTH = 12.0  # inches: 1,200 px at DPI, report.html's text width
NATS = "nats per test image"

# one colour per run, in the order the runs are listed (matplotlib's tab10)
COLOURS = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
]  # fmt: skip

_RC = {
    "font.size": 9,
    "axes.titlesize": 9.5,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "figure.titlesize": 11,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "image.cmap": "viridis",
}


def context():
    """``with context(): ...`` draws with the shared style (restored afterwards)."""
    return matplotlib.rc_context(_RC)


def colour_of(index: int) -> str:
    """The colour of the ``index``-th run (cycles after ten)."""
    return COLOURS[index % len(COLOURS)]


class _FittedFigure(Figure):
    """A `Figure` that fits its text into its bounds (`fit_text`) whenever it is saved."""

    def savefig(self, *args, **kwargs):
        fit_text(self)
        return super().savefig(*args, **kwargs)


def new_figure(width: float, height: float) -> Figure:
    """A figure of ``width`` x ``height`` inches (width capped at `MAX_WIDTH`), constrained
    layout, so that labels and outside legends are never cut off; saving it first fits its
    titles, labels and legends into its bounds (`fit_text`)."""
    fig = _FittedFigure(figsize=(min(width, MAX_WIDTH), height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _shown(artist) -> bool:
    """True when ``artist`` and every axes / (sub)figure holding it are visible."""
    seen: set[int] = set()
    while artist is not None and id(artist) not in seen:
        seen.add(id(artist))
        if not artist.get_visible():
            return False
        parents = (getattr(artist, "axes", None), getattr(artist, "_parent", None),
                   getattr(artist, "figure", None))  # fmt: skip
        artist = next((p for p in parents if isinstance(p, Artist) and id(p) not in seen), None)
    return True


def _figures(fig) -> list:
    """``fig`` and its subfigures, depth first."""
    out = [fig]
    for sub in getattr(fig, "subfigs", []):
        out += _figures(sub)
    return out


def text_artists(fig: Figure) -> list[Text]:
    """The visible, non-empty titles, axis labels, legend texts and free texts of ``fig`` (its
    subfigures and axes included). Tick labels are not among them: matplotlib draws only the
    ticks inside the axes' view."""
    texts: list[Text] = []
    for f in _figures(fig):
        texts += [getattr(f, name, None) for name in ("_suptitle", "_supxlabel", "_supylabel")]
        texts += list(f.texts)
        for legend in f.legends:
            texts += [*legend.get_texts(), legend.get_title()]
    for ax in fig.axes:
        texts += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label]
        texts += list(ax.texts)
        if ax.get_legend() is not None:
            texts += [*ax.get_legend().get_texts(), ax.get_legend().get_title()]
    unique = {id(t): t for t in texts if isinstance(t, Text)}
    return [t for t in unique.values() if t.get_text().strip() and _shown(t)]


def _overflow(fig: Figure) -> tuple[float, float, dict[Text, float]]:
    """(pixels of text beyond the figure's width, beyond its height, {text beyond it: its
    horizontal overflow in pixels})."""
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    dx = dy = 0.0
    out = {}
    for t in text_artists(fig):
        e = t.get_window_extent(renderer)
        left, right = box.x0 - e.x0, e.x1 - box.x1
        below, above = box.y0 - e.y0, e.y1 - box.y1
        if max(left, right, below, above) > 0.5:
            out[t] = max(left, right, 0.0)
            dx = max(dx, 2 * max(left, right, 0.0))
            dy = max(dy, 2 * max(below, above, 0.0))
    return dx, dy, out


def _wrap(t: Text, fraction: float) -> None:
    """Re-wrap the text of ``t`` to ``fraction`` of its present width (each line kept apart)."""
    lines = t.get_text().split("\n")
    longest = max(len(line) for line in lines)
    width = max(12, int(longest * fraction))
    t.set_text("\n".join(textwrap.fill(line, width) for line in lines))


def fit_text(fig: Figure, max_width: float = MAX_WIDTH) -> None:
    """Make every title, axis label and legend of ``fig`` (`text_artists`) lie inside its
    bounds: widen the figure by what sticks out (up to ``max_width`` inches), grow its height
    likewise, then wrap what still sticks out at that width (titles, labels) and lay legends
    out in fewer columns."""
    for _ in range(6):
        dx, dy, out = _overflow(fig)
        if not out:
            return
        w, h = fig.get_size_inches()
        grow_w = min(max_width, w + dx / fig.dpi + 0.2) if dx else w
        grow_h = h + dy / fig.dpi + 0.1 if dy else h
        if grow_w > w + 1e-6 or (grow_h > h + 1e-6 and not dx):
            fig.set_size_inches(grow_w, grow_h)
            continue
        renderer = fig.canvas.get_renderer()
        for t, over in out.items():
            legend = next((g for f in _figures(fig) for g in [*f.legends, *(
                a.get_legend() for a in f.axes if a.get_legend() is not None)]
                if t in g.get_texts()), None)  # fmt: skip
            if legend is not None and legend._ncols > 1:
                legend.set_ncols(legend._ncols - 1)
                continue
            width = max(t.get_window_extent(renderer).width, 1.0)
            # centred texts shrink on both sides: twice the overflow, and a margin
            fit = min(fig.bbox.width * 0.95, width - 2 * over - 10) / width
            _wrap(t, min(0.95, max(0.3, fit)))
        if dy:
            fig.set_size_inches(w, grow_h)


def save(fig: Figure, path: Path) -> Path:
    """Draw ``fig`` as a PNG in memory, then replace ``path`` atomically through
    `binaryvae.storage.atomic_write_bytes` (no link followed inside a run; a failed write keeps
    the old file and names it). Returns ``path``."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def epoch_axis(ax, epochs: Iterable[int], start: int = 1) -> None:
    """x axis in epochs: labelled, integer ticks only, a sensible span for one epoch
    (matplotlib would otherwise show ticks 0.96-1.04), shown from epoch ``start`` on."""
    epochs = sorted(set(int(e) for e in epochs if int(e) >= start) or set(int(e) for e in epochs))
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=8, min_n_ticks=1))
    if epochs:
        lo, hi = epochs[0], epochs[-1]
        pad = 0.5 if hi - lo < 2 else 0.02 * (hi - lo)
        ax.set_xlim(lo - pad, hi + pad)


def legend_outside(ax, *, where: str = "right", ncols: int = 1) -> None:
    """The axes' legend beside (``right``) or under (``below``) the data, never on it."""
    if not ax.get_legend_handles_labels()[0]:
        return
    if where == "right":
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, ncols=ncols)
    else:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), borderaxespad=0.0, ncols=ncols)


def figure_legend(fig, handles: Sequence, labels: Sequence[str], *, ncols: int = 3) -> None:
    """One legend for the whole figure, under its panels (constrained layout makes room)."""
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=ncols)


def tile(images: np.ndarray, shape: tuple[int, int], ncols: int, pad: int = 1) -> np.ndarray:
    """images ``[N, H*W]`` in [0, 1] -> one grey image of ``ncols`` columns, ``pad`` px apart."""
    h, w = shape
    n = len(images)
    nrows = max(1, -(-n // ncols))
    canvas = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad), 0.5, dtype=np.float32)
    for i, img in enumerate(images):
        r, c = divmod(i, ncols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        canvas[y : y + h, x : x + w] = np.asarray(img, dtype=np.float32).reshape(h, w)
    return canvas


def show_grid(ax, images: np.ndarray, shape: tuple[int, int], ncols: int, title: str = "") -> None:
    """Draw images ``[N, H*W]`` in [0, 1] as a grid on ``ax`` (white on black, grey gaps)."""
    ax.imshow(tile(images, shape, ncols, pad=1), cmap="gray", vmin=0.0, vmax=1.0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, fontsize=9)
