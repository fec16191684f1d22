"""Matplotlib helpers: Agg figures without pyplot's global state, image grids, saving."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["new_figure", "save", "show_grid", "tile"]

# one colour per family, stable across figures (matplotlib's tab10)
COLOURS = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
]  # fmt: skip


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


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
    if title:
        ax.set_title(title, fontsize=9)
