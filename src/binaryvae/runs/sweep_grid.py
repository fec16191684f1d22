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

    [vary]                         # generic axes: any other option -> its values, crossed in
    lr = [1e-3, 1e-4]
    hidden = [[200, 200], []]
    learning_signal = ["elbo", "reconstruction"]   # family options (extra) by their own name

    [[variants]]                   # one change at a time: each variant is the fixed values
    name = "baseline"              # with its own on top, crossed with the axes (not with
    [[variants]]                   # each other); the cell name gains _<name>
    name = "adam-eps-1e-4"
    adam-eps = 1e-4

A varied option names a `TrainConfig` field (or a ``train`` option) or a family option of
`binaryvae.config.ModelOptions` (set in ``extra``); each cell's name gains a suffix per varied
option (``_lr-0.0001``, ``_hidden-200x200``). ``protocol`` varied applies each preset, with the
fixed values given beside it still overriding it. A variant names the same options as [vary]
(not an axis, not a varied option); its cells record ``variant = <name>`` (a study table pairs
by it: ``baseline = { variant = "baseline" }``).

`grid_from_values` checks every name and value and refuses (BadInput, naming it) an unknown
key, an empty axis or a repeated value; `Grid.cells` gives the cells in a fixed order, each with
its validated `TrainConfig`.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from binaryvae.config import (
    COMPARE_EPOCHS,
    COMPARE_FAMILIES,
    OBJECTIVES,
    PROTOCOL_FIELDS,
    PROTOCOLS,
    ModelOptions,
    TrainConfig,
    split_list,
)
from binaryvae.errors import BadInput
from binaryvae.jsonfiles import MAX_DEPTH, check_depth, read_bounded, read_json
from binaryvae.runs.labels import parse_family_spec
from binaryvae.runs.seeds import parse_seeds

