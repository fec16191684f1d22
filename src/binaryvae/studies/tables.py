"""A study's tables from its finished runs: per cell mean ± s.e., paired differences against the
baseline (Student-t interval and Wilcoxon p, `binaryvae.stats`), Holm's note where a table
makes several claims; markdown, JSON and a figure per table.

Everything is read from the sweep directory the study ran into (sweep.json, each run's
summary.json and, for ``last.<key>`` and ``epoch.<E>.<key>`` measures, the last row of its
metrics.jsonl or the row that ends epoch E). A table with ``epochs`` (the claim by budget)
reads each measure at those epochs and at the runs' last one, and renders a row per epoch. A
cell's coordinates are its dataset, family, objective, latent size, varied options and variant;
its baseline partner is the cell with the same coordinates except those the table's
``baseline`` names.
"""

from __future__ import annotations

import io
import math
import re
from pathlib import Path
from typing import Any

from binaryvae.errors import BadInput
from binaryvae.stats import format_p, holm, multiple_comparison_note, paired, t_interval
from binaryvae.studies import COORDINATES, Study, StudyTable, parse_measure

__all__ = ["cell_coordinates", "measure_values", "study_tables", "render_markdown", "write_tables"]


def cell_coordinates(entry: dict[str, Any]) -> dict[str, Any]:
    """A recorded cell's coordinates (a sweep.json entry): the axes, the varied options and,
    in a grid with variants, ``variant`` (its name)."""
    out = {k: entry.get(k) for k in COORDINATES}
    out.update(entry.get("vary") or {})
    if entry.get("variant") is not None:
        out["variant"] = entry["variant"]
    return out


def _rows(run_dir: Path) -> list[dict[str, Any]]:
    from binaryvae.jsonfiles import read_jsonl

    try:
        rows = read_jsonl(run_dir / "metrics.jsonl")
    except BadInput:
        return []
    return [r for r in rows if isinstance(r, dict)]


def _epoch_row(rows: list[dict[str, Any]], epoch: int | None) -> dict[str, Any]:
    """The last row (``epoch`` None) or the row that ends ``epoch`` (its last row); {} if none."""
    if epoch is None:
        return rows[-1] if rows else {}
    return next((r for r in reversed(rows) if r.get("epoch") == epoch), {})


def measure_values(root: Path, entry: dict[str, Any], summaries: dict[int, dict], measure: str):
    """``{seed: value}`` of ``measure`` over the finished seeds of a cell: a summary.json key,
    ``last.<key>`` of the last metrics.jsonl row, or ``epoch.<E>.<key>`` of the row that ends
    epoch E (`binaryvae.studies.parse_measure`; BadInput naming any other measure). Seeds
    without a number are left out."""
    where, epoch, key = parse_measure(measure)
    out = {}
    for seed, summary in sorted(summaries.items()):
        if where != "summary":
            sub = root / entry["name"] / f"seed-{seed}"
            if entry.get("layout") == "run":
                sub = root / entry["name"]
            value = _epoch_row(_rows(sub), epoch).get(key)
        else:
            value = summary.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[seed] = float(value)
    return out


def _matches(coords: dict[str, Any], wanted: dict[str, Any]) -> bool:
    return all(_same(coords.get(k), v) for k, v in wanted.items())


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return list(a) == list(b)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    return a == b


def _partner(coords: dict, table: StudyTable, cells: list[dict]) -> dict | None:
    """The baseline cell of the cell at ``coords``: its coordinates with the baseline's on top
    (a baseline family without an objective: the cell's objective where that cell exists,
    else the one baseline cell there is)."""
    wanted = {**coords, **table.baseline}
    exact = [c for c in cells if _matches(c["coords"], wanted)]
    if exact:
        return exact[0]
    if "objective" not in table.baseline:
        wanted.pop("objective", None)
        loose = [c for c in cells if _matches(c["coords"], wanted)]
        if len(loose) == 1:
            return loose[0]
    return None


