"""Checkpoints that cannot run code: plain tensors, numbers, strings, lists and dicts only.

A checkpoint is read with ``torch.load(..., weights_only=True)``, PyTorch's restricted unpickler,
which rebuilds tensors and plain containers and refuses every other object: a file crafted to
run code when unpickled (a colleague's ``last.pt``, a download next to a paper) is refused before
anything in it executes. Everything `--resume` needs is stored in those types:

- ``format`` (int): `FORMAT`; a newer format is refused with a message saying so;
- ``epoch`` (int): completed epochs;
- ``model``: the model's ``state_dict``; ``optimizer``: the optimizer's ``state_dict`` or None;
- ``rng``: the global random states -- torch's (a uint8 tensor; CUDA's, one per device), numpy's
  legacy MT19937 state as a dict of an int64 key tensor and numbers, Python's ``random`` state as
  ``[version, [625 ints], gauss_next]``;
- ``extra``: a dict of plain values (e.g. ``{"finalized": True}``).

Writes are atomic (`binaryvae.storage.atomic_write_bytes`): the payload is serialised in memory
first, so a full disk surfaces as an `OSError` (a one-line `StorageError`), never as a torn file
or a C++ writer failure, and the previous checkpoint stays intact.
"""

from __future__ import annotations

import io
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from binaryvae.errors import BadInput
from binaryvae.storage import atomic_write_bytes

__all__ = [
    "FORMAT",
    "CheckpointError",
    "load_checkpoint",
    "load_state",
    "restore_rng_state",
    "rng_state",
    "save_checkpoint",
]

# 1: the first release (pickled numpy/Python objects, loaded with weights_only=False: unsafe)
# 2: plain types only, loaded with weights_only=True
FORMAT = 2


class CheckpointError(BadInput):
    """A file that is not a checkpoint this binaryvae can read (one line naming the file)."""


def _numpy_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "kind": str(kind),
        "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),  # [624] uint32 values
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }


def _python_state() -> list[Any]:
    version, internal, gauss_next = random.getstate()
    return [int(version), [int(v) for v in internal], gauss_next]


def rng_state() -> dict[str, Any]:
    """The global random states of torch (CPU and CUDA), numpy and Python, as plain types."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": _numpy_state(),
        "python": _python_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of `rng_state` (CUDA states are restored only where CUDA is present)."""
    torch.set_rng_state(state["torch"])
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state(
        (npy["kind"], keys, int(npy["pos"]), int(npy["has_gauss"]), float(npy["cached_gaussian"]))
    )
    version, internal, gauss_next = state["python"]
    random.setstate((int(version), tuple(int(v) for v in internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    path: str | Path,
    *,
    model: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    epoch: int,
    extra: dict[str, Any] | None = None,
    model_state: dict[str, torch.Tensor] | None = None,
    optimizer_state: dict[str, Any] | None = None,
) -> None:
    """Write ``{format, epoch, model, optimizer, rng, extra}`` to ``path`` atomically.

    Give either the modules (``model``, ``optimizer``) or their state dicts (``model_state``,
    ``optimizer_state``; the replica trainer writes one replica's slice of a stacked model this
    way). ``epoch`` counts completed epochs. Raises `binaryvae.storage.StorageError` (the old
    checkpoint intact) when the file system refuses the write.
    """
    if model_state is None:
        if model is None:
            raise TypeError("save_checkpoint needs model or model_state")
        model_state = model.state_dict()
    if optimizer_state is None and optimizer is not None:
        optimizer_state = optimizer.state_dict()
    payload = {
        "format": FORMAT,
        "epoch": int(epoch),
        "model": model_state,
        "optimizer": optimizer_state,
        "rng": rng_state(),
        "extra": dict(extra or {}),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


# what a refused file looks like to torch.load: the restricted unpickler's refusal, a torn or
# foreign zip archive, a non-zip file read as a legacy pickle
_UNREADABLE = (
    pickle.UnpicklingError,
    EOFError,
    RuntimeError,
    ValueError,
    KeyError,
    AttributeError,
    TypeError,
    IndexError,
    ImportError,
    zipfile.BadZipFile,
    UnicodeDecodeError,
    OverflowError,
    MemoryError,
)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:160]


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` (tensors mapped to ``map_location``).

    Raises `CheckpointError` naming the file for anything else: a missing, empty, truncated or
    random file, a pickle that would build other objects than tensors and plain containers
    (refused by ``weights_only=True`` before any of it runs), a format-1 checkpoint, or one
    written by a newer binaryvae.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except OSError as e:
        raise CheckpointError(f"{path}: unreadable: {e.strerror or e}") from None
    except _UNREADABLE as e:
        raise CheckpointError(
            f"{path} is not a binaryvae checkpoint (format {FORMAT}) or holds objects other "
            f"than tensors and plain values, refused unread ({_short(e)})"
        ) from None
    _check_payload(path, payload)
    return payload


def _check_payload(path: Path, payload: Any) -> None:
    if not isinstance(payload, dict) or not isinstance(payload.get("format"), int):
        raise CheckpointError(f"{path} is not a binaryvae checkpoint (no format number)")
    fmt = payload["format"]
    if fmt > FORMAT:
        raise CheckpointError(
            f"{path} was written by a newer binaryvae (checkpoint format {fmt}; this version "
            f"reads format {FORMAT}): upgrade binaryvae to read it"
        )
    if fmt < FORMAT:
        raise CheckpointError(
            f"{path} is an old checkpoint (format {fmt}) that could only be read unsafely; "
            "retrain the run with this version"
        )
    problems = []
    if not isinstance(payload.get("epoch"), int) or payload["epoch"] < 0:
        problems.append("epoch")
    model = payload.get("model")
    if not isinstance(model, dict) or not all(isinstance(v, torch.Tensor) for v in model.values()):
        problems.append("model state")
    if not isinstance(payload.get("optimizer"), dict | None):
        problems.append("optimizer state")
    if not isinstance(payload.get("extra", {}), dict):
        problems.append("extra")
    if problems:
        raise CheckpointError(
            f"{path} is not a binaryvae checkpoint: bad or missing {', '.join(problems)}"
        )


def load_state(target: Any, state: dict[str, Any], path: str | Path) -> None:
    """``target.load_state_dict(state)`` (a module or an optimizer); `CheckpointError` naming
    ``path`` when the state does not fit (a checkpoint of another configuration)."""
    try:
        target.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError) as e:
        raise CheckpointError(
            f"{path} does not fit this run's model ({_short(e)}); is it another run's checkpoint?"
        ) from None
