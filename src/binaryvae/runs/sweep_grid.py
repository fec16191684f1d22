"""The grid of a sweep: axes, fixed values, and the cells they expand to (no training here).

A sweep trains every combination of its axes -- datasets x (family, objective) pairs x latent
sizes -- with all its seeds as one replica group per combination (a *cell*). Everything else is
a fixed value, named like the options of ``binaryvae train`` (or like the `TrainConfig` fields).
The grid comes from command-line options or a TOML/JSON file with the same names::

    datasets = ["mnist-mini", "fashion-mnist"]
    families = ["logistic", "concrete:bernoulli-elbo", "steplogistic"]
    objectives = ["elbo"]          # crossed with every family given without ":objective"
    latent-dims = [8, 16]
    seeds = "0-4"                  # or [0, 1, 2, 3, 4]
    epochs = 20
    hidden = [512, 256, 128]

`grid_from_values` checks every name and value and refuses (BadInput, naming it) an unknown
key, an empty axis or a repeated value; `Grid.cells` gives the cells in a fixed order, each with
its validated `TrainConfig`.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from binaryvae.config import (
    COMPARE_EPOCHS,
    COMPARE_FAMILIES,
    OBJECTIVES,
    PROTOCOL_FIELDS,
    PROTOCOLS,
    TrainConfig,
    split_list,
)
from binaryvae.errors import BadInput
from binaryvae.jsonfiles import MAX_DEPTH, check_depth, read_bounded, read_json
from binaryvae.runs.labels import parse_family_spec
from binaryvae.runs.seeds import parse_seeds

__all__ = [
    "AXES",
    "Cell",
    "Grid",
    "cell_name",
    "grid_from_values",
    "load_grid_file",
    "normalize_keys",
    "parse_pairs",
]

# axis name -> the TrainConfig field each of its values sets
AXES = {
    "datasets": "dataset",
    "families": "family",
    "objectives": "objective",
    "latent_dims": "latent_dim",
    "seeds": "seed",
}
_SINGULAR = {field: axis for axis, field in AXES.items()}  # "dataset" -> "datasets", ...
# fixed values: every TrainConfig field that is not an axis, plus train's option names where
# they differ from the field (``--kl-warmup``)
_FIXED = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in _SINGULAR]
_ALIASES = {"kl_warmup": "kl_warmup_epochs"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # dataset/family names become directory names
MAX_CELLS = 100_000


@dataclass(frozen=True)
class Cell:
    """One combination of the axes: a replica group of ``seeds`` (or, ``layout="run"``, the one
    run directory `compare` writes for its single seed) under ``<sweep dir>/<name>/``."""

    name: str
    config: TrainConfig  # dataset/family/objective/latent_dim of the cell, seed = seeds[0]
    seeds: tuple[int, ...]
    layout: str = "replicas"  # "replicas": NAME/seed-<s>/ ; "run": NAME/ is the run directory

    @property
    def key(self) -> tuple[str, str, str, int]:
        c = self.config
        return (c.dataset, c.family, c.objective, c.latent_dim)

    def run_dirs(self, root: str | Path) -> dict[int, Path]:
        """Where each seed's run directory is."""
        base = Path(root) / self.name
        if self.layout == "run":
            return {self.seeds[0]: base}
        return {s: base / f"seed-{s}" for s in self.seeds}

    def to_dict(self) -> dict[str, Any]:
        c = self.config
        return {
            "name": self.name,
            "dataset": c.dataset,
            "family": c.family,
            "objective": c.objective,
            "latent_dim": c.latent_dim,
            "seeds": list(self.seeds),
            "layout": self.layout,
        }

    def spec(self) -> dict[str, Any]:
        """What a worker needs to run the cell: plain types only (it crosses processes)."""
        return {**self.to_dict(), "config": self.config.to_dict()}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Cell:
        return cls(
            name=spec["name"],
            config=TrainConfig.from_dict(spec["config"]),
            seeds=tuple(spec["seeds"]),
            layout=spec["layout"],
        )


def cell_name(dataset: str, family: str, objective: str, latent_dim: int) -> str:
    """``mnist-mini_steplogistic_elbo_8bit``: every axis value, always (a grid that grows keeps
    the names of its cells)."""
    return f"{dataset}_{family}_{objective}_{latent_dim}bit"


