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
    """Decode ``n`` prior codes of the run at ``run_dir`` and save them as one PNG grid.

    Needs only the run directory (config.json, checkpoints/last.pt), not the training data.
    """
    import math

    from binaryvae.errors import BadInput
    from binaryvae.report.labels import prior_description
    from binaryvae.report.model_figures import sample_images
    from binaryvae.report.style import context, new_figure, save, show_grid
    from binaryvae.runs.restore import load_model

    trained = load_model(run_dir)
    if trained.image_shape is None:
        raise BadInput(f"{run_dir} was trained on {trained.config.dataset}, which has no images")
    images = sample_images(trained.model, n, mode, seed=seed).cpu().numpy()
    ncols = max(1, math.ceil(math.sqrt(n)))
    nrows = math.ceil(n / ncols)
    title = f"{trained.config.family}: {prior_description(trained.model)}, decoded ({mode})"
    with context():
        fig = new_figure(max(4.5, 0.5 * ncols + 0.3), 0.5 * nrows + 0.8)
        show_grid(fig.subplots(), images, trained.image_shape, ncols, title=title)
        return save(fig, Path(out))
