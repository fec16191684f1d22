"""Run directories: one training run (`train_run`) or several (`compare`), and their files.

Composes `binaryvae.training` (fit an epoch, checkpoints) and `binaryvae.evaluation` (score the
discrete model per epoch and at the end) into the run-directory contract of docs/internals.md.
"""

from binaryvae.runs.build import Prepared, load_run, prepare, test_data
from binaryvae.runs.compare import DEFAULT_COMPARE_EPOCHS, DEFAULT_FAMILIES, compare, parse_families
from binaryvae.runs.directory import RunDir, find_runs, is_run_dir
from binaryvae.runs.evaluate import evaluate_run
from binaryvae.runs.labels import NUMBER_LABELS, objective_label, summary_labels
from binaryvae.runs.ownership import check_new_dir, claim_existing, claim_new, clean_owned
from binaryvae.runs.train import TrainingDiverged, parse_seeds, train_replicas, train_run

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