__all__ = [
    "AXES",
    "VARY_NAMES",
    "Cell",
    "Grid",
    "cell_name",
    "grid_from_values",
    "load_grid_file",
    "normalize_keys",
    "parse_pairs",
    "parse_vary_option",
    "recorded_values",
    "vary_label",
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
# what [vary] may name: the fixed values' fields (not those training records or derives) and
# the family options of ModelOptions (set in extra; "extra.<name>" accepted too)
_NOT_VARIED = ("extra", "protocol_overrides", "data_fingerprint", "data_source")
_OPTIONS = [f.name for f in dataclasses.fields(ModelOptions)]
VARY_NAMES = tuple(f for f in _FIXED if f not in _NOT_VARIED) + tuple(_OPTIONS)
# the fields whose one value is a list (hidden: layer sizes)
_LIST_FIELDS = {f.name for f in dataclasses.fields(TrainConfig) if isinstance(f.default, tuple)}
_SUFFIX = re.compile(r"[^A-Za-z0-9.+-]")  # characters a cell-name suffix does not keep


@dataclass(frozen=True)
class Cell:
    """One combination of the axes: a replica group of ``seeds`` (or, ``layout="run"``, the one
    run directory `compare` writes for its single seed) under ``<sweep dir>/<name>/``."""

    name: str
    config: TrainConfig  # dataset/family/objective/latent_dim of the cell, seed = seeds[0]
    seeds: tuple[int, ...]
    layout: str = "replicas"  # "replicas": NAME/seed-<s>/ ; "run": NAME/ is the run directory
    # the varied options' values of this cell ([vary]: option name -> value), in grid order
    vary: dict[str, Any] = dataclasses.field(default_factory=dict)
    # the cell's variant ([[variants]]: its name), None in a grid without variants
    variant: str | None = None

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
            **({"vary": _plain(self.vary)} if self.vary else {}),
            **({"variant": self.variant} if self.variant is not None else {}),
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
            vary=dict(spec.get("vary") or {}),
            variant=spec.get("variant"),
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
    # [vary]: option name (a VARY_NAMES entry) -> its values, crossed in after latent size
    vary: dict[str, list] = field(default_factory=dict)
    # [family-options]: family -> options of extra for that family's cells only
    family_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    # the fixed values given explicitly (they override a varied protocol's preset)
    explicit: list[str] = field(default_factory=list)
    # [[variants]]: name -> the options it sets on top of the fixed values (TrainConfig field
    # or family-option names), in the order given; crossed in innermost
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)

    def cells(self) -> list[Cell]:
        """Every cell, datasets outermost, then (family, objective), then latent size, then
        the varied options (in the order given), then the variants; each config validated
        (BadInput naming the cell, and the variant)."""
        cells = []
        combos = list(itertools.product(*self.vary.values())) if self.vary else [()]
        variants = list(self.variants.items()) or [(None, {})]
        for dataset, (family, objective), n, combo, (variant, over) in itertools.product(
            self.datasets, self.pairs, self.latent_dims, combos, variants
        ):
            varied = dict(zip(self.vary, combo, strict=True))
            name = cell_name(dataset, family, objective, n) + "".join(
                f"_{vary_label(k, v)}" for k, v in varied.items()
            ) + (f"_{variant}" if variant is not None else "")
            try:
                config = self._config(dataset, family, objective, n, varied, over)
            except BadInput as e:
                what = f"cell {name}" + (f" (variant {variant})" if variant is not None else "")
                raise BadInput(f"{what}: {e}") from None
            cells.append(Cell(name, config, tuple(self.seeds), vary=varied, variant=variant))
        names = [c.name for c in cells]
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise BadInput(f"two cells would be named {twice[0]}: vary values that read alike")
        return cells

    def _config(self, dataset: str, family: str, objective: str, n: int, varied: dict,
                variant: dict | None = None):  # fmt: skip
        d = self.base.to_dict()
        d.update(dataset=dataset, family=family, objective=objective, latent_dim=n,
                 seed=self.seeds[0])  # fmt: skip
        extra = {**d["extra"], **self.family_options.get(family, {})}
        keep = set(self.base.protocol_overrides or ()) | set(_SINGULAR)
        variant = variant or {}

        def put(values: dict[str, Any], given: set[str]) -> None:
            """``values`` replace the fixed ones (family options into extra); a budget (steps
            or epochs) replaces the other one unless ``given`` names that one too."""
            for name, value in values.items():
                if name in _OPTIONS:
                    extra[name] = value
                    keep.add(f"extra.{name}")
                    continue
                d[name] = list(value) if isinstance(value, tuple) else value
                keep.add(name)
                other = {"steps": "epochs", "epochs": "steps"}.get(name)
                if other and value is not None and other not in given:
                    d[other] = None

        put(variant, set(variant))  # the variant's values, then the varied ones on top
        put(varied, set(varied) | set(self.explicit))
        keep |= {f"extra.{k}" for k in self.family_options.get(family, {})}
        d["extra"] = extra
        if "protocol" in varied or "protocol" in variant:  # this cell's preset, explicit on top
            d["protocol_overrides"] = None
            keep |= set(self.explicit) - {"protocol", "protocol_overrides"}
        return TrainConfig.from_dict(d).follow_protocol(keep)

    def fixed(self) -> dict[str, Any]:
        """The fixed values as a mapping of TrainConfig fields (no axis fields)."""
        d = self.base.to_dict()
        return {k: v for k, v in d.items() if k not in _SINGULAR}

    def to_dict(self) -> dict[str, Any]:
        out = {
            "datasets": list(self.datasets),
            "families": [f"{f}:{o}" for f, o in self.pairs],
            "latent_dims": list(self.latent_dims),
            "seeds": list(self.seeds),
            "fixed": self.fixed(),
        }
        if self.vary:
            out["vary"] = {k: [_plain(v) for v in vs] for k, vs in self.vary.items()}
        if self.vary or self.variants:
            out["explicit"] = sorted(self.explicit)
        if self.family_options:
            out["family_options"] = _plain(self.family_options)
        if self.variants:
            out["variants"] = [{"name": k, **_plain(v)} for k, v in self.variants.items()]
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str) -> Grid:
        """The grid recorded by `to_dict` (sweep.json), checked like any other."""
        values, explicit = recorded_values(d, where)
        return grid_from_values(values, where, explicit=explicit)


