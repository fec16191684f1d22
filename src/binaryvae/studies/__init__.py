"""The studies of docs/benchmarks.md as data: one TOML file each, loaded and checked here.

A study file (``binaryvae/studies/<name>.toml``) names its grid (exactly a ``binaryvae sweep
--grid`` file: axes, fixed values, ``[grid.vary]``, ``[grid.family-options]`` and
``[[grid.variants]]``), its seeds
(fixed in advance), two budgets (``[budget.full]``, the published one, and ``[budget.quick]``,
a smoke version on mnist-mini; each overrides keys of ``[grid]``, ``seeds`` included) and its
comparisons (``[[table]]``: the summary.json keys compared, and the baseline cells every other
cell is paired with, seed by seed)::

    title = "one line"
    about = "what it asks, its source"
    docs = "docs/benchmarks.md, section 6"
    seeds = [0, 1, 2]
    [grid]
    families = ["bernoulli-disarm", "bernoulli-reinforce-loo"]
    protocol = "disarm-nonlinear"
    [grid.vary]
    lr = [1e-3, 1e-4]
    [budget.full]
    steps = 100800
    [budget.quick]
    datasets = ["mnist-mini"]
    steps = 40
    seeds = [0, 1]
    [[table]]
    title = "..."
    measures = ["test_iwae_k100", "test_discrete_elbo"]   # or "last.<key>", "epoch.<E>.<key>"
    baseline = { family = "bernoulli-disarm" }   # or { variant = "baseline" }
    only = { latent_dim = [200] }     # optional: the cells of this table
    reverse = false                   # optional: true gives baseline minus cell
    x = "beta"                        # optional: the figure's x axis (a coordinate)
    epochs = [5, 10, 20, 40]          # optional: each measure at these epochs (see below)

A measure is a summary.json key, ``last.<key>`` (the last row of the run's metrics.jsonl) or
``epoch.<E>.<key>`` (the row that ends epoch E: the last row with ``"epoch": E``). A table with
``epochs`` repeats each of its measures (plain metrics.jsonl keys then) at every listed epoch
the runs passed and at their last epoch (`StudyTable.expanded`): the claim by budget.

`load_study` checks every key (BadInput naming the file and the key) and that both budgets
expand to valid cells; `Study.grid` gives the sweep grid of a budget.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from binaryvae.errors import BadInput

__all__ = [
    "BUDGETS",
    "COORDINATES",
    "Study",
    "StudyTable",
    "load_study",
    "load_study_file",
    "parse_measure",
    "study_names",
]

BUDGETS = ("full", "quick")
# what a cell is, besides its varied options and its variant (``variant``, in a grid with
# [[grid.variants]]): the axes of every grid
COORDINATES = ("dataset", "family", "objective", "latent_dim")
_TOP = ("title", "about", "docs", "seeds", "grid", "budget", "table")
_TABLE = ("title", "measures", "baseline", "only", "reverse", "x", "about", "epochs")
_MEASURE = re.compile(r"^(?:(last)\.|(epoch)\.([1-9][0-9]{0,8})\.)?([a-z][a-z0-9_]*)$")
MEASURE_FORMS = "a summary.json key, last.<metrics.jsonl key> or epoch.<E>.<metrics.jsonl key>"


def parse_measure(measure: Any, where: str = "") -> tuple[str, int | None, str]:
    """(where it is read, epoch, key) of a table's measure: ("summary", None, key) for a
    summary.json key, ("last", None, key) for ``last.<key>`` (the last metrics.jsonl row),
    ("epoch", E, key) for ``epoch.<E>.<key>`` (the row that ends epoch E, E >= 1). BadInput,
    prefixed by ``where``, naming any other text."""
    match = _MEASURE.match(measure) if isinstance(measure, str) else None
    if match is None:
        raise BadInput(f"{where}measure {measure!r} is not {MEASURE_FORMS}")
    last, epoch, number, key = match.groups()
    if epoch:
        return "epoch", int(number), key
    return ("last" if last else "summary"), None, key
_STUDY_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


@dataclass(frozen=True)
class StudyTable:
    """One comparison table of a study."""

    title: str
    measures: tuple[str, ...]
    baseline: dict[str, Any] = field(default_factory=dict)  # coordinate -> value; {}: none
    only: dict[str, list] = field(default_factory=dict)  # coordinate -> the values kept
    reverse: bool = False  # True: baseline minus cell
    x: str | None = None  # the coordinate on the figure's x axis
    about: str = ""
    # each measure (a metrics.jsonl key) at these epochs and at the runs' last one; () = off
    epochs: tuple[int, ...] = ()

    def expanded(self, last_epoch: int | None) -> list[str]:
        """The measures read: ``measures`` itself, or with ``epochs`` each measure as
        ``epoch.<E>.<m>`` for every listed E below ``last_epoch`` and for ``last_epoch``
        (epoch-major; no epochs at all while no run has finished: ``last_epoch`` None)."""
        if not self.epochs:
            return list(self.measures)
        at = [e for e in self.epochs if last_epoch is not None and e < last_epoch]
        at += [last_epoch] if last_epoch is not None else []
        return [f"epoch.{e}.{m}" for e in at for m in self.measures]


@dataclass
class Study:
    """A study file, checked."""

    name: str
    title: str
    about: str
    docs: str
    seeds: list[int]
    grid_values: dict[str, Any]
    budgets: dict[str, dict[str, Any]]
    tables: list[StudyTable]
    source: str  # where it was read (for messages)

    def values(self, budget: str = "full") -> dict[str, Any]:
        """The sweep grid values of ``budget``: [grid], the budget's overrides on top (a budget
        that sets steps or epochs replaces the other; its [vary] replaces those options'
        values), and the seeds."""
        if budget not in self.budgets:
            raise BadInput(f"unknown budget {budget!r}; choose one of {', '.join(BUDGETS)}")
        from binaryvae.runs.sweep_grid import normalize_keys

        where = f"{self.source} [budget.{budget}]"
        values = normalize_keys(dict(self.grid_values), f"{self.source} [grid]")
        override = normalize_keys(dict(self.budgets[budget]), where)
        seeds = override.pop("seeds", self.seeds)
        for mine, other in (("steps", "epochs"), ("epochs", "steps")):
            if override.get(mine) is not None and other not in override:
                values.pop(other, None)
        for key, value in override.items():
            if key in ("vary", "family_options") and isinstance(value, dict):
                values[key] = {**(values.get(key) or {}), **value}
            else:
                values[key] = value
        values["seeds"] = seeds
        # a budget that trains fewer families keeps only their family options
        options = values.get("family_options")
        families = values.get("families")
        if isinstance(options, dict) and isinstance(families, list):
            names = {str(f).partition(":")[0] for f in families}
            values["family_options"] = {f: o for f, o in options.items() if f in names}
        return values

    def grid(self, budget: str = "full", **fixed: Any):
        """The `binaryvae.runs.sweep_grid.Grid` of ``budget``; ``fixed``: values added on
        top (threads, device, data_dir: where and how the runs compute)."""
        from binaryvae.runs.sweep_grid import grid_from_values

        values = self.values(budget)
        values.update({k: v for k, v in fixed.items() if v is not None})
        return grid_from_values(values, f"{self.source} (budget {budget})")


def study_names() -> list[str]:
    """The studies shipped in this package, by name, sorted."""
    return sorted(
        p.name[: -len(".toml")]
        for p in resources.files(__name__).iterdir()
        if p.name.endswith(".toml")
    )


def load_study(name: str) -> Study:
    """The shipped study ``name`` (or, for a name ending in .toml, that file), checked;
    BadInput for an unknown name or anything wrong in the file."""
    if name.endswith(".toml"):
        return load_study_file(name)
    if not _STUDY_NAME.match(name) or name not in study_names():
        raise BadInput(f"unknown study {name!r}; choose one of {', '.join(study_names())} "
                       "(binaryvae reproduce --list)")  # fmt: skip
    text = resources.files(__name__).joinpath(f"{name}.toml").read_text(encoding="utf-8")
    return _parse(name, text, f"study {name}")


def load_study_file(path: str | Path) -> Study:
    """A study from the TOML file ``path`` (its name is the file's stem), checked."""
    from binaryvae.jsonfiles import read_bounded

    path = Path(path)
    data = read_bounded(path, 1 << 20, "study file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadInput(f"{path}: not UTF-8 text (byte at offset {e.start})") from None
    return _parse(path.stem, text, str(path))


def _parse(name: str, text: str, where: str) -> Study:
    import tomllib

    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as e:
        raise BadInput(f"unreadable study file {where}: {e}") from None
    unknown = sorted(set(data) - set(_TOP))
    if unknown:
        raise BadInput(f"{where}: unknown key {unknown[0]!r}; known: {', '.join(_TOP)}")
    for key in _TOP:
        if key not in data:
            raise BadInput(f"{where}: {key} is missing")
    for key in ("title", "about", "docs"):
        if not isinstance(data[key], str) or not data[key].strip():
            raise BadInput(f"{where}: {key} must be a text")
    from binaryvae.runs.seeds import parse_seeds

    seeds = data["seeds"]
    try:
        seeds = parse_seeds(seeds if isinstance(seeds, str) else list(seeds))
    except (BadInput, TypeError) as e:
        raise BadInput(f"{where}: seeds: {e}") from None
    grid = data["grid"]
    if not isinstance(grid, dict):
        raise BadInput(f"{where}: [grid] must be a table")
    if any(k in grid for k in ("seeds", "seed")):
        raise BadInput(f"{where}: [grid] names seeds; a study's seeds are its top-level seeds")
    budgets = data["budget"]
    if not isinstance(budgets, dict) or sorted(budgets) != sorted(BUDGETS):
        raise BadInput(f"{where}: [budget] must hold exactly the tables "
                       f"{', '.join(f'[budget.{b}]' for b in BUDGETS)}")  # fmt: skip
    for budget, values in budgets.items():
        if not isinstance(values, dict):
            raise BadInput(f"{where}: [budget.{budget}] must be a table")
    tables = data["table"]
    if not isinstance(tables, list) or not tables:
        raise BadInput(f"{where}: give at least one [[table]]")
    study = Study(name, data["title"].strip(), " ".join(data["about"].split()), data["docs"],
                  list(seeds), grid, budgets, [], where)  # fmt: skip
    # every budget expands to valid cells; the tables name what the cells have
    coordinates: set[str] = set(COORDINATES)
    for budget in BUDGETS:
        cells = study.grid(budget).cells()
        for cell in cells:
            coordinates |= set(cell.vary)
            if cell.variant is not None:
                coordinates.add("variant")
    study.tables = [_table(t, i, coordinates, where) for i, t in enumerate(tables, start=1)]
    return study


def _table(t: Any, i: int, coordinates: set[str], where: str) -> StudyTable:
    label = f"{where}: table {i}"
    if not isinstance(t, dict):
        raise BadInput(f"{label} must be a table")
    unknown = sorted(set(t) - set(_TABLE))
    if unknown:
        raise BadInput(f"{label}: unknown key {unknown[0]!r}; known: {', '.join(_TABLE)}")
    title = t.get("title")
    if not isinstance(title, str) or not title.strip():
        raise BadInput(f"{label}: title must be a text")
    measures = t.get("measures")
    if not isinstance(measures, list) or not measures:
        raise BadInput(f"{label}: measures must be a list of summary.json keys")
    for m in measures:
        parse_measure(m, f"{label}: ")
    if len(set(measures)) != len(measures):
        raise BadInput(f"{label}: a measure is listed twice")
    epochs = t.get("epochs", [])
    if not (isinstance(epochs, list) and epochs
            and all(isinstance(e, int) and not isinstance(e, bool) and e >= 1 for e in epochs)
            and epochs == sorted(set(epochs))) and "epochs" in t:  # fmt: skip
        raise BadInput(f"{label}: epochs must be a list of increasing epoch numbers (>= 1)")
    if epochs:
        prefixed = [m for m in measures if parse_measure(m)[0] != "summary"]
        if prefixed:
            raise BadInput(f"{label}: with epochs, a measure is a metrics.jsonl key; "
                           f"{prefixed[0]!r} names its row itself")  # fmt: skip

    def coords(key: str, value: Any, lists: bool) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise BadInput(f"{label}: {key} must be a table of coordinates")
        out = {}
        for raw, v in value.items():
            name = raw.replace("-", "_")
            if name not in coordinates:
                raise BadInput(f"{label}: {key} names {raw!r}, not a coordinate of the cells "
                               f"({', '.join(sorted(coordinates))})")  # fmt: skip
            if lists and not (isinstance(v, list) and v):
                raise BadInput(f"{label}: {key}.{raw} must be a list of values")
            out[name] = v
        return out

    baseline = coords("baseline", t.get("baseline"), False)
    if "family" in baseline and isinstance(baseline["family"], str) and ":" in baseline["family"]:
        family, _, objective = baseline["family"].partition(":")
        baseline.update(family=family, objective=objective)
    only = coords("only", t.get("only"), True)
    reverse = t.get("reverse", False)
    if not isinstance(reverse, bool):
        raise BadInput(f"{label}: reverse must be true or false")
    x = t.get("x")
    if x is not None and (not isinstance(x, str) or x.replace("-", "_") not in coordinates):
        raise BadInput(f"{label}: x must name a coordinate ({', '.join(sorted(coordinates))})")
    about = t.get("about", "")
    if not isinstance(about, str):
        raise BadInput(f"{label}: about must be a text")
    return StudyTable(title.strip(), tuple(measures), baseline, only, reverse,
                      x.replace("-", "_") if x else None, " ".join(about.split()),
                      tuple(epochs))  # fmt: skip
