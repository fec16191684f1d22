"""The report of a sweep (or of a compare with --seeds): per dataset, a table of every cell --
family x objective x latent size, mean ± standard error over its seeds -- and figures that
compare the families across seeds; report.html, report.md and figures/ in the sweep directory.

Everything comes from the sweep's files: sweep.json (the grid and the cells' statuses) and each
run's summary.json and metrics.jsonl (`binaryvae.runs.sweep.read_sweep`). No model is loaded.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from binaryvae.report.document import (
    Document,
    FigureItem,
    Section,
    TableItem,
    TextItem,
    fmt,
    fmt_mean_se,
)
from binaryvae.report.style import COLOURS, epoch_axis, new_figure
from binaryvae.runs.directory import RunDir
from binaryvae.runs.ownership import read_marker
from binaryvae.runs.sweep import read_sweep
from binaryvae.stats import mean_se, t_interval
from binaryvae.storage import atomic_write_bytes, atomic_write_text, refuse_links, reset_folder

__all__ = [
    "CellResults",
    "cell_results",
    "curve_figure",
    "dataset_table",
    "is_sweep_dir",
    "metric_figure",
    "write_sweep_report",
]

# (column of sweep.csv, what the axis/column says)
LOG_PX = "log_px"  # exact log p(x) where every seed has it, else the IWAE bound
METRICS = {
    "test_discrete_elbo": "discrete ELBO (nats, higher is better)",
    LOG_PX: "log p(x): exact, or IWAE (nats, higher is better)",
    "sample_fd": "sample FD (lower is better)",
    "seconds_per_epoch": "training seconds per epoch",
}


def is_sweep_dir(path: str | Path) -> bool:
    """A directory the sweep report is for: a sweep, or a compare of replica groups (the
    ordinary report reads one run per family)."""
    path = Path(path)
    if not (path / "sweep.json").is_file():
        return False
    if read_marker(path).get("kind") == "sweep":
        return True
    try:
        record, _ = read_sweep(path)
    except Exception:  # noqa: BLE001 - not readable as a sweep: the ordinary report decides
        return False
    return any(c.get("layout") == "replicas" for c in record.get("cells", []))


@dataclass
class CellResults:
    """One cell's runs as the report sees them (rows of sweep.csv, in seed order)."""

    name: str
    dataset: str
    family: str
    objective: str
    latent_dim: int
    status: str
    reason: str | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    vary: dict[str, Any] = field(default_factory=dict)  # the cell's varied options ([vary])

    @property
    def varied(self) -> str:
        """The varied options as a label ("lr-0.0001 hidden-200x200"), "" for none."""
        from binaryvae.runs.sweep_grid import vary_label

        return " ".join(vary_label(k, v) for k, v in self.vary.items())

    @property
    def finished(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] == "finished"]

    @property
    def label(self) -> str:
        """Family and, unless it is "elbo", the objective: the x tick of the figures."""
        label = self.family if self.objective == "elbo" else f"{self.family}\n({self.objective})"
        return f"{label}\n{self.varied}" if self.vary else label

    def values(self, key: str) -> tuple[list[float], list[int], str]:
        """The finished seeds' values of ``key`` (``log_px``: exact log p(x) when every finished
        seed has it, else IWAE), their seeds, and the name of what was taken."""
        rows = self.finished
        if key == LOG_PX:
            for column, what in (("test_log_px_exact", "exact"), ("test_iwae", "IWAE")):
                if rows and all(isinstance(r.get(column), int | float) for r in rows):
                    if what == "IWAE" and rows[0].get("iwae_k"):
                        what = f"IWAE k={rows[0]['iwae_k']}"
                    return [float(r[column]) for r in rows], [r["seed"] for r in rows], what
            return [], [], ""
        pairs = [(float(r[key]), r["seed"]) for r in rows if isinstance(r.get(key), int | float)]
        return [v for v, _ in pairs], [s for _, s in pairs], key


def cell_results(path: str | Path) -> tuple[dict[str, Any], list[CellResults]]:
    """sweep.json and its cells with their runs, in grid order."""
    record, rows = read_sweep(path)
    cells = []
    for entry in record["cells"]:
        cells.append(
            CellResults(
                name=entry["name"],
                dataset=entry["dataset"],
                family=entry["family"],
                objective=entry["objective"],
                latent_dim=int(entry["latent_dim"]),
                status=entry["status"],
                reason=entry.get("reason"),
                rows=[r for r in rows if r["cell"] == entry["name"]],
                vary={**(entry.get("vary") or {}),
                      **({"variant": entry["variant"]} if entry.get("variant") else {})},
            )
        )
    return record, cells


def _mean_se_text(values: list[float], digits: int = 2, shared: str = "") -> str:
    return fmt_mean_se(values, digits, shared)


def _interval_text(values: list[float], digits: int = 2) -> str:
    ci = t_interval(values).get("ci95")
    return "—" if ci is None else f"[{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]"


