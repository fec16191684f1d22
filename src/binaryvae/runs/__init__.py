"""Run directories: one training run (`train_run`) or several (`compare`), and their files.

Composes `binaryvae.training` (fit an epoch, checkpoints) and `binaryvae.evaluation` (score the
discrete model per epoch and at the end) into the run-directory contract of docs/internals.md.

The names that need the training layer (build, train, evaluate) load on first use, so that
readers of run directories (the report) import this package without loading training.
"""

from importlib import import_module
from typing import Any

from binaryvae.runs.compare import DEFAULT_COMPARE_EPOCHS, DEFAULT_FAMILIES, compare, parse_families
from binaryvae.runs.directory import RunDir, find_runs, is_run_dir
from binaryvae.runs.labels import NUMBER_LABELS, objective_label, summary_labels
from binaryvae.runs.ownership import check_new_dir, claim_existing, claim_new, clean_owned

# name -> the submodule that defines it, imported on first access (PEP 562)
_LAZY = {
    **dict.fromkeys(("Prepared", "load_run", "prepare", "test_data"), "build"),
    "evaluate_run": "evaluate",
    **dict.fromkeys(("TrainingDiverged", "train_replicas", "train_run"), "train"),
    "parse_seeds": "seeds",
}


def __getattr__(name: str) -> Any:
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'binaryvae.runs' has no attribute {name!r}") from None
    value = getattr(import_module(f"binaryvae.runs.{module}"), name)
    globals()[name] = value
    return value

__all__ = [
    "DEFAULT_COMPARE_EPOCHS",
    "DEFAULT_FAMILIES",
    "Prepared",
    "RunDir",
    "TrainingDiverged",
    "check_new_dir",
    "claim_existing",
    "claim_new",
    "clean_owned",
    "compare",
    "evaluate_run",
    "find_runs",
    "is_run_dir",
    "load_run",
    "parse_families",
    "prepare",
    "test_data",
    "train_run",
    "train_replicas",
    "parse_seeds",
    "NUMBER_LABELS",
    "objective_label",
    "summary_labels",
]