def study_tables(study: Study, root: str | Path) -> list[dict[str, Any]]:
    """The tables of ``study`` from the sweep in ``root``: for each, ``rows`` (every cell: its
    coordinates, seeds finished, per measure `binaryvae.stats.t_interval` of its values) and
    ``differences`` (each cell minus its baseline partner -- or the reverse -- per measure
    `binaryvae.stats.paired` by seed, with Holm's adjusted p-value over the table's
    comparisons) and ``note`` (`binaryvae.stats.multiple_comparison_note`). BadInput when
    ``root`` holds no sweep."""
    from binaryvae.runs.sweep import read_sweep_summaries

    root = Path(root)
    record, summaries = read_sweep_summaries(root)
    cells = []
    for entry in record["cells"]:
        cells.append({"name": entry["name"], "coords": cell_coordinates(entry), "entry": entry,
                      "summaries": summaries.get(entry["name"], {})})  # fmt: skip
    names = _coordinate_names(cells)
    varying = [k for k in names if len({repr(c["coords"].get(k)) for c in cells}) > 1]
    out = []
    for table in study.tables:
        mine = [c for c in cells if _matches_only(c["coords"], table.only)]
        ran = [s.get("epochs") for c in mine for s in c["summaries"].values()]
        ran = [e for e in ran if isinstance(e, int) and not isinstance(e, bool)]
        measures = table.expanded(max(ran) if ran else None)
        values = {
            c["name"]: {m: measure_values(root, c["entry"], c["summaries"], m)
                        for m in measures}
            for c in mine
        }  # fmt: skip
        rows = [
            {
                "cell": c["name"],
                "coordinates": {k: c["coords"][k] for k in varying},
                "seeds": sorted(c["summaries"]),
                "measures": {m: t_interval(values[c["name"]][m].values()) for m in measures},
            }
            for c in mine
        ]
        differences = []
        if table.baseline:
            for c in mine:
                base = _partner(c["coords"], table, mine)
                if base is None or base["name"] == c["name"]:
                    continue
                first, second = (base, c) if table.reverse else (c, base)
                diffs = {}
                for m in measures:
                    d = paired(values[first["name"]][m], values[second["name"]][m])
                    diffs[m] = {k: v for k, v in d.items() if k != "keys"} | {"seeds": d["keys"]}
                differences.append({
                    "cell": c["name"],
                    "baseline": base["name"],
                    "label": f"{_label(first, varying)} minus {_label(second, varying)}",
                    "measures": diffs,
                })  # fmt: skip
        labels, pvalues = [], []
        for d in differences:
            for m in measures:
                labels.append(f"{d['label']}: {m}")
                pvalues.append(d["measures"][m].get("p_t"))
        adjusted = holm(pvalues)
        i = 0
        for d in differences:
            for m in measures:
                d["measures"][m]["p_holm"] = adjusted[i]
                i += 1
        out.append({
            "title": table.title,
            "about": table.about,
            "measures": measures,
            # with epochs: the measures named in the file, and the epochs read (rows per epoch)
            "per_epoch": list(table.measures) if table.epochs else [],
            "epochs": sorted({parse_measure(m)[1] for m in measures}) if table.epochs else [],
            "baseline": dict(table.baseline),
            "reverse": table.reverse,
            "x": table.x,
            "coordinates": varying,
            "rows": rows,
            "differences": differences,
            "note": multiple_comparison_note(pvalues, labels),
        })  # fmt: skip
    return out


def _coordinate_names(cells: list[dict]) -> list[str]:
    names = list(COORDINATES)
    for c in cells:
        names += [k for k in c["coords"] if k not in names]
    return names


def _matches_only(coords: dict[str, Any], only: dict[str, list]) -> bool:
    return all(any(_same(coords.get(k), v) for v in values) for k, values in only.items())


def _value_text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "x".join(map(str, value)) or "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _label(cell: dict, varying: list[str]) -> str:
    parts = [_value_text(cell["coords"][k]) if k in COORDINATES else
             f"{k}={_value_text(cell['coords'][k])}" for k in varying]  # fmt: skip
    return " ".join(parts) or cell["name"]


# ----------------------------------------------------------------------------- rendering
def _decimals(d: dict[str, Any]) -> int:
    """Decimals to print a mean ± s.e. with: 2 (nats: the bounds' s.e. are 0.01 or more), or
    as many as show the s.e.'s first two significant digits when it is smaller (the mean's,
    without an s.e. or when it is 0): a gradient variance of 0.0426 ± 0.0012 is not 0.04 ±
    0.00."""
    scale = d.get("se") or abs(d.get("mean") or 0.0)
    if not scale or not math.isfinite(scale) or scale >= 0.01:
        return 2
    return min(10, 1 - math.floor(math.log10(scale)))


def _num(x: float | None, sign: bool = False, decimals: int = 2) -> str:
    if x is None:
        return "—"
    return f"{x:+.{decimals}f}" if sign else f"{x:.{decimals}f}"


