"""The layer rules of docs/internals.md, checked twice: on the source (every `import` of every
module, at module level or inside a function, is parsed) and on what importing each module
actually loads (every `binaryvae` module in `sys.modules` after a fresh import, so that a chain
through another package's ``__init__`` counts). A rule that is broken fails here."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "binaryvae"
# the data flow, left to right: a module imports only from its own layer or layers to its left
ORDER = ["errors", "config", "storage", "stats", "resources", "jsonfiles", "data",
         "distributions", "theory", "models", "testing", "training", "evaluation", "diagnostics",
         "runs", "report", "studies", "cli"]  # fmt: skip
# importable by every layer (each imports nothing of binaryvae but errors)
BASE = {"errors", "config", "storage", "stats", "resources", "jsonfiles"}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        out.append((name, path))
    return out


def _is_package_module(parts: list[str]) -> bool:
    path = SRC.joinpath(*parts)
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(path: Path) -> list[str]:
    """Absolute names of everything ``path`` imports (``from binaryvae import theory`` is
    ``binaryvae.theory``; ``from binaryvae import __version__`` is ``binaryvae``)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                parts = candidate.split(".")[1:]
                is_module = candidate.startswith("binaryvae.") and _is_package_module(parts)
                names.append(candidate if is_module else node.module)
    return names


def _layer(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] != "binaryvae":
        return None
    return parts[1] if len(parts) > 1 else "errors"  # the package root: __version__ only


MODULES = _modules()


@pytest.mark.parametrize("name, path", MODULES, ids=[m for m, _ in MODULES])
def test_imports_follow_the_data_flow(name, path):
    me = _layer(name)
    if me in ("__main__", "errors") or name == "binaryvae":
        return
    for imported in _imports(path):
        other = _layer(imported)
        if other is None or other in BASE or other == me:
            continue
        assert ORDER.index(other) <= ORDER.index(me), f"{name} imports {imported}"


def _in_layer(layer: str) -> list[tuple[str, Path]]:
    return [(n, p) for n, p in MODULES if _layer(n) == layer]


def test_evaluation_imports_neither_training_nor_models():
    """Evaluation scores a model through its public methods; it never reaches the training
    layer or the models package (whose __init__ loads the gradient estimators)."""
    for name, path in _in_layer("evaluation"):
        for imported in _imports(path):
            assert _layer(imported) not in ("training", "models"), f"{name} imports {imported}"


def test_distributions_import_only_torch_and_the_standard_library():
    stdlib = set(sys.stdlib_module_names)
    for name, path in _in_layer("distributions"):
        for imported in _imports(path):
            top = imported.split(".")[0]
            assert top in stdlib or top == "torch" or imported.startswith(
                "binaryvae.distributions"
            ), f"{name} imports {imported}"


def test_the_report_reads_run_directories_only():
    """The report rebuilds models through `binaryvae.runs` (load_run / restore); it never
    trains, and never builds a model itself."""
    for name, path in _in_layer("report"):
        for imported in _imports(path):
            assert _layer(imported) not in ("training", "models", "diagnostics"), (
                f"{name} imports {imported}"
            )