def recorded_values(d: dict[str, Any], where: str) -> tuple[dict[str, Any], list[str] | None]:
    """The grid values (as `grid_from_values` takes them) of a grid recorded by
    `Grid.to_dict`, and its explicit fixed values (None where it varies nothing)."""
    try:
        values = {
            "datasets": d["datasets"],
            "families": d["families"],
            "latent_dims": d["latent_dims"],
            "seeds": d["seeds"],
            **d["fixed"],
        }
        for key in ("vary", "family_options", "variants"):
            if d.get(key):
                values[key] = d[key]
        # the fixed values recorded hold every field: the varied ones are not fixed
        for key in d.get("vary") or {}:
            values.pop(key, None)
            if key in _OPTIONS and isinstance(values.get("extra"), dict):
                values["extra"] = {k: v for k, v in values["extra"].items() if k != key}
    except (KeyError, TypeError, AttributeError) as e:
        raise BadInput(f"{where}: not a recorded grid ({e})") from None
    explicit = d.get("explicit")
    return values, (list(explicit) if isinstance(explicit, list) else None)


def _plain(value: Any) -> Any:
    """A value as JSON writes it: tuples as lists, recursively."""
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def vary_label(name: str, value: Any) -> str:
    """The cell-name suffix of a varied option: ``lr-0.0001``, ``hidden-200x200``,
    ``hidden-none`` (no hidden layer), ``learning-signal-elbo``, ``grad-var-param-ema-on``;
    only letters, digits and ``.+-`` (filesystem-safe)."""
    if isinstance(value, bool):
        text = "on" if value else "off"
    elif value is None:
        text = "none"
    elif isinstance(value, list | tuple):  # sizes joined by x, names by +
        joint = "x" if all(isinstance(v, int) for v in value) else "+"
        text = joint.join(str(v) for v in value) or "none"
    elif isinstance(value, float):
        text = f"{value:g}"
    else:
        text = str(value)
    return _SUFFIX.sub("_", f"{name.replace('_', '-')}-{text}")


# ----------------------------------------------------------------------------- parsing
def _key(name: Any, where: str) -> str:
    if not isinstance(name, str):
        raise BadInput(f"{where}: keys must be names, got {name!r}")
    key = name.strip().replace("-", "_")
    return _ALIASES.get(key, key)


def _known_keys() -> list[str]:
    return (
        [a.replace("_", "-") for a in AXES]
        + [f.replace("_", "-") for f in _FIXED]
        + [t.replace("_", "-") for t in _TABLES]
    )


_TABLES = ("vary", "family_options", "variants")  # the grid's tables beside axes and values


def _freeze(value: Any) -> Any:
    return tuple(_freeze(v) for v in value) if isinstance(value, list | tuple) else value



def _option_key(raw: str, where: str, label: str, axis_hint: str) -> str:
    """The option a [vary] or [[variants]] key names (``extra.`` dropped); BadInput, naming
    ``label``, for an axis (with ``axis_hint``) or a name no run option has."""
    key = _key(raw, where)
    key = key[len("extra."):] if key.startswith("extra.") else key
    if key in AXES or key in _SINGULAR:
        axis = _SINGULAR.get(key, key)
        raise BadInput(f"{where}: {label}: {axis.replace('_', '-')} {axis_hint}")
    if key not in VARY_NAMES:
        raise BadInput(
            f"{where}: {label}: unknown option; known: "
            f"{', '.join(n.replace('_', '-') for n in VARY_NAMES)}"
        )
    return key


def _vary_values(values: Any, fixed: dict[str, Any], where: str) -> dict[str, list]:
    """[vary] checked: every name a `VARY_NAMES` entry (``extra.<option>`` and train's option
    names accepted), not an axis, not also a fixed value; every list non-empty, without a
    repeated value; ``hidden`` values lists of sizes. BadInput naming the entry otherwise."""
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise BadInput(f"{where}: vary is a table of option names and lists of values")
    out: dict[str, list] = {}
    for raw, items in values.items():
        label = f"vary {raw}"
        key = _option_key(raw, where, label,
                          "is an axis of the grid already; give its values there")
        if key in out:
            raise BadInput(f"{where}: vary names {key.replace('_', '-')} twice")
        if key in fixed or (key in _OPTIONS and key in (fixed.get("extra") or {})):
            raise BadInput(f"{where}: {label}: given both as a fixed value and varied; give one")
        if not isinstance(items, list | tuple):
            raise BadInput(f"{where}: {label} must be a list of values, got {items!r}")
        if not items:
            raise BadInput(f"{where}: {label} is empty; give at least one value")
        seen = set()
        for item in items:
            nested = isinstance(item, list | tuple)
            if isinstance(item, dict) or (nested and key not in _LIST_FIELDS):
                raise BadInput(f"{where}: {label}: {item!r} is not one value")
            if key in _LIST_FIELDS and not nested:
                raise BadInput(f"{where}: {label}: each value is a list (hidden: layer sizes "
                               f"like [512, 256, 128], or [] for none), got {item!r}")  # fmt: skip
            frozen = _freeze(item)
            if frozen in seen:
                raise BadInput(f"{where}: {label} lists {item!r} twice")
            seen.add(frozen)
        out[key] = [list(v) if isinstance(v, list | tuple) else v for v in items]
    return out