def _mean_se(d: dict[str, Any], sign: bool = False) -> str:
    if d.get("mean") is None:
        return "—"
    k = _decimals(d)
    text = _num(d["mean"], sign, k)
    return text + (f" ± {d['se']:.{k}f}" if d.get("se") is not None else "")


def _interval(d: dict[str, Any]) -> str:
    ci = d.get("ci95")
    if ci is None:
        return "—"
    k = _decimals(d)
    return f"t = {d['t']:.2f}: [{ci[0]:+.{k}f}, {ci[1]:+.{k}f}]"


def render_markdown(study: Study, budget: str, tables: list[dict[str, Any]]) -> str:
    """The study's tables as markdown: per table the cells (mean ± s.e. over seeds) and, with
    a baseline, the paired differences (mean ± s.e., Student-t 95% interval, Wilcoxon p,
    Holm-adjusted p) and the multiple-comparison note."""
    out = io.StringIO()
    out.write(f"# {study.title}\n\n{study.about}\n\n")
    out.write(f"Study `{study.name}`, budget {budget}; quoted in {study.docs}. Mean ± s.e. "
              "over seeds (`binaryvae.stats`); nats per image for the bounds.\n")  # fmt: skip
    for t in tables:
        out.write(f"\n## {t['title']}\n\n")
        if t["about"]:
            out.write(t["about"] + "\n\n")
        names, epochs = _columns(t)
        cols = [c.replace("_", " ") for c in t["coordinates"]]
        cols += (["epoch"] if t["epochs"] else []) + ["seeds"] + names
        out.write("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n")
        for r in t["rows"]:
            for e in epochs:
                cells = [_value_text(r["coordinates"][k]) for k in t["coordinates"]]
                cells += ([str(e)] if t["epochs"] else []) + [str(len(r["seeds"]))]
                cells += [_mean_se(r["measures"][_at(m, e)]) for m in names]
                out.write("| " + " | ".join(cells) + " |\n")
        if not t["differences"]:
            continue
        how = "baseline minus cell" if t["reverse"] else "cell minus baseline"
        out.write(f"\nPaired by seed ({how}; baseline {_baseline_text(t['baseline'])}): mean ± "
                  "s.e. of the differences, Student-t 95% interval, two-sided Wilcoxon "
                  "signed-rank p of the same differences, Holm-adjusted paired-t p over this "
                  "table's comparisons:\n\n")  # fmt: skip
        cols = ["difference"] + (["after epoch"] if t["epochs"] else []) + ["seeds"]
        for m in names:
            cols += [m, "95% interval", "Wilcoxon p", "Holm p"]
        out.write("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n")
        for d in t["differences"]:
            for e in epochs:
                n = max((d["measures"][_at(m, e)]["n"] for m in names), default=0)
                cells = [d["label"]] + ([str(e)] if t["epochs"] else []) + [str(n)]
                for m in names:
                    x = d["measures"][_at(m, e)]
                    cells += [_mean_se(x, sign=True), _interval(x),
                              format_p(x.get("wilcoxon_p")), format_p(x.get("p_holm"))]  # fmt: skip
                out.write("| " + " | ".join(cells) + " |\n")
        if t["note"]:
            out.write(f"\n{t['note']}\n")
    return out.getvalue()


def _columns(t: dict[str, Any]) -> tuple[list[str], list[int | None]]:
    """A rendered table's measure columns and its row epochs: the measures and [None], or,
    with epochs, the measures named in the file and the epochs read."""
    if t["epochs"]:
        return t["per_epoch"], t["epochs"]
    return t["measures"], [None]


def _at(measure: str, epoch: int | None) -> str:
    """The key of ``measure`` at ``epoch`` (itself where epoch is None)."""
    return measure if epoch is None else f"epoch.{epoch}.{measure}"


def _baseline_text(baseline: dict[str, Any]) -> str:
    return ", ".join(f"{k} {_value_text(v)}" for k, v in baseline.items())


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "table"


