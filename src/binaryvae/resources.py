"""Memory a run will need, estimated before anything is allocated, against what the machine has.

`available_memory` reads what this process may still allocate: ``MemAvailable`` of
/proc/meminfo and, where a cgroup limits the process, that limit less what the cgroup already
uses (the lower of the two); `os.sysconf` where neither exists. `estimate` adds up what a
training run holds at once -- its model, optimizer and one batch of activations, its dataset --
from counts alone: `binaryvae.runs.build.estimate_run` takes them from the configuration and the
dataset's geometry, the parameter count from building the model on PyTorch's ``meta`` device
(`binaryvae.models.size.count_model`: shapes only, no storage), so a configuration of terabytes
is counted in milliseconds and refused by `check_memory` (BadInput, one line with the estimate
and the available memory) before a byte of it exists. This module imports only the standard
library and `binaryvae.errors` (torch only to ask a GPU), so every layer may use it.

What the estimate counts, in the element size of the parameters (float32):

- **model**: every parameter ``COPIES`` times per replica -- the weights, their gradients and
  Adam's two moments -- and, for a replica group, ``STACKED_EXTRA`` more (each replica's plain
  model and its unstacked Adam moments beside the stacked ones, `binaryvae.runs.train`), plus
  ``SAVE_COPIES`` for the checkpoint being serialised (weights and moments of one replica);
  buffers once per replica (twice when stacked);
- **activations**: one batch (the larger of the training batch and the evaluation batch) times
  the summed output widths of every layer, times ``ACTIVATION_COPIES`` (each layer's
  pre-activation and activation and the gradient of each), per replica;
- **data**: the images as stored (uint8: one byte per pixel; real data float32) of both splits,
  plus the test split in float32 once per replica (`binaryvae.runs.build.test_data`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from binaryvae.errors import BadInput

__all__ = [
    "ACTIVATION_COPIES",
    "COPIES",
    "MemoryEstimate",
    "SAVE_COPIES",
    "STACKED_EXTRA",
    "available_memory",
    "check_memory",
    "data_bytes",
    "estimate",
    "format_bytes",
]

COPIES = 4  # weights, gradients, Adam's exp_avg and exp_avg_sq
STACKED_EXTRA = 3  # a replica group also keeps each plain model and its unstacked moments
SAVE_COPIES = 3  # a checkpoint serialises one replica's weights and both moments
ACTIVATION_COPIES = 4  # per layer: pre-activation, activation, and the gradient of each

_MEMINFO = Path("/proc/meminfo")
_CGROUP_ROOT = Path("/sys/fs/cgroup")


def format_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``; binary units up to PiB."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} PiB"


# ----------------------------------------------------------------------------- the machine
def _meminfo_available(path: Path | None = None) -> int | None:
    """``MemAvailable`` of /proc/meminfo in bytes (None where the file or the line is absent)."""
    path = _MEMINFO if path is None else path
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            parts = line.split()
            try:
                return int(parts[1]) * (1024 if parts[-1].lower() == "kb" else 1)
            except (IndexError, ValueError):
                return None
    return None


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    try:
        return int(text)
    except ValueError:
        return None  # "max": no limit


def _cgroup_dirs(root: Path) -> list[Path]:
    """This process's cgroup v2 folder (from /proc/self/cgroup) and the root, where they exist."""
    dirs = []
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                rel = line[3:].strip().lstrip("/")
                if rel:
                    dirs.append(root / rel)
    except OSError:
        pass
    dirs.append(root)
    return dirs


def _cgroup_available(root: Path | None = None) -> int | None:
    """What the memory cgroup of this process still allows (limit less usage), or None when no
    cgroup limits it. cgroup v2 (memory.max, memory.current) first, then v1."""
    root = _CGROUP_ROOT if root is None else root
    for folder in _cgroup_dirs(root):
        limit = _read_int(folder / "memory.max")
        if limit is not None:
            used = _read_int(folder / "memory.current") or 0
            return max(0, limit - used)
    v1 = root / "memory"
    limit = _read_int(v1 / "memory.limit_in_bytes")
    if limit is not None and limit < 1 << 60:  # v1 says "no limit" with a huge number
        used = _read_int(v1 / "memory.usage_in_bytes") or 0
        return max(0, limit - used)
    return None


def _sysconf_available() -> int | None:
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return None