def _variants(values: Any, vary: dict[str, list], where: str) -> dict[str, dict[str, Any]]:
    """[[variants]] checked: a non-empty list of tables, each with a unique filesystem-safe
    ``name`` and options named as in [vary] (`VARY_NAMES`; ``extra.<option>`` and train's option
    names accepted), none an axis or a varied option, each one value (``hidden``: a list of
    sizes). Returns name -> {option: value}. BadInput naming the variant and key otherwise; the
    values themselves are checked by the config of each cell (`Grid.cells`)."""
    if values is None:
        return {}
    if not isinstance(values, list | tuple):
        raise BadInput(f"{where}: variants is a list of tables ([[variants]]), each with a name")
    if not values:
        raise BadInput(f"{where}: variants is empty; give at least one (a name and its options)")
    out: dict[str, dict[str, Any]] = {}
    for i, item in enumerate(values, start=1):
        if not isinstance(item, dict):
            raise BadInput(f"{where}: variant {i} is not a table (a name and its options)")
        name = item.get("name")
        if name is None:
            raise BadInput(f"{where}: variant {i} has no name")
        if not isinstance(name, str) or len(name) > 100 or not _NAME.match(name):
            raise BadInput(f"{where}: variant {i}: name {name!r} is not a name of letters, "
                           "digits, '.', '_' and '-' (it becomes part of a directory name)")
        if name in out:
            raise BadInput(f"{where}: two variants are named {name!r}")
        options: dict[str, Any] = {}
        for raw, value in item.items():
            if raw == "name":
                continue
            label = f"variant {name}: {raw}"
            key = _option_key(raw, where, label,
                              "is an axis of the grid; a variant changes options, not axes")
            if key in vary:
                raise BadInput(f"{where}: {label}: {key.replace('_', '-')} is varied ([vary]); "
                               "a variant cannot set it too")  # fmt: skip
            if key in options:
                raise BadInput(f"{where}: {label}: {key.replace('_', '-')} is given twice")
            nested = isinstance(value, list | tuple)
            if isinstance(value, dict) or (nested and key not in _LIST_FIELDS):
                raise BadInput(f"{where}: {label}: {value!r} is not one value")
            options[key] = list(value) if nested else value
        out[name] = options
    return out


def _family_options(values: Any, families: list[str], where: str) -> dict[str, dict]:
    """[family-options]: family -> options of extra for its cells (checked by
    `binaryvae.config.ModelOptions`; the family must be one of the grid's)."""
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise BadInput(f"{where}: family-options is a table of family -> options")
    out = {}
    for family, options in values.items():
        if family not in families:
            raise BadInput(f"{where}: family-options names {family!r}, not a family of the grid "
                           f"({', '.join(families)})")  # fmt: skip
        try:
            ModelOptions.from_extra(options)
        except BadInput as e:
            raise BadInput(f"{where}: family-options {family}: {e}") from None
        out[family] = dict(options)
    return out


def _guess(text: str) -> Any:
    """One value typed on the command line: none, on/off (true/false), an integer, a number,
    else the text."""
    low = text.strip().lower()
    if low in ("none", "null"):
        return None
    if low in ("on", "true"):
        return True
    if low in ("off", "false"):
        return False
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip()