def dataset_table(dataset: str, cells: list[CellResults]) -> TableItem:
    """One row per cell of ``dataset``: family, objective, latent size, seeds finished, and the
    mean ± standard error over the finished seeds of each number."""
    header = [
        "family",
        "trained on",
        "latent bits",
        "seeds finished",
        "discrete ELBO",
        "discrete ELBO, 95% interval (t)",
        "log p(x)",
        "sample FD",
        "s / epoch",
    ]
    rows = []
    for c in cells:
        labels = {r.get("objective_label") for r in c.finished} - {None}
        trained = labels.pop() if len(labels) == 1 else c.objective
        done = f"{len(c.finished)}/{len(c.rows)}"
        if c.status != "finished":
            done += f" ({c.status})"
        log_px, _, what = c.values(LOG_PX)
        log_px_text = _mean_se_text(log_px)
        if log_px and what != "exact":
            log_px_text += f" ({what})"
        rows.append(
            [
                f"{c.family} ({c.varied})" if c.vary else c.family,
                trained,
                str(c.latent_dim),
                done,
                _mean_se_text(c.values("test_discrete_elbo")[0]),
                _interval_text(c.values("test_discrete_elbo")[0]),
                log_px_text,
                _mean_se_text(c.values("sample_fd")[0]),
                _mean_se_text(
                    c.values("seconds_per_epoch")[0],
                    3,
                    shared=f"one timing for all {len(c.values('seconds_per_epoch')[0])} seeds",
                ),
            ]
        )
    caption = (
        "Mean ± standard error of the mean over the cell's finished seeds (sample standard "
        "deviation / sqrt(n); one seed: the value alone), and the Student-t 95% interval of the "
        "discrete ELBO's mean (mean ± t(0.975, n - 1) s.e.: t = 4.30 for 3 seeds, 2.78 for 5). "
        "Nats per test image, higher is better; "
        "sample FD lower is better. Discrete ELBO: a lower bound on log p(x) of the binary-latent "
        "model the family stands for. log p(x): exact (all 2^n codes enumerated) where every seed "
        "has it, else the importance-weighted bound IWAE (k samples), marked. s / epoch: the "
        "training loop of the cell's replica group, all its seeds at once: one timing shared by "
        "every seed of a group, so stated once without an s.e. 'not a bound' in 'trained on' "
        "marks objectives that are not lower bounds. — : not applicable or not computed."
    )
    return TableItem(f"{dataset}: every cell", header, rows, caption)


def _panels(cells: list[CellResults]) -> list[int]:
    return sorted({c.latent_dim for c in cells})