def available_memory() -> tuple[int, str] | None:
    """``(bytes this process may still allocate, where that number comes from)``: the lower of
    /proc/meminfo's MemAvailable and the memory cgroup's limit less its usage; free physical
    pages (`os.sysconf`) where neither can be read; None when nothing can (no check then)."""
    found = []
    meminfo = _meminfo_available()
    if meminfo is not None:
        found.append((meminfo, "MemAvailable"))
    cgroup = _cgroup_available()
    if cgroup is not None:
        found.append((cgroup, "the memory cgroup's limit less its usage"))
    if not found:
        pages = _sysconf_available()
        if pages is not None:
            found.append((pages, "free physical pages"))
    return min(found) if found else None


def _device_available(device: Any) -> tuple[int, str] | None:
    """Free memory of a CUDA device (torch.cuda.mem_get_info); host memory for anything else."""
    if getattr(device, "type", str(device)) == "cuda":
        import torch

        try:
            free, _ = torch.cuda.mem_get_info(device)
        except (RuntimeError, AssertionError):
            return None
        return int(free), f"free memory of {device}"
    return available_memory()


# ----------------------------------------------------------------------------- the estimate
@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a run needs: model (parameters, buffers, optimizer, checkpoint), activations, data."""

    parameters: int  # of one model
    buffers: int  # of one model
    replicas: int
    model_bytes: int
    activation_bytes: int
    data_bytes: int
    test_float_bytes: int = 0  # the part of data_bytes that lives on the run's device

    @property
    def total(self) -> int:
        return self.model_bytes + self.activation_bytes + self.data_bytes

    def describe(self) -> str:
        """One clause: what the total is made of."""
        group = f" x {self.replicas} replicas" if self.replicas > 1 else ""
        return (
            f"model {self.parameters:,} parameters{group}: {format_bytes(self.model_bytes)} with "
            f"gradients and Adam's moments; activations {format_bytes(self.activation_bytes)}; "
            f"data {format_bytes(self.data_bytes)}"
        )


def data_bytes(sizes: tuple[int, int], data_dim: int, data_kind: str, replicas: int = 1) -> int:
    """Bytes of a dataset of ``sizes = (train, test)`` examples of ``data_dim`` values as
    stored (uint8 images, float32 real data), plus its test split in float32 per replica."""
    stored = 1 if data_kind == "image" else 4
    train, test = sizes
    return (train + test) * data_dim * stored + replicas * test * data_dim * 4


def estimate(
    *,
    parameters: int,
    buffers: int,
    widths: int,
    rows: int,
    replicas: int = 1,
    element: int = 4,
    data_dim: int = 0,
    data_kind: str = "image",
    sizes: tuple[int, int] | None = None,
) -> MemoryEstimate:
    """The memory of a run (module docstring) from its model's counts -- ``parameters`` and
    ``buffers`` of one model, the summed output ``widths`` of its layers, ``element`` bytes
    each -- for ``rows`` examples per batch and ``replicas`` stacked seeds, plus a dataset of
    ``sizes`` (train, test) examples of ``data_dim`` values (None: no data counted).
    `binaryvae.runs.build.estimate_run` counts a configuration's model and calls this."""
    stacked = replicas > 1
    copies = replicas * (COPIES + (STACKED_EXTRA if stacked else 0)) + SAVE_COPIES
    model = element * (parameters * copies + buffers * replicas * (2 if stacked else 1))
    activations = element * rows * widths * ACTIVATION_COPIES * replicas
    data = data_bytes(sizes, data_dim, data_kind, replicas) if sizes is not None else 0
    test_float = replicas * sizes[1] * data_dim * 4 if sizes is not None else 0
    return MemoryEstimate(parameters, buffers, replicas, model, activations, data, test_float)


def check_memory(need: int, what: str, detail: str = "", device: Any = None) -> None:
    """BadInput when ``need`` bytes exceed the memory available (of ``device`` when it is a
    CUDA device, else this machine's): one line with the estimate, what it is made of, and the
    available memory. Nothing is checked where the available memory cannot be read."""
    available = _device_available(device)
    if available is None:
        return
    have, source = available
    if need > have:
        detail = f" ({detail})" if detail else ""
        raise BadInput(
            f"{what} needs about {format_bytes(need)}{detail}, but only {format_bytes(have)} "
            f"{'is' if have == 1 else 'are'} available ({source})"
        )