@dataclass
class Grid:
    """Axes and fixed values of a sweep (what sweep.json records under ``grid``)."""

    datasets: list[str]
    pairs: list[tuple[str, str]]  # (family, objective), objectives already crossed in
    latent_dims: list[int]
    seeds: list[int]
    base: TrainConfig  # the fixed values; its axis fields are those of the first cell

    def cells(self) -> list[Cell]:
        """Every cell, datasets outermost, then (family, objective), then latent size; each
        config validated (BadInput naming the cell)."""
        cells = []
        for dataset, (family, objective), n in itertools.product(
            self.datasets, self.pairs, self.latent_dims
        ):
            name = cell_name(dataset, family, objective, n)
            try:
                config = dataclasses.replace(
                    self.base,
                    dataset=dataset,
                    family=family,
                    objective=objective,
                    latent_dim=n,
                    seed=self.seeds[0],
                )
                # a preset: the fields it sets follow it for the cell's family (the
                # family-dependent ones), except the base's overrides and the axes
                keep = set(self.base.protocol_overrides or ()) | set(_SINGULAR)
                config = config.follow_protocol(keep)
            except BadInput as e:
                raise BadInput(f"cell {name}: {e}") from None
            cells.append(Cell(name, config, tuple(self.seeds)))
        return cells

    def fixed(self) -> dict[str, Any]:
        """The fixed values as a mapping of TrainConfig fields (no axis fields)."""
        d = self.base.to_dict()
        return {k: v for k, v in d.items() if k not in _SINGULAR}

    def to_dict(self) -> dict[str, Any]:
        return {
            "datasets": list(self.datasets),
            "families": [f"{f}:{o}" for f, o in self.pairs],
            "latent_dims": list(self.latent_dims),
            "seeds": list(self.seeds),
            "fixed": self.fixed(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str) -> Grid:
        """The grid recorded by `to_dict` (sweep.json), checked like any other."""
        try:
            values = {
                "datasets": d["datasets"],
                "families": d["families"],
                "latent_dims": d["latent_dims"],
                "seeds": d["seeds"],
                **d["fixed"],
            }
        except (KeyError, TypeError) as e:
            raise BadInput(f"{where}: not a recorded grid ({e})") from None
        return grid_from_values(values, where)


# ----------------------------------------------------------------------------- parsing
def _key(name: Any, where: str) -> str:
    if not isinstance(name, str):
        raise BadInput(f"{where}: keys must be names, got {name!r}")
    key = name.strip().replace("-", "_")
    return _ALIASES.get(key, key)


def _known_keys() -> list[str]:
    return [a.replace("_", "-") for a in AXES] + [f.replace("_", "-") for f in _FIXED]


def _items(axis: str, value: Any, where: str) -> list:
    """An axis value as a list: a list/tuple as given, a string split at commas, a scalar as
    one value. BadInput for an empty axis or a repeated value."""
    label = axis.replace("_", "-")
    if isinstance(value, str) and value.strip() and not all(p.strip() for p in value.split(",")):
        raise BadInput(f"{where}: {label}: {value!r} has an empty element (a stray comma?)")
    if axis == "seeds" and isinstance(value, str):
        try:
            items = parse_seeds(value)
        except BadInput as e:
            if not value.strip(", "):
                raise BadInput(f"{where}: the axis {label} is empty") from None
            raise BadInput(f"{where}: {label}: {e}") from None
    elif isinstance(value, str):
        if not value.strip(", \t"):
            raise BadInput(f"{where}: the axis {label} is empty")
        try:
            items = split_list(value, label)
        except BadInput as e:
            raise BadInput(f"{where}: {e}") from None
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        items = [value]
    if not items:
        raise BadInput(f"{where}: the axis {label} is empty")
    seen = set()
    for item in items:
        if isinstance(item, list | dict):
            raise BadInput(f"{where}: {label} must be a list of values, got {value!r}")
        if item in seen:
            raise BadInput(f"{where}: {label} lists {item!r} twice")
        seen.add(item)
    return items


def _names(axis: str, items: list, where: str) -> list[str]:
    for item in items:
        if not isinstance(item, str) or not _NAME.match(item):
            raise BadInput(f"{where}: {axis.replace('_', '-')}: {item!r} is not a name")
    return items


def _ints(axis: str, items: list, where: str) -> list[int]:
    out = []
    for item in items:
        if isinstance(item, str):
            try:
                item = int(item)
            except ValueError:
                pass
        if isinstance(item, bool) or not isinstance(item, int):
            raise BadInput(f"{where}: {axis.replace('_', '-')} must be integers, got {item!r}")
        out.append(item)
    return out


def parse_pairs(families: list[str], objectives: list[str], where: str) -> list[tuple[str, str]]:
    """Families ``name`` or ``name:objective``: a bare name is crossed with every objective."""
    for o in objectives:
        if o not in OBJECTIVES:
            raise BadInput(
                f"{where}: unknown objective {o!r}; choose one of {', '.join(OBJECTIVES)}"
            )
    pairs = []
    for item in families:
        family, objective = parse_family_spec(item, f"{where}: families: ")
        if not _NAME.match(family):
            raise BadInput(f"{where}: families: {item!r} is not a family name")
        pairs += [(family, objective)] if objective else [(family, o) for o in objectives]
    if len(set(pairs)) != len(pairs):
        raise BadInput(f"{where}: a family:objective pair is listed twice")
    return pairs


def normalize_keys(values: dict[str, Any], where: str) -> dict[str, Any]:
    """``values`` with every key as the grid names it: hyphens as underscores, singular axis
    names as the axis (``seed`` -> ``seeds``), ``kl_warmup`` as ``kl_warmup_epochs``. BadInput
    for a key that names nothing, or names one thing twice."""
    if not isinstance(values, dict):
        raise BadInput(f"{where}: a grid is a table of names and values")
    out: dict[str, Any] = {}
    for raw, value in values.items():
        key = _key(raw, where)
        key = _SINGULAR.get(key, key)  # "dataset = ..." is the axis "datasets" with one value
        if key not in AXES and key not in _FIXED:
            raise BadInput(f"{where}: unknown key {raw!r}; known: {', '.join(_known_keys())}")
        if key in out:
            raise BadInput(f"{where}: {key.replace('_', '-')} is given twice")
        out[key] = value
    return out


def grid_from_values(values: dict[str, Any], where: str = "the grid") -> Grid:
    """A grid from axis and fixed values (a grid file's or the command line's names).

    Axes (``datasets``, ``families``, ``objectives``, ``latent-dims``, ``seeds``; the singular
    names are accepted too) take a list or a comma-separated string (seeds also ``"0-4"``);
    every other key must name a `TrainConfig` field or a ``train`` option. Defaults: compare's
    grid (`binaryvae.config.COMPARE_FAMILIES`, 8 bits, seed 0, mnist-mini, `COMPARE_EPOCHS`).
    ``protocol`` (a preset of `binaryvae.config.PROTOCOLS`) sets its fields and the default
    dataset and latent size; fixed values given beside it override it (recorded in each
    cell's ``protocol_overrides``), and its family-dependent fields follow each cell's family.
    BadInput, naming the key, for anything unknown, empty, repeated or invalid.
    """
    values = normalize_keys(values, where)
    axes = {k: v for k, v in values.items() if k in AXES}
    fixed = {k: v for k, v in values.items() if k not in AXES}
    # a preset's dataset and latent size are the axes' defaults
    name = fixed.get("protocol")
    preset = PROTOCOLS.get(name, {}) if isinstance(name, str) else {}
    datasets = _names(
        "datasets",
        _items("datasets", axes.get("datasets", preset.get("dataset", "mnist-mini")), where),
        where,
    )
    objectives = _items("objectives", axes.get("objectives", "elbo"), where)
    families = _items("families", axes.get("families", list(COMPARE_FAMILIES)), where)
    for item in families:
        if not isinstance(item, str):
            raise BadInput(f"{where}: families: {item!r} is not a family name")
    pairs = parse_pairs(families, [str(o) for o in objectives], where)
    latent_dims = _ints(
        "latent_dims",
        _items("latent_dims", axes.get("latent_dims", preset.get("latent_dim", 8)), where),
        where,
    )
    seeds = axes.get("seeds", 0)
    seeds = parse_seeds(_ints("seeds", _items("seeds", seeds, where), where))
    base = {"epochs": COMPARE_EPOCHS if fixed.get("steps") is None else None, **fixed}
    protocol = fixed.get("protocol")
    if isinstance(base.get("hidden"), str):
        try:
            base["hidden"] = [int(h) for h in split_list(base["hidden"], "hidden")]
        except ValueError:
            raise BadInput(f"{where}: hidden takes sizes like 512,256,128") from None
        except BadInput as e:
            raise BadInput(f"{where}: {e}") from None
    base.update(
        dataset=datasets[0],
        family=pairs[0][0],
        objective=pairs[0][1],
        latent_dim=latent_dims[0],
        seed=seeds[0],
    )
    try:
        config = TrainConfig.from_dict(base)
        if protocol is not None:  # the preset's values, the fixed values given on top
            keep = (set(fixed) - {"protocol", "protocol_overrides"}) | set(_SINGULAR)
            if fixed.get("protocol_overrides"):  # a recorded grid (sweep.json) keeps its own
                keep |= set(fixed["protocol_overrides"])
                keep -= set(PROTOCOL_FIELDS) - set(fixed["protocol_overrides"])
            config = config.follow_protocol(keep)
    except BadInput as e:
        raise BadInput(f"{where}: {e}") from None
    grid = Grid(datasets, pairs, latent_dims, seeds, config)
    count = len(datasets) * len(pairs) * len(latent_dims)
    if count > MAX_CELLS:
        raise BadInput(f"{where}: {count} cells; at most {MAX_CELLS} per sweep")
    return grid


def load_grid_file(path: str | Path) -> dict[str, Any]:
    """The names and values of a ``.toml`` or ``.json`` grid file (checked by
    `grid_from_values`); BadInput for a missing or unreadable file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise BadInput(f"grid file {path} must end in .toml or .json")
    if suffix == ".json":
        return read_json(path, dict, what="grid file", max_bytes=1 << 20)
    data = read_bounded(path, 1 << 20, "grid file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadInput(f"{path}: not UTF-8 text (byte at offset {e.start})") from None
    check_depth(data, MAX_DEPTH, str(path))  # tomllib recurses into nested arrays and tables
    try:
        return tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as e:
        raise BadInput(f"unreadable grid file {path}: {e}") from None
