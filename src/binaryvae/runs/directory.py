"""The run directory on disk: config.json, metrics.jsonl, checkpoints/, summary.json, figures/.

Layout (contract in docs/internals.md)::

    RUN/
      config.json          TrainConfig; `binaryvae train --config RUN/config.json` re-runs it
      metrics.jsonl        one JSON object per completed epoch (and per evaluation step)
      checkpoints/last.pt  model + optimizer + RNG states + epoch, replaced atomically
      summary.json         final numbers and the labels saying what each one bounds
      figures/*.png, report.html, report.md   written by binaryvae.report
      .binaryvae-run       the marker: binaryvae wrote this directory (written first)
      .binaryvae.lock      the one writer's advisory lock (binaryvae.runs.ownership)

A compare directory holds one run directory per model, compare.json (its listing) and its own
figures and report; a replica group (``train --seeds``) holds seed-<s>/ run directories and
replicas.json. `read_compare_listing` and `read_replicas_listing` are the one reader of each
listing. Every
file is written through `binaryvae.storage` (atomic replacement, or an fsync'ed append for
metrics.jsonl), so readers need no lock. Every file is read through `binaryvae.jsonfiles`
(bounded, UTF-8, depth- and schema-checked): the types of every field binaryvae uses are
checked (`summary_schema`, `metrics_row_schema`), and a file that fails is refused with a
BadInput naming it (and the line and field).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from binaryvae.config import TrainConfig
from binaryvae.errors import BadInput
from binaryvae.jsonfiles import (
    NUMBER,
    NUMBER_OR_NULL,
    Dynamic,
    Map,
    Required,
    read_json,
    read_jsonl,
)
from binaryvae.storage import append_line, atomic_write_text, json_safe, write_json_atomic

__all__ = [
    "COMPARE_SCHEMA",
    "MARKER_SCHEMA",
    "METRICS_ROW_SCHEMA",
    "REPLICAS_SCHEMA",
    "SUMMARY_SCHEMA",
    "SWEEP_SCHEMA",
    "RunDir",
    "find_runs",
    "is_run_dir",
    "read_compare_listing",
    "read_replicas_listing",
]

_INT_OR_NULL = (int, type(None))
# summary.json: the fields binaryvae reads, by type (numbers may be null: not computed)
_SUMMARY_FIELDS: dict[str, Any] = {
    **dict.fromkeys(
        ("sample_fd", "seconds_per_epoch", "eval_seconds_per_epoch", "summary_seconds",
         "summary_eval_seconds", "fd_classifier_accuracy"), NUMBER_OR_NULL),
    **dict.fromkeys(
        ("epochs", "steps", "iwae_k", "latent_dim", "seed", "threads", "eval_samples", "fd_samples",
         "active_bits", "stuck_bits"), _INT_OR_NULL),
    **dict.fromkeys(("binary_latent", "exact_latent", "has_likelihood", "objective_is_bound"),
                    bool),
    **dict.fromkeys(("objective_label", "dataset_label", "family", "objective", "dataset",
                     "device"), str),
    "labels": Map(str),
}  # fmt: skip
_GRADIENT_RECORD = {
    "step": Required(int),
    **dict.fromkeys(
        (
            "grad_var",
            "grad_bias_ratio",
            "grad_bias_noise",
            "grad_exact_norm",
            "grad_bias_sq_ratio",
            "grad_bias_z",
            "grad_bias_debiased",
            "grad_noise_dims",
        ),
        NUMBER_OR_NULL,
    ),
}
_METRICS_FIELDS: dict[str, Any] = {
    "epoch": Required(int),
    "step": int,  # optimizer steps of the run at the row (rows of runs before 0.4 have none)
    "epoch_batches": int,  # only in a row written before its epoch's end
    "train_seconds": Required(NUMBER),  # summed into summary.json by training
    "eval_seconds": Required(NUMBER),
    "kl_weight": NUMBER_OR_NULL,
    "objective_label": str,
    "gradient": [_GRADIENT_RECORD],
}


def _numbers(prefixes: tuple[str, ...], fields: dict[str, Any]):
    """``value -> schema``: ``fields``, and every other key of ``value`` starting with one of
    ``prefixes`` a number or null."""
    return lambda value: {
        **{k: NUMBER_OR_NULL for k in value if k.startswith(prefixes)},
        **fields,
    }


# summary.json: an object; every metric (test_*, recon_loss_r*, sample FD, timings) a number or
# null, counts integers, labels strings, facts true/false (binaryvae.jsonfiles.check_schema)
SUMMARY_SCHEMA = Dynamic(dict, _numbers(("test_", "recon_loss_r"), _SUMMARY_FIELDS))
# one metrics.jsonl row: an object with an integer epoch; every test_* / train_* / track_*
# value a number or null, timings numbers, gradient records objects with numbers
METRICS_ROW_SCHEMA = Dynamic(dict, _numbers(("test_", "train_", "track_"), _METRICS_FIELDS))
# the files of group directories, as far as binaryvae reads them
COMPARE_SCHEMA = {
    "runs": [str],
    "families": Required([str]),
    "seeds": ([int], type(None)),
    "base": Required(dict),
    "trained_on": Map(str),
}
REPLICAS_SCHEMA = {"seeds": Required([int]), "config": Required(dict)}
SWEEP_SCHEMA = {
    "kind": str,
    "grid": Required({
        key: Required(list) for key in ("datasets", "families", "latent_dims", "seeds")
    } | {"fixed": Required(dict)}),
    "cells": Required([{"name": Required(str), "layout": str, "runs": dict}]),
}  # fmt: skip
MARKER_SCHEMA = {"binaryvae": str, "format": int, "kind": str}  # .binaryvae-run


def _read_listing(path: Path, name: str, schema) -> dict[str, Any]:
    """``path/name`` read through `binaryvae.jsonfiles` against ``schema``; BadInput naming the
    file and what is wrong (missing, unreadable, a missing or mistyped field)."""
    listing = path / name
    if not os.path.lexists(listing):
        raise BadInput(f"{path}: no {name} there")
    return dict(read_json(listing, schema))


def read_compare_listing(path: str | Path) -> dict[str, Any]:
    """compare.json of the compare directory ``path``: ``runs`` (sub-directory names, in order),
    ``families`` (their family:objective specs), ``base`` (the shared TrainConfig as a dict),
    ``trained_on`` and, for replica groups, ``seeds``. BadInput if missing or malformed."""
    return _read_listing(Path(path), "compare.json", COMPARE_SCHEMA)


def read_replicas_listing(path: str | Path) -> dict[str, Any]:
    """replicas.json of the replica group ``path``: ``seeds`` (ints) and ``config`` (the
    TrainConfig of the first seed, as a dict). BadInput if missing or malformed."""
    return _read_listing(Path(path), "replicas.json", REPLICAS_SCHEMA)


def is_run_dir(path: str | Path) -> bool:
    """True when ``path`` holds a config.json (of any kind: reading it says what is wrong)."""
    return os.path.lexists(Path(path) / "config.json")


def find_runs(path: str | Path) -> list[Path]:
    """The run directories at ``path``: itself if it is one, else its sub-directories that are."""
    path = Path(path)
    if is_run_dir(path):
        return [path]
    if not path.is_dir():
        return []
    return sorted(p for p in path.iterdir() if p.is_dir() and is_run_dir(p))


class RunDir:
    """Paths and file IO of one run directory (no training, no maths)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    config_path = property(lambda self: self.path / "config.json")
    metrics_path = property(lambda self: self.path / "metrics.jsonl")
    summary_path = property(lambda self: self.path / "summary.json")
    checkpoint_path = property(lambda self: self.path / "checkpoints" / "last.pt")

    @property
    def name(self) -> str:
        return self.path.name

    # config
    def write_config(self, config: TrainConfig) -> None:
        write_json_atomic(self.config_path, config.to_dict())

    def read_config(self) -> TrainConfig:
        return TrainConfig.load(self.config_path)

    # metrics: one JSON object per line, appended and flushed after every epoch
    def append_metrics(self, row: dict[str, Any]) -> None:
        append_line(self.metrics_path, json.dumps(json_safe(row), sort_keys=True))

    def read_metrics(self) -> list[dict[str, Any]]:
        """The per-epoch rows (none when there is no metrics.jsonl); a torn last line (killed
        while writing) is skipped. BadInput naming the file, line and field for any other line
        that is not a row (`METRICS_ROW_SCHEMA`; `binaryvae.jsonfiles.read_jsonl`)."""
        if not self.metrics_path.exists() and not self.metrics_path.is_symlink():
            return []
        return read_jsonl(self.metrics_path, METRICS_ROW_SCHEMA)

    def keep_metrics_through(self, epoch: int, step: int | None = None) -> list[dict[str, Any]]:
        """Rewrite metrics.jsonl with the rows of epochs 1..``epoch`` only (resume); given
        ``step``, of steps 1..``step`` too (rows written before rows had a step: by epoch)."""
        rows = [
            r
            for r in self.read_metrics()
            if r["epoch"] <= epoch and (step is None or r.get("step", 0) <= step)
        ]
        atomic_write_text(
            self.metrics_path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
        )
        return rows

    # summary
    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json_atomic(self.summary_path, summary)

    def read_summary(self) -> dict[str, Any]:
        """summary.json (``{}`` when there is none); BadInput naming the file and the field when
        it is not an object whose fields have their types (`SUMMARY_SCHEMA`)."""
        if not self.summary_path.exists() and not self.summary_path.is_symlink():
            return {}
        return read_json(self.summary_path, SUMMARY_SCHEMA)