def test_the_command_line_imports_heavy_layers_lazily():
    """At module level a CLI module imports only the standard library, the CLI itself, config
    and errors (so that `binaryvae --help` stays fast); everything else inside functions."""
    allowed = {"cli", "config", "errors"}
    stdlib = set(sys.stdlib_module_names)
    for name, path in _in_layer("cli"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                top = (module or "").split(".")[0]
                ok = top in stdlib or top == "__future__" or _layer(module or "") in allowed
                assert ok or module == "binaryvae", f"{name} imports {module} at module level"


def test_the_parser_sees_every_import(tmp_path):
    """The parser sees imports inside functions and `from binaryvae import <module>`."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from binaryvae import training\n    import binaryvae.models\n")
    assert _imports(bad) == ["binaryvae.training", "binaryvae.models"]


# ----------------------------------------------------------------------------- what loads
# layer -> layers that importing any of its modules must not load, beyond the data-flow order
# (docs/internals.md: evaluation never loads training or models; the report reads run
# directories only; distributions need only torch; the CLI loads heavy layers in its commands)
FORBIDDEN = {
    "evaluation": {"training", "models"},
    "report": {"training", "models", "testing", "diagnostics"},
    "distributions": set(ORDER) - {"distributions"},
    "cli": set(ORDER) - {"cli", "config", "errors"},
}

# a fresh interpreter imports each module with every binaryvae module unloaded first (torch and
# the other libraries stay loaded: only binaryvae's own modules are compared) and prints what
# each import loaded. Each module body runs afresh at every import; only its compiled code is
# kept (as a .pyc would keep it: without bytecode files every re-import compiled the source
# again, 40 % of the probe's time)
_PROBE = """
import importlib, importlib.machinery, json, sys
compiled = {}
to_code = importlib.machinery.SourceFileLoader.source_to_code
def cached(self, data, path, *args, **kwargs):
    key = (path, bytes(data))
    if key not in compiled:
        compiled[key] = to_code(self, data, path, *args, **kwargs)
    return compiled[key]
importlib.machinery.SourceFileLoader.source_to_code = cached
loaded = {}
for name in sys.argv[1:]:
    for m in [m for m in sys.modules if m == "binaryvae" or m.startswith("binaryvae.")]:
        del sys.modules[m]
    importlib.import_module(name)
    loaded[name] = sorted(m for m in sys.modules if m.startswith("binaryvae."))
print(json.dumps(loaded))
"""


def _loaded(src: Path, names: list[str]) -> dict[str, list[str]]:
    """{module: the binaryvae modules importing it loads}, for the package under ``src``."""
    env = {**os.environ, "PYTHONPATH": str(src), "MPLBACKEND": "Agg"}
    out = subprocess.run([sys.executable, "-c", _PROBE, *names], capture_output=True, text=True,
                         env=env, cwd=src, timeout=120, check=True)  # fmt: skip
    return json.loads(out.stdout)


def _violations(loaded: dict[str, list[str]], forbidden: dict[str, set[str]]) -> list[str]:
    """One line per (module, loaded module) pair that breaks the order or ``forbidden``."""
    found = []
    for name, modules in loaded.items():
        me = _layer(name)
        for other_name in modules:
            other = _layer(other_name)
            if other == me:
                continue
            later = other not in BASE and ORDER.index(other) > ORDER.index(me)
            if later or other in forbidden.get(me, ()):
                found.append(f"{name} loads {other_name}")
    return found


CHECKED = [n for n, _ in MODULES if _layer(n) in ORDER and n != "binaryvae"]


@pytest.fixture(scope="module")
def loaded() -> dict[str, list[str]]:
    return _loaded(SRC.parent, CHECKED)


def test_importing_a_module_loads_only_what_the_rules_allow(loaded):
    """Every module, imported alone: what it loads, through any chain of imports (a package's
    ``__init__`` included), keeps to the order of the layers and the four rules."""
    assert set(loaded) == set(CHECKED)
    assert _violations(loaded, FORBIDDEN) == []
    # the chain the last review found: the report loaded training through runs/__init__
    assert not any(_layer(m) == "training" for m in loaded["binaryvae.report"])
    assert "binaryvae.runs.directory" in loaded["binaryvae.report"]  # it does load runs


def test_a_rule_the_real_imports_break_is_caught(loaded, monkeypatch):
    """A rule table under which the real import chains are wrong (the report may not load the
    run layer, which it does) fails the check, naming the modules."""
    strict = {**FORBIDDEN, "report": FORBIDDEN["report"] | {"runs"}}
    found = _violations(loaded, strict)
    assert "binaryvae.report loads binaryvae.runs.directory" in found
    assert all(line.startswith("binaryvae.report") for line in found)


def test_a_planted_transitive_violation_is_caught(tmp_path):
    """A copy of the package where a run-layer module the report uses imports training (legal
    for the run layer, and no report module imports training itself): the source check passes,
    the load check fails for the report."""
    copy = tmp_path / "binaryvae"
    shutil.copytree(SRC, copy, ignore=shutil.ignore_patterns("__pycache__", "mnist_mini"))
    planted = copy / "runs" / "directory.py"
    planted.write_text(planted.read_text() + "\nimport binaryvae.training.checkpoint  # planted\n")
    assert "binaryvae.training.checkpoint" in _imports(planted)  # the run layer may do this
    names = ["binaryvae.report", "binaryvae.report.collect", "binaryvae.evaluation"]
    found = _violations(_loaded(tmp_path, names), FORBIDDEN)
    assert "binaryvae.report loads binaryvae.training.checkpoint" in found
    assert "binaryvae.report.collect loads binaryvae.training.checkpoint" in found
    assert not any(line.startswith("binaryvae.evaluation") for line in found)


def test_the_run_driver_stays_small():
    """runs/train.py holds the two public drivers only (issue 25: at most 250 lines); the
    engine, set-up, per-epoch work and console text live in their own modules."""
    lines = (SRC / "runs" / "train.py").read_text().splitlines()
    assert len(lines) <= 250, f"runs/train.py has {len(lines)} lines"


def test_seed_lists_load_no_training(loaded):
    """The option readers (compare, the sweep grid) import `binaryvae.runs.seeds` at module
    level: it must not load the training layer or torch's training code with it."""
    assert not any(_layer(m) == "training" for m in loaded["binaryvae.runs.seeds"])
    assert not any(_layer(m) == "training" for m in loaded["binaryvae.runs.sweep_grid"])
