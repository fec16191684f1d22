"""The run directory on disk: config.json, metrics.jsonl, checkpoints/, summary.json, figures/.

Layout (contract in docs/internals.md)::

    RUN/
      config.json          TrainConfig; `binaryvae train --config RUN/config.json` re-runs it
      metrics.jsonl        one JSON object per completed epoch
      checkpoints/last.pt  model + optimizer + RNG states + epoch, replaced atomically
      summary.json         final numbers and the labels saying what each one bounds
      figures/*.png, report.html, report.md   written by binaryvae.report

A compare directory holds one run directory per model plus its own figures and report.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from binaryvae.config import TrainConfig
from binaryvae.errors import BadInput

__all__ = [
    "RunDir",
    "check_new_dir",
    "find_runs",
    "is_run_dir",
    "make_new_dir",
    "write_json_atomic",
]


def _file_mode() -> int:
    """The mode open() would give a new file (0666 minus the umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _clean(value: Any) -> Any:
    """JSON-safe copy: tensors/numpy scalars to Python numbers, NaN/inf to None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0 and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON via a temporary file and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(_clean(data), f, indent=2, sort_keys=True)
            f.write("\n")
        os.chmod(tmp, _file_mode())  # mkstemp creates 0600; use the umask like open() does
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def check_new_dir(path: str | Path, force: bool) -> None:
    """Raise BadInput unless ``path`` may become a new run/compare directory.

    A path that does not exist, or an empty directory, is fine. An existing non-empty directory
    needs ``force``, and even then only one that binaryvae wrote (a run or compare directory) is
    deleted: ``--force`` never removes someone's unrelated folder.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise BadInput(f"output path {path} exists and is not a directory")
    if not path.exists() or not any(path.iterdir()):
        return
    if not force:
        raise BadInput(
            f"output directory {path} already exists; use --force to overwrite it"
            " or --resume to continue it"
        )
    if not find_runs(path):
        raise BadInput(
            f"refusing to overwrite {path}: it is not a binaryvae run or compare directory"
        )


def make_new_dir(path: str | Path, force: bool) -> Path:
    """Create ``path`` (after `check_new_dir`); with ``force`` an old run directory is removed."""
    path = Path(path)
    check_new_dir(path, force)
    if path.exists() and any(path.iterdir()):
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


class RunDir:
    """Paths and file IO of one run directory (no training, no maths)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    config_path = property(lambda self: self.path / "config.json")
    metrics_path = property(lambda self: self.path / "metrics.jsonl")
    summary_path = property(lambda self: self.path / "summary.json")
    checkpoint_path = property(lambda self: self.path / "checkpoints" / "last.pt")
    figures_dir = property(lambda self: self.path / "figures")

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
        line = json.dumps(_clean(row), sort_keys=True)
        with open(self.metrics_path, "a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

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
        fd, tmp = tempfile.mkstemp(prefix="metrics.", suffix=".tmp", dir=self.path)
        with os.fdopen(fd, "w") as f:
            for r in rows:
                f.write(json.dumps(r, sort_keys=True) + "\n")
        os.chmod(tmp, _file_mode())
        os.replace(tmp, self.metrics_path)
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