def table_figure(t: dict[str, Any]):
    """One panel per measure: each cell's mean with its Student-t 95% interval (x: the
    table's ``x`` coordinate, one line per other combination; else one point per cell)."""
    from binaryvae.report.style import new_figure

    measures, epochs = _columns(t)
    fig = new_figure(4.2 * len(measures), 3.6)
    axes = fig.subplots(1, len(measures), squeeze=False)[0]
    x_key = t["x"]
    for ax, m in zip(axes, measures, strict=False):
        if t["epochs"]:  # the claim by budget: each cell's mean against the epoch
            for r in t["rows"]:
                pts = [(e, r["measures"][_at(m, e)]) for e in epochs
                       if r["measures"][_at(m, e)].get("mean") is not None]  # fmt: skip
                if not pts:
                    continue
                err = [(p[1]["ci95"][1] - p[1]["mean"]) if p[1].get("ci95") else 0
                       for p in pts]  # fmt: skip
                label = " ".join(_value_text(v) for v in r["coordinates"].values())
                ax.errorbar([p[0] for p in pts], [p[1]["mean"] for p in pts], yerr=err,
                            marker="o", capsize=3, label=label or None)  # fmt: skip
            ax.set_xlabel("epoch")
            ax.legend(fontsize=7)
        elif x_key is not None:
            lines: dict[str, list] = {}
            for r in t["rows"]:
                rest = " ".join(_value_text(v) for k, v in r["coordinates"].items() if k != x_key)
                lines.setdefault(rest, []).append(r)
            for label, rows in lines.items():
                pts = [(r["coordinates"].get(x_key), r["measures"][m]) for r in rows
                       if r["measures"][m].get("mean") is not None]  # fmt: skip
                if not pts:
                    continue
                xs = [float(p[0]) for p in pts]
                ys = [p[1]["mean"] for p in pts]
                err = [(p[1]["ci95"][1] - p[1]["mean"]) if p[1].get("ci95") else 0 for p in pts]
                ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=label or None)
            ax.set_xlabel(x_key.replace("_", " "))
            if x_key == "beta":
                ax.set_xscale("log")
            if len(lines) > 1:
                ax.legend(fontsize=7)
        else:
            rows = [r for r in t["rows"] if r["measures"][m].get("mean") is not None]
            ys = [r["measures"][m]["mean"] for r in rows]
            err = [(r["measures"][m]["ci95"][1] - r["measures"][m]["mean"])
                   if r["measures"][m].get("ci95") else 0 for r in rows]  # fmt: skip
            ax.errorbar(range(len(rows)), ys, yerr=err, fmt="o", capsize=3)
            ax.set_xticks(range(len(rows)))
            ax.set_xticklabels(
                [" ".join(_value_text(v) for v in r["coordinates"].values()) for r in rows],
                rotation=60, ha="right", fontsize=7,
            )  # fmt: skip
        ax.set_title(m, fontsize=9)
        ax.set_ylabel("mean, Student-t 95% interval", fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(t["title"], fontsize=9)
    return fig


def engine_record() -> dict:
    """What made a study's numbers (issue 27: every committed result names its engine and
    commit): binaryvae's version, the git commit of its source when it runs from a checkout
    (None when installed from a wheel), torch's version and the CPU kernels it uses."""
    import subprocess

    import torch

    from binaryvae import __version__

    try:
        out = subprocess.run(
            ["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        commit = out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "name": "binaryvae reproduce",
        "version": __version__,
        "commit": commit,
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def write_tables(study: Study, budget: str, root: str | Path) -> list[Path]:
    """``<root>/study.md``, ``<root>/study.json`` and ``<root>/figures/<table>.png`` (means with
    95% intervals): the study's tables from the runs finished in ``root``. The paths written."""
    from binaryvae.storage import (
        atomic_write_bytes,
        atomic_write_text,
        json_safe,
        write_json_atomic,
    )

    root = Path(root)
    tables = study_tables(study, root)
    md = root / "study.md"
    atomic_write_text(md, render_markdown(study, budget, tables))
    js = root / "study.json"
    write_json_atomic(js, json_safe({"study": study.name, "title": study.title, "budget": budget,
                                     "docs": study.docs, "engine": engine_record(),
                                     "tables": tables}))  # fmt: skip
    written = [md, js]
    figures = root / "figures"
    figures.mkdir(exist_ok=True)
    for i, t in enumerate(tables, start=1):
        if not any(r["measures"][m].get("mean") is not None
                   for r in t["rows"] for m in t["measures"]):  # fmt: skip
            continue  # nothing finished to draw
        fig = table_figure(t)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        path = figures / f"{i}-{_slug(t['title'])}.png"
        atomic_write_bytes(path, buffer.getvalue())
        written.append(path)
    return written
