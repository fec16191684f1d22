"""The report: figures (matplotlib, Agg), a self-contained report.html and a report.md,
regenerated from run directories only (config.json, metrics.jsonl, summary.json, checkpoints).

`write_report(DIR)` works on a run directory or a compare directory; `sample_figure` writes the
PNG of `binaryvae sample`.
"""

from __future__ import annotations

from pathlib import Path

from binaryvae.report.build import build_document, final_table, write_report
from binaryvae.report.document import Document, FigureItem, Section, TableItem

__all__ = [
    "Document",
    "FigureItem",
    "Section",
    "TableItem",
    "build_document",
    "final_table",
    "sample_figure",
    "write_report",
]


def sample_figure(
    run_dir: str | Path, *, n: int, mode: str, out: str | Path, seed: int = 0
) -> Path:
    """Decode ``n`` prior codes of the run at ``run_dir`` and save them as one PNG grid."""
    import math

    from binaryvae.errors import BadInput
    from binaryvae.report.model_figures import sample_images
    from binaryvae.report.plotting import new_figure, save, show_grid
    from binaryvae.runs import load_run

    prepared = load_run(run_dir)
    shape = getattr(prepared.dataset, "image_shape", None)
    if shape is None:
        raise BadInput(f"{run_dir} was trained on {prepared.config.dataset}, which has no images")
    images = sample_images(prepared.model, n, mode, seed=seed).cpu().numpy()
    ncols = max(1, math.ceil(math.sqrt(n)))
    nrows = math.ceil(n / ncols)
    fig = new_figure(0.5 * ncols + 0.3, 0.5 * nrows + 0.5)
    show_grid(fig.subplots(), images, shape, ncols, title=f"{prepared.config.family}: {mode}")
    return save(fig, Path(out))
