"""The run directory on disk: config.json, metrics.jsonl, checkpoints/, summary.json, figures/.

Layout (contract in docs/internals.md)::

    RUN/
      config.json          TrainConfig; `binaryvae train --config RUN/config.json` re-runs it
      metrics.jsonl        one JSON object per completed epoch
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
metrics.jsonl), so readers need no lock.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from binaryvae.config import TrainConfig
from binaryvae.errors import BadInput
from binaryvae.storage import append_line, atomic_write_text, json_safe, write_json_atomic

__all__ = ["RunDir", "find_runs", "is_run_dir", "read_compare_listing", "read_replicas_listing"]


def _read_listing(path: Path, name: str, fields: dict[str, type]) -> dict[str, Any]:
    """``path/name`` as a dict with ``fields`` of the given types; BadInput naming the file and
    what is wrong (missing, unreadable JSON, a missing or mistyped field)."""
    listing = path / name
    try:
        data = json.loads(listing.read_text())
    except FileNotFoundError:
        raise BadInput(f"{path}: no {name} there") from None
    except (OSError, ValueError) as e:
        raise BadInput(f"{listing}: unreadable ({e})") from None
    if not isinstance(data, dict):
        raise BadInput(f"{listing}: not a JSON object")
    for field, kind in fields.items():
        if not isinstance(data.get(field), kind):
            raise BadInput(f"{listing}: field {field!r} is missing or not a {kind.__name__}")
    return data


def read_compare_listing(path: str | Path) -> dict[str, Any]:
    """compare.json of the compare directory ``path``: ``runs`` (sub-directory names, in order),
    ``families`` (their family:objective specs), ``base`` (the shared TrainConfig as a dict),
    ``trained_on`` and, for replica groups, ``seeds``. BadInput if missing or malformed."""
    data = _read_listing(Path(path), "compare.json", {"runs": list, "families": list, "base": dict})
    if data.get("seeds") is not None and not isinstance(data["seeds"], list):
        raise BadInput(f"{Path(path) / 'compare.json'}: field 'seeds' is not a list")
    return data


def read_replicas_listing(path: str | Path) -> dict[str, Any]:
    """replicas.json of the replica group ``path``: ``seeds`` (ints) and ``config`` (the
    TrainConfig of the first seed, as a dict). BadInput if missing or malformed."""
    data = _read_listing(Path(path), "replicas.json", {"seeds": list, "config": dict})
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in data["seeds"]):
        raise BadInput(f"{Path(path) / 'replicas.json'}: field 'seeds' holds a non-integer")
    return data


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / "config.json").is_file()


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
        """The per-epoch rows; a torn last line (killed while writing) is skipped."""
        if not self.metrics_path.exists():
            return []
        rows = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "epoch" in row:
                rows.append(row)
        return rows

    def keep_metrics_through(self, epoch: int) -> list[dict[str, Any]]:
        """Rewrite metrics.jsonl with the rows of epochs 1..``epoch`` only (resume)."""
        rows = [r for r in self.read_metrics() if r["epoch"] <= epoch]
        atomic_write_text(
            self.metrics_path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
        )
        return rows

    # summary
    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json_atomic(self.summary_path, summary)

    def read_summary(self) -> dict[str, Any]:
        if not self.summary_path.exists():
            return {}
        try:
            return json.loads(self.summary_path.read_text())
        except json.JSONDecodeError:
            return {}
