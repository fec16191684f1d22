"""The layer rules of docs/internals.md, checked on the source: every `import` of every module
(at module level or inside a function) is parsed, and a rule that is broken fails here."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "binaryvae"
# the data flow, left to right: a module imports only from its own layer or layers to its left
ORDER = ["errors", "config", "storage", "resources", "data", "distributions", "theory", "models",
         "training", "evaluation", "diagnostics", "runs", "report", "cli"]  # fmt: skip
BASE = {"errors", "config", "storage", "resources"}  # importable by every layer


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


def test_the_rules_catch_a_violation(tmp_path, monkeypatch):
    """The parser sees imports inside functions and `from binaryvae import <module>`."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from binaryvae import training\n    import binaryvae.models\n")
    assert _imports(bad) == ["binaryvae.training", "binaryvae.models"]