def parse_vary_option(text: str) -> tuple[str, list]:
    """``--vary NAME=v1,v2`` -> ``(NAME, [v1, v2])``: values typed as integers, numbers,
    on/off, none or names; ``hidden`` values are sizes joined by ``x`` (``200x200``; ``none``:
    no hidden layer). BadInput for anything else (checked further by the grid)."""
    name, sep, values = text.partition("=")
    if not sep or not name.strip():
        raise BadInput(f"--vary takes NAME=v1,v2 (e.g. lr=1e-3,1e-4), got {text!r}")
    name = name.strip()
    if not values.strip():
        raise BadInput(f"--vary {name}: no values given; give at least one (NAME=v1,v2)")
    parts = split_list(values, f"--vary {name}")
    if name.replace("-", "_") == "hidden":
        out = []
        for part in parts:
            if part.lower() == "none":
                out.append([])
                continue
            try:
                out.append([int(h) for h in part.lower().split("x")])
            except ValueError:
                raise BadInput(f"--vary hidden: {part!r} is not layer sizes like 200x200 "
                               "(or none)") from None  # fmt: skip
        return name, out
    return name, [_guess(p) for p in parts]


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
        if key not in AXES and key not in _FIXED and key not in _TABLES:
            raise BadInput(f"{where}: unknown key {raw!r}; known: {', '.join(_known_keys())}")
        if key in out:
            raise BadInput(f"{where}: {key.replace('_', '-')} is given twice")
        out[key] = value
    return out


def grid_from_values(
    values: dict[str, Any], where: str = "the grid", explicit: list[str] | None = None
) -> Grid:
    """A grid from axis and fixed values (a grid file's or the command line's names).

    Axes (``datasets``, ``families``, ``objectives``, ``latent-dims``, ``seeds``; the singular
    names are accepted too) take a list or a comma-separated string (seeds also ``"0-4"``);
    every other key must name a `TrainConfig` field or a ``train`` option. Defaults: compare's
    grid (`binaryvae.config.COMPARE_FAMILIES`, 8 bits, seed 0, mnist-mini, `COMPARE_EPOCHS`).
    ``protocol`` (a preset of `binaryvae.config.PROTOCOLS`) sets its fields and the default
    dataset and latent size; fixed values given beside it override it (recorded in each
    cell's ``protocol_overrides``), and its family-dependent fields follow each cell's family.
    ``vary`` (a table of option -> values, `VARY_NAMES`) adds an axis per option;
    ``family_options`` (family -> options) sets options of ``extra`` for one family's cells;
    ``variants`` (a list of tables: ``name`` and options) gives each variant's cells its options
    on top of the fixed values, crossed with the rest.
    ``explicit``: the fixed values given explicitly where ``values`` is a recorded grid (its
    ``fixed`` holds every field); they override a varied protocol's preset.
    BadInput, naming the key, for anything unknown, empty, repeated or invalid.
    """
    values = normalize_keys(values, where)
    axes = {k: v for k, v in values.items() if k in AXES}
    fixed = {k: v for k, v in values.items() if k not in AXES and k not in _TABLES}
    vary = _vary_values(values.get("vary"), fixed, where)
    variants = _variants(values.get("variants"), vary, where)
    if explicit is None:
        explicit = sorted(set(fixed) - {"protocol_overrides"})
    # a preset's dataset and latent size are the axes' defaults (for a varied protocol, where
    # its presets agree)
    name = fixed.get("protocol")
    preset = PROTOCOLS.get(name, {}) if isinstance(name, str) else {}
    if "protocol" in vary:
        presets = [PROTOCOLS.get(v, {}) for v in vary["protocol"] if isinstance(v, str)]
        preset = {
            k: presets[0][k]
            for k in ("dataset", "latent_dim")
            if presets and all(p.get(k) == presets[0].get(k) for p in presets)
        }
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
    budget_given = fixed.get("steps") is not None or {"steps", "epochs"} & set(vary)
    base = {"epochs": None if budget_given else COMPARE_EPOCHS, **fixed}
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
    family_options = _family_options(values.get("family_options"), [f for f, _ in pairs], where)
    grid = Grid(datasets, pairs, latent_dims, seeds, config, vary, family_options, explicit,
                variants)  # fmt: skip
    count = len(datasets) * len(pairs) * len(latent_dims) * math.prod(len(v) for v in vary.values())
    count *= max(len(variants), 1)
    if count > MAX_CELLS:
        raise BadInput(f"{where}: {count} cells; at most {MAX_CELLS} per sweep")
    if vary or family_options or variants:
        try:
            grid.cells()  # every varied value checked now, naming its cell
        except BadInput as e:
            raise BadInput(f"{where}: {e}") from None
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