def metric_figure(dataset: str, cells: list[CellResults], key: str):
    """Families side by side, one panel per latent size: every seed's value of ``key`` as a dot
    and the mean ± standard error as a bar. None when no cell has the number."""
    if not any(c.values(key)[0] for c in cells):
        return None
    sizes = _panels(cells)
    fig = new_figure(max(4.0, 1.1 * len(cells) / len(sizes) + 2.0) * len(sizes), 4.2)
    axes = fig.subplots(1, len(sizes), squeeze=False)[0]
    for ax, n in zip(axes, sizes, strict=True):
        group = [c for c in cells if c.latent_dim == n]
        for i, c in enumerate(group):
            values, seeds, _ = c.values(key)
            if not values:
                continue
            colour = COLOURS[i % len(COLOURS)]
            # seeds spread evenly across the slot, so equal values stay visible
            width = 0.3
            offsets = [
                (j - (len(values) - 1) / 2) * (width / max(len(values) - 1, 1))
                for j in range(len(values))
            ]
            ax.scatter(
                [i + o for o in offsets],
                values,
                s=14,
                color=colour,
                alpha=0.7,
                label=None,
                zorder=2,
            )
            mean, se = mean_se(values)
            ax.errorbar(
                [i],
                [mean],
                yerr=[[se or 0.0], [se or 0.0]],
                fmt="_",
                color="black",
                markersize=18,
                capsize=4,
                zorder=3,
            )
        ax.set_xticks(range(len(group)), [c.label for c in group], fontsize=7, rotation=30)
        ax.set_xlim(-0.6, len(group) - 0.4)
        ax.set_xlabel("family (objective if not elbo)")
        ax.set_ylabel(METRICS[key])
        ax.set_title(f"{dataset}, {n}-bit codes", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(
        f"{METRICS[key].split(' (')[0]}: each seed (dots), mean ± s.e. (bars)", fontsize=10
    )
    return fig


def curve_figure(dataset: str, cells: list[CellResults], root: Path, key="test_discrete_elbo"):
    """Test ``key`` per epoch, mean over each cell's finished seeds with a ± s.e. band, one line
    per family, one panel per latent size. None when no run has the column."""
    sizes = _panels(cells)
    curves = {}
    for c in cells:
        per_seed = []
        for row in c.finished:
            metrics = RunDir(root / row["run_dir"]).read_metrics()
            per_seed.append({int(m["epoch"]): m.get(key) for m in metrics})
        epochs = sorted(set().union(*per_seed)) if per_seed else []
        line = []
        for e in epochs:
            values = [s.get(e) for s in per_seed]
            if values and all(isinstance(v, int | float) for v in values):
                mean, se = mean_se(values)
                line.append((e, mean, se or 0.0))
        if line:
            curves[c.name] = line
    if not curves:
        return None
    fig = new_figure(4.6 * len(sizes), 3.8)
    axes = fig.subplots(1, len(sizes), squeeze=False)[0]
    for ax, n in zip(axes, sizes, strict=True):
        group = [c for c in cells if c.latent_dim == n]
        for i, c in enumerate(group):
            if c.name not in curves:
                continue
            xs, ms, ses = zip(*curves[c.name], strict=True)
            colour = COLOURS[i % len(COLOURS)]
            ax.plot(
                xs,
                ms,
                color=colour,
                label=c.label.replace("\n", " "),
                marker="." if len(xs) < 3 else None,
            )
            ax.fill_between(
                xs,
                [m - s for m, s in zip(ms, ses, strict=True)],
                [m + s for m, s in zip(ms, ses, strict=True)],
                color=colour,
                alpha=0.2,
            )
        epoch_axis(ax, [x for c in group for x, _, _ in curves.get(c.name, [])])
        ax.set_ylabel(METRICS.get(key, key))
        ax.set_title(f"{dataset}, {n}-bit codes", fontsize=9)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle("Test discrete ELBO per epoch: mean over seeds ± s.e.", fontsize=10)
    return fig


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "x"


def _save(fig, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())
    return path


def build_sweep_document(path: Path) -> Document:
    record, cells = cell_results(path)
    figs = path / "figures"
    reset_folder(figs, ".png", root=path)  # figures/ is the report's own: no leftovers
    counts = {}
    for c in cells:
        counts[c.status] = counts.get(c.status, 0) + 1
    grid = record.get("grid", {})
    seeds = grid.get("seeds", [])
    fixed = grid.get("fixed", {})
    runs = sum(len(c.rows) for c in cells)
    intro = (
        f"{len(cells)} cells ({runs} runs): datasets {', '.join(grid.get('datasets', []))}; "
        f"{len(grid.get('families', []))} family:objective pairs; latent sizes "
        f"{', '.join(map(str, grid.get('latent_dims', [])))}; seeds "
        f"{', '.join(map(str, seeds))}; {fixed.get('epochs')} epochs, hidden "
        f"{fixed.get('hidden')}, batch {fixed.get('batch_size')}, lr {fixed.get('lr')}. "
        f"Cells: {', '.join(f'{n} {s}' for s, n in counts.items())}. Every model is scored as "
        "the discrete (binary-latent) model it stands for. Regenerate with `binaryvae report DIR`."
    )
    doc = Document(f"binaryvae sweep: {path.resolve().name}", intro)
    datasets = list(dict.fromkeys(c.dataset for c in cells))
    for dataset in datasets:
        group = [c for c in cells if c.dataset == dataset]
        sec = Section(dataset)
        sec.items.append(dataset_table(dataset, group))
        for key in ("test_discrete_elbo", LOG_PX, "sample_fd"):
            fig = metric_figure(dataset, group, key)
            if fig is None:
                doc.omitted.append(f"{dataset}: no {METRICS[key].split(' (')[0]} in any cell")
                continue
            file = _save(fig, figs / f"sweep_{_slug(dataset)}_{key}.png")
            sec.items.append(
                FigureItem(
                    file,
                    f"{dataset}: {METRICS[key].split(' (')[0]} of every family across seeds",
                    "One panel per latent size; each dot is one seed's final test number "
                    "(summary.json), the bar the mean ± standard error over the seeds.",
                )
            )
        fig = curve_figure(dataset, group, path)
        if fig is not None:
            file = _save(fig, figs / f"sweep_{_slug(dataset)}_curves.png")
            sec.items.append(
                FigureItem(
                    file,
                    f"{dataset}: test discrete ELBO per epoch",
                    "Mean over each cell's finished seeds (metrics.jsonl) with a band of ± one "
                    "standard error; one panel per latent size.",
                )
            )
        doc.sections.append(sec)
    unfinished = [c for c in cells if c.status != "finished"]
    if unfinished:
        sec = Section("Cells that did not finish")
        sec.items.append(
            TableItem(
                "Status and reason",
                ["cell", "status", "reason"],
                [[c.name, c.status, c.reason or ""] for c in unfinished],
                "Running the sweep's command again retries them, resuming from their checkpoints.",
            )
        )
        doc.sections.append(sec)
    else:
        doc.sections.append(Section("Status", [TextItem("Every cell finished.")]))
    return doc


def write_sweep_report(path: str | Path) -> Path:
    """Write ``path``/figures/sweep_*.png, report.html and report.md; return report.html."""
    path = Path(path)
    refuse_links(path, ("report.html", "report.md", "figures"), root=path)
    doc = build_sweep_document(path)
    atomic_write_text(path / "report.html", doc.to_html(path), root=path)
    atomic_write_text(path / "report.md", doc.to_markdown(path), root=path)
    return path / "report.html"
