"""The one plotting style of every figure binaryvae draws: sizes, fonts, colours, axes, legends.

Figures are matplotlib `Figure`s on the Agg canvas (no pyplot global state), drawn inside
`context()` so that every figure gets the same fonts and grid. The rules each figure follows:

- at most `MAX_WIDTH` inches wide at `DPI` (1,200 px: the width report.html shows at 1:1);
- axis labels with units: nats per test image for bounds and terms, "epoch" with integer ticks
  (`epoch_axis`), densities and counts named as such;
- a title that says what is plotted; legends outside the data (`legend_outside`,
  `figure_legend`);
- one scale per quantity: a series that dwarfs the others gets its own axes (the callers split
  panels), never a shared axis that flattens the rest.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
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
    "legend_outside",
    "new_figure",
    "save",
    "show_grid",
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


def new_figure(width: float, height: float) -> Figure:
    """A figure of ``width`` x ``height`` inches (width capped at `MAX_WIDTH`), constrained
    layout, so that labels and outside legends are never cut off."""
    fig = Figure(figsize=(min(width, MAX_WIDTH), height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


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
