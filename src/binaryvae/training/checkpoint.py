"""Checkpoints that cannot run code: plain tensors, numbers, strings, lists and dicts only.

A checkpoint is read with ``torch.load(..., weights_only=True)``, PyTorch's restricted unpickler,
which rebuilds tensors and plain containers and refuses every other object: a file crafted to
run code when unpickled (a colleague's ``last.pt``, a download next to a paper) is refused before
anything in it executes. Everything `--resume` needs is stored in those types:

- ``format`` (int): `FORMAT`; a newer format is refused with a message saying so, an older one
  (format 1: unsafe pickles; format 2: no run identity) with one saying to retrain;
- ``epoch`` (int): completed epochs;
- ``identity``: the run's ``{"family", "seed", "fingerprint"}`` (`checkpoint_identity`), or None
  for a checkpoint written outside a run (the benchmarks' own);
- ``model``: the model's ``state_dict``; ``optimizer``: the optimizer's ``state_dict`` or None;
- ``rng``: the global random states -- torch's (a uint8 tensor; CUDA's, one per device), numpy's
  legacy MT19937 state as a dict of an int64 key tensor and numbers, Python's ``random`` state as
  ``[version, [625 ints], gauss_next]``;
- ``extra``: the run's position and state, each key typed and checked (`_check_extra`):
  ``finalized`` (bool: autoencoder-gmm's mixture fitted after training), ``step`` (int:
  optimizer steps of the run), and for a checkpoint written inside an epoch (a step budget's
  cut, an ``eval_every_steps`` row) ``epoch_batches`` (int >= 1: batches of epoch ``epoch`` + 1
  trained), ``generator`` (the epoch's training generator state, a uint8 tensor of the size a
  generator on the run's device has), ``torch_rng`` (torch's global CPU RNG state, likewise),
  ``epoch_sums`` (4 finite floats: the epoch's loss, ELBO, reconstruction and KL summed over
  its images so far), ``epoch_images`` (int >= 0) and ``epoch_seconds`` (a finite float >= 0).
  A generator state is also loaded into a fresh generator before the checkpoint is accepted.
  A run that tracks bit flips (``TrainConfig.track`` holds "flips") also stores
  ``track_logits`` (float32 [M, n]: the bit logits of its M tracked test images at the row the
  checkpoint follows; 1 <= M <= ``track_images``, no NaN) and, at a row that only the end of a
  step budget makes (dropped when a resume extends the budget), ``track_logits_before`` (the
  same at the row before it, where there is one): the next row's flips are counted against
  them, so a resumed run writes the rows of an uninterrupted one.

A run's checkpoint is read against a `CheckpointSchema` derived from the model and the optimizer
that the run's config.json builds (`checkpoint_schema`), and nothing in it is used before all of
it is checked (`load_checkpoint` with ``schema``):

- the file is read once, into memory, bounded: its zip directory's declared sizes (summed) and
  its number of entries are compared with what the config's model can need before anything is
  decompressed, and the entries are copied into a fresh archive (so torch's own zip reader sees
  exactly the sizes checked here; a deflated record that inflates past its declared size is
  refused by the copy);
- identity: family, seed and configuration fingerprint equal config.json's;
- model state: the exact key set, every tensor's shape and dtype, all values finite;
- optimizer state: the param_groups (count, ``params`` ids), the optimizer's keys per
  parameter (Adam's ``step``, ``exp_avg``, ``exp_avg_sq``; SGD's ``momentum_buffer``), each
  moment's shape, dtype and finiteness (``exp_avg_sq`` >= 0), ``step`` a finite count >= 0; the
  hyperparameters the config sets (lr, betas, eps, weight_decay, amsgrad, maximize; SGD's
  momentum, dampening, nesterov) must equal the freshly built optimizer's (a hand-edited lr is
  refused, naming it) -- the lr as the config's decay has it at the checkpoint's position
  (``lr_decay_epoch``: the lr of the epoch the checkpoint ends or is inside), and every other
  param_group entry (fused, foreach, capturable, ...) is replaced by the fresh optimizer's, so
  nothing of the checkpoint's decides which native kernel runs; the moments are copied into
  fresh contiguous tensors (no aliasing or odd strides reach the fused kernel).

Every refusal is a `CheckpointError` (a BadInput: exit 2, one line naming the file and what is
wrong), raised before any tensor of the file reaches a model or an optimizer.

Writes are atomic (`binaryvae.storage.atomic_write_bytes`): the payload is serialised in memory
first, so a full disk surfaces as an `OSError` (a one-line `StorageError`), never as a torn file
or a C++ writer failure, and the previous checkpoint stays intact.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import math
import os
import pickle
import random
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from binaryvae.config import INTERVENTION_DEFAULTS, RECORDED_FIELDS, RESUMABLE_FIELDS
from binaryvae.errors import BadInput
from binaryvae.storage import atomic_write_bytes

__all__ = [
    "FORMAT",
    "CheckpointError",
    "CheckpointSchema",
    "checkpoint_identity",
    "checkpoint_schema",
    "config_fingerprint",
    "load_checkpoint",
    "load_state",
    "restore_rng_state",
    "rng_state",
    "save_checkpoint",
]

# 1: the first release (pickled numpy/Python objects, loaded with weights_only=False: unsafe)
# 2: plain types only, loaded with weights_only=True
# 3: + ``identity`` (family, seed, configuration fingerprint), checked against config.json
FORMAT = 3


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


def config_fingerprint(config: Any) -> str:
    """sha256 (hex) of the canonical JSON of the fields of ``config`` (a `TrainConfig`) that
    change the model or its training: every field but `binaryvae.config.RESUMABLE_FIELDS`
    (which ``--resume`` may change without changing what the checkpoint holds) and
    `binaryvae.config.RECORDED_FIELDS` (what training found about the data: their fingerprint
    is checked on its own, and the same data may move)."""
    skip = (*RESUMABLE_FIELDS, *RECORDED_FIELDS)
    fields = {k: v for k, v in config.to_dict().items() if k not in skip}
    if fields.get("eval_every_steps") is None:  # a later field: older checkpoints still match
        fields.pop("eval_every_steps", None)
    if not fields.get("track"):  # later fields (issue 27), likewise where left at the default
        fields.pop("track", None)
        if fields.get("track_images") == 1000:
            fields.pop("track_images", None)
    for name, default in INTERVENTION_DEFAULTS.items():  # later fields, likewise at defaults
        if name in fields and fields[name] == default and type(fields[name]) is type(default):
            fields.pop(name)
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def checkpoint_identity(config: Any) -> dict[str, Any]:
    """What a run's checkpoint records of the run that wrote it: family, seed, fingerprint."""
    return {
        "family": str(config.family),
        "seed": int(config.seed),
        "fingerprint": config_fingerprint(config),
    }


def save_checkpoint(
    path: str | Path,
    *,
    model: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    epoch: int,
    extra: dict[str, Any] | None = None,
    model_state: dict[str, torch.Tensor] | None = None,
    optimizer_state: dict[str, Any] | None = None,
    config: Any = None,
) -> None:
    """Write ``{format, epoch, identity, model, optimizer, rng, extra}`` to ``path`` atomically.

    Give either the modules (``model``, ``optimizer``) or their state dicts (``model_state``,
    ``optimizer_state``; the replica trainer writes one replica's slice of a stacked model this
    way). ``epoch`` counts completed epochs. ``config``: the run's `TrainConfig`, recorded as
    the checkpoint's identity (`checkpoint_identity`; every run passes it, and a run's
    checkpoint without one is refused on load). Raises `binaryvae.storage.StorageError` (the
    old checkpoint intact) when the file system refuses the write.
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
        "identity": checkpoint_identity(config) if config is not None else None,
        "model": model_state,
        "optimizer": optimizer_state,
        "rng": rng_state(),
        "extra": dict(extra or {}),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


# ----------------------------------------------------------------------------- the schema
# Adam's state per parameter (torch.optim.Adam, amsgrad adds max_exp_avg_sq); the moments have
# the parameter's shape and dtype, ``step`` is a 0-dim float count. SGD with momentum keeps
# one ``momentum_buffer`` per parameter (of any sign); without momentum, nothing.
_ADAM_MOMENTS = ("exp_avg", "exp_avg_sq")
_NON_NEGATIVE = ("exp_avg_sq", "max_exp_avg_sq")
# param_group entries the run's config decides: a checkpoint that disagrees is refused
_HYPERPARAMETERS = ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "momentum",
                    "dampening", "nesterov")  # fmt: skip
_STEP_DTYPES = (torch.float32, torch.float64)
# room for what is not model or optimizer state: RNG states (torch's 5 KB, numpy's 5 KB, Python's
# 625 ints pickled), the pickle of names and numbers, the archive's small records
_MARGIN_BYTES = 1 << 20
_MARGIN_ENTRIES = 16
_ZIP_MAGIC = b"PK\x03\x04"  # torch.load reads anything else as a legacy pickle: refused


@dataclass(frozen=True)
class CheckpointSchema:
    """What a run's checkpoint must hold, derived from the model and the optimizer that the
    run's config builds (`checkpoint_schema`)."""

    model: dict[str, tuple[tuple[int, ...], torch.dtype]]  # state_dict key -> (shape, dtype)
    params: list[tuple[tuple[int, ...], torch.dtype]]  # optimizer param id -> (shape, dtype)
    param_groups: list[dict[str, Any]]  # the fresh optimizer's param_groups (with ``params``)
    state_keys: frozenset[str]  # Adam's state keys per parameter
    identity: dict[str, Any]  # `checkpoint_identity` of the run's config
    max_bytes: int  # the archive's declared (uncompressed) size, at most
    max_entries: int  # the archive's number of records, at most
    source: str = "config.json"  # where the identity comes from, for messages
    device: str = "cpu"  # where the model is: the training generator's device
    # (track_images, latent_dim) of the stored bit logits of a run that tracks flips, else None
    track_logits: tuple[int, int] | None = None
    # the config's one-time lr decay (`binaryvae.training.lr_factor`): the lr a checkpoint
    # must hold depends on its epoch
    lr_decay_epoch: int | None = None
    lr_decay: float | None = None


def _nbytes(shape: tuple[int, ...], dtype: torch.dtype) -> int:
    return math.prod(shape) * torch.empty((), dtype=dtype).element_size()


def checkpoint_schema(config: Any, model: torch.nn.Module, source: str = "config.json"):
    """The `CheckpointSchema` of a run: ``model`` as ``config`` builds it (before loading) and
    the optimizer that `binaryvae.training.make_optimizer` builds over it with ``config.lr``
    (Adam, or SGD: the model carries the config's choice).

    The size bound is twice what the model and Adam's state take (a genuine checkpoint holds
    them once, stored uncompressed) plus 1 MiB for the RNG states and the metadata; the entry
    bound likewise counts the tensors such a checkpoint holds.
    """
    from binaryvae.training.optim import make_optimizer

    optimizer = make_optimizer(model, config.lr)
    fresh = optimizer.state_dict()
    groups = fresh["param_groups"]
    params = [p for g in optimizer.param_groups for p in g["params"]]
    if isinstance(optimizer, torch.optim.Adam):
        state_keys = {"step", *_ADAM_MOMENTS}
        if any(g.get("amsgrad") for g in groups):
            state_keys.add("max_exp_avg_sq")
    elif isinstance(optimizer, torch.optim.SGD):
        state_keys = {"momentum_buffer"} if any(g.get("momentum") for g in groups) else set()
    else:  # pragma: no cover - make_optimizer's
        raise TypeError(f"no checkpoint schema for {type(optimizer).__name__}")
    moments = len(state_keys - {"step"})
    model_specs = {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}
    param_specs = [(tuple(p.shape), p.dtype) for p in params]
    need = sum(_nbytes(*spec) for spec in model_specs.values())
    need += sum(moments * _nbytes(*spec) + 8 for spec in param_specs)
    tensors = len(model_specs) + len(param_specs) * len(state_keys) + 2 + torch.cuda.device_count()
    track = None
    if "flips" in tuple(getattr(config, "track", ())):
        track = (int(config.track_images), int(config.latent_dim))
        need += 2 * _nbytes(track, torch.float32)  # track_logits and track_logits_before
        tensors += 2
    return CheckpointSchema(
        model=model_specs,
        params=param_specs,
        param_groups=copy.deepcopy(groups),
        state_keys=frozenset(state_keys),
        identity=checkpoint_identity(config),
        max_bytes=2 * need + _MARGIN_BYTES,
        max_entries=2 * tensors + 2 + _MARGIN_ENTRIES,  # + the epoch's generator, RNG
        source=source,
        device=str(next(model.parameters()).device),
        track_logits=track,
        lr_decay_epoch=getattr(config, "lr_decay_epoch", None),
        lr_decay=getattr(config, "lr_decay", None),
    )


# ----------------------------------------------------------------------------- loading
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
# what reading a hostile zip archive with zipfile raises (encrypted, unknown compression, a
# record that inflates to more or less than it declares, a broken directory)
_BAD_ZIP = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    NotImplementedError,
    RuntimeError,
    ValueError,
    EOFError,
    OverflowError,
    zlib.error,
    KeyError,
    IndexError,
    UnicodeDecodeError,
)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:160]


def load_checkpoint(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    *,
    schema: CheckpointSchema | None = None,
) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` (tensors mapped to ``map_location``).

    Raises `CheckpointError` naming the file for anything else: a missing, empty, truncated or
    random file, anything but a zip archive of uncompressed records (what torch.save writes),
    a pickle that would build other objects than tensors and plain containers (refused by
    ``weights_only=True`` before any of it runs), a format-1 or format-2 checkpoint, or one
    written by a newer binaryvae.

    ``schema`` (a run's `CheckpointSchema`; every command that loads a run passes one): the
    archive's declared size and entry count are bounded by it before anything is
    decompressed, and the payload must match it (identity, every tensor's key, shape, dtype
    and finiteness, the optimizer's structure and hyperparameters; see the module docstring).
    The returned optimizer state then carries the fresh optimizer's param_groups and freshly
    allocated moments.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    data = _read_archive(path, schema)
    try:
        payload = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except OSError as e:
        raise CheckpointError(f"{path}: unreadable: {e.strerror or e}") from None
    except _UNREADABLE as e:
        raise CheckpointError(
            f"{path} is not a binaryvae checkpoint (format {FORMAT}) or holds objects other "
            f"than tensors and plain values, refused unread ({_short(e)})"
        ) from None
    finally:
        del data
    _check_payload(path, payload)
    if schema is not None:
        _check_schema(path, payload, schema)
    return payload


def _read_archive(path: Path, schema: CheckpointSchema | None) -> bytes:
    """The checkpoint's zip archive, read once and re-packed in memory (uncompressed), after
    its declared sizes passed the bounds: what torch.load reads is exactly what was checked."""
    not_ours = f"{path} is not a binaryvae checkpoint (format {FORMAT})"
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            # torch.save stores records uncompressed: the archive is about as big as its data
            limit = None if schema is None else schema.max_bytes + 1024 * schema.max_entries
            if limit is not None and size > limit:
                raise CheckpointError(
                    f"{path} is {size} bytes, more than the {limit} bytes a checkpoint of this "
                    f"run's model can take ({schema.source}); refused unread"
                )
            raw = f.read() if limit is None else f.read(limit + 1)
    except OSError as e:
        raise CheckpointError(f"{path}: unreadable: {e.strerror or e}") from None
    if limit is not None and len(raw) > limit:  # grew while read
        raise CheckpointError(f"{path} grew past {limit} bytes while being read; refused")
    if not raw.startswith(_ZIP_MAGIC):
        raise CheckpointError(f"{not_ours}: not a zip archive; refused unread")
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            infos = archive.infolist()
            declared = sum(i.file_size for i in infos)
            if schema is not None and len(infos) > schema.max_entries:
                raise CheckpointError(
                    f"{path} holds {len(infos)} records, more than the {schema.max_entries} a "
                    f"checkpoint of this run's model can hold ({schema.source}); refused unread"
                )
            if schema is not None and declared > schema.max_bytes:
                raise CheckpointError(
                    f"{path} declares {declared} bytes of data, more than the "
                    f"{schema.max_bytes} bytes a checkpoint of this run's model can need "
                    f"({schema.source}); refused unread"
                )
            if declared > len(raw):
                raise CheckpointError(
                    f"{path} declares {declared} bytes of data in a {len(raw)}-byte file "
                    "(binaryvae writes checkpoints uncompressed); refused unread"
                )
            names = [i.filename for i in infos]
            if len(set(names)) != len(names):
                raise CheckpointError(f"{not_ours}: a record name appears twice; refused unread")
            out = io.BytesIO()
            with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as copy_:
                for info in infos:
                    copy_.writestr(info.filename, archive.read(info))
    except CheckpointError:
        raise
    except _BAD_ZIP as e:
        raise CheckpointError(f"{not_ours}: a broken zip archive ({_short(e)})") from None
    return out.getvalue()


def _check_payload(path: Path, payload: Any) -> None:
    if not isinstance(payload, dict) or not isinstance(payload.get("format"), int):
        raise CheckpointError(f"{path} is not a binaryvae checkpoint (no format number)")
    fmt = payload["format"]
    if fmt > FORMAT:
        raise CheckpointError(
            f"{path} was written by a newer binaryvae (checkpoint format {fmt}; this version "
            f"reads format {FORMAT}): upgrade binaryvae to read it"
        )
    if fmt < 2:
        raise CheckpointError(
            f"{path} is an old checkpoint (format {fmt}) that could only be read unsafely; "
            "retrain the run with this version"
        )
    if fmt < FORMAT:
        raise CheckpointError(
            f"{path} was written by an older binaryvae (checkpoint format {fmt}, without the "
            f"run identity that format {FORMAT} records and checks); retrain the run with this "
            "version"
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
    if not isinstance(payload.get("identity"), dict | None):
        problems.append("identity")
    if problems:
        raise CheckpointError(
            f"{path} is not a binaryvae checkpoint: bad or missing {', '.join(problems)}"
        )


def _check_schema(path: Path, payload: dict[str, Any], schema: CheckpointSchema) -> None:
    _check_identity(path, payload.get("identity"), schema)
    _check_tensors(path, "model", payload["model"], schema.model)
    if payload["optimizer"] is not None:
        payload["optimizer"] = _checked_optimizer(
            path, payload["optimizer"], schema, _lr_factor_at(payload, schema)
        )
    _check_rng(path, payload.get("rng"))
    _check_extra(path, payload.get("extra", {}), schema)


# the position inside an epoch: all of these or none (with ``epoch_batches``)
_INSIDE = ("epoch_batches", "generator", "torch_rng", "epoch_sums", "epoch_images", "epoch_seconds")


def _is_count(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _check_state(path: Path, name: str, value: Any, device: str) -> None:
    """A generator state: a uint8 tensor that a fresh generator on ``device`` accepts."""
    fresh = torch.Generator(device=device)
    _check_tensor(path, name, value, (tuple(fresh.get_state().shape), torch.uint8))
    try:
        fresh.set_state(value.cpu())
    except (RuntimeError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: {name} is not a generator state ({_short(e)})") from None


_TRACK = ("track_logits", "track_logits_before")


def _check_track_logits(path: Path, extra: dict, schema: CheckpointSchema) -> None:
    """The stored bit logits of a run that tracks flips (module docstring)."""
    if schema.track_logits is None:
        return
    if "track_logits" not in extra:
        raise CheckpointError(
            f"{path}: extra lacks track_logits (this run tracks flips: the bit logits at its "
            "last row)"
        )
    images, n = schema.track_logits
    shapes = []
    for key in _TRACK:
        if key not in extra:
            continue
        value = extra[key]
        if not (isinstance(value, torch.Tensor) and value.dtype == torch.float32
                and value.dim() == 2 and 1 <= value.shape[0] <= images
                and value.shape[1] == n):  # fmt: skip
            raise CheckpointError(
                f"{path}: extra.{key} must be a float32 tensor [M, {n}] with 1 <= M <= "
                f"{images} (the tracked test images' bit logits)"
            )
        if bool(value.isnan().any()):
            raise CheckpointError(f"{path}: extra.{key} holds NaN")
        shapes.append(tuple(value.shape))
    if len(set(shapes)) > 1:
        raise CheckpointError(f"{path}: extra.track_logits_before differs in shape from "
                              "extra.track_logits")  # fmt: skip


def _check_extra(path: Path, extra: dict, schema: CheckpointSchema) -> None:
    allowed = {"finalized", "step", *_INSIDE, *(_TRACK if schema.track_logits else ())}
    unknown = sorted(map(str, set(extra) - allowed))
    if unknown:
        raise CheckpointError(f"{path}: extra holds unknown entries {', '.join(unknown)}")
    _check_track_logits(path, extra, schema)
    if not isinstance(extra.get("finalized", False), bool):
        raise CheckpointError(f"{path}: extra.finalized must be true or false")
    if "step" in extra and not _is_count(extra["step"], 0):
        raise CheckpointError(f"{path}: extra.step must be an integer >= 0")
    inside = [k for k in _INSIDE if k in extra]
    if not inside:
        return
    if len(inside) < len(_INSIDE) or "step" not in extra:
        missing = [k for k in ("step", *_INSIDE) if k not in extra]
        raise CheckpointError(f"{path}: extra lacks {', '.join(missing)} (a position in an epoch)")
    for key, low in (("epoch_batches", 1), ("epoch_images", 0)):
        if not _is_count(extra[key], low):
            raise CheckpointError(f"{path}: extra.{key} must be an integer >= {low}")
    _check_state(path, "extra.generator", extra["generator"], schema.device)
    _check_state(path, "extra.torch_rng", extra["torch_rng"], "cpu")
    sums = extra["epoch_sums"]
    if not (
        isinstance(sums, list)
        and len(sums) == 4
        and all(isinstance(v, float) and math.isfinite(v) for v in sums)
    ):
        raise CheckpointError(f"{path}: extra.epoch_sums must be a list of 4 finite numbers")
    seconds = extra["epoch_seconds"]
    if not (isinstance(seconds, float) and math.isfinite(seconds) and seconds >= 0):
        raise CheckpointError(f"{path}: extra.epoch_seconds must be a finite number >= 0")


def _check_identity(path: Path, identity: Any, schema: CheckpointSchema) -> None:
    if identity is None:
        raise CheckpointError(
            f"{path} records no run identity (family, seed, fingerprint): it was not written "
            "by a binaryvae run; refused"
        )
    for key, kind in (("family", str), ("seed", int), ("fingerprint", str)):
        value = identity.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CheckpointError(f"{path}: identity.{key} is missing or not a {kind.__name__}")
    for key in ("family", "seed", "fingerprint"):
        theirs, ours = identity[key], schema.identity[key]
        if theirs != ours:
            raise CheckpointError(
                f"{path} is a checkpoint of another configuration: {key} {theirs!r} in the "
                f"checkpoint, {ours!r} in {schema.source}; refused"
            )


def _check_tensor(
    path: Path, name: str, value: Any, spec: tuple[tuple[int, ...], torch.dtype]
) -> None:
    shape, dtype = spec
    if not isinstance(value, torch.Tensor):
        raise CheckpointError(f"{path}: {name} is a {type(value).__name__}, not a tensor")
    if value.dtype != dtype:
        raise CheckpointError(f"{path}: {name} has dtype {value.dtype}, this run's is {dtype}")
    if tuple(value.shape) != shape:
        raise CheckpointError(
            f"{path}: {name} has shape {list(value.shape)}, this run's is {list(shape)}"
        )
    if (value.is_floating_point() or value.is_complex()) and not bool(value.isfinite().all()):
        raise CheckpointError(f"{path}: {name} holds non-finite values (nan or inf)")


def _check_tensors(path: Path, what: str, state: dict, specs: dict) -> None:
    missing = [k for k in specs if k not in state]
    unexpected = [k for k in state if k not in specs]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(map(str, missing[:3]))}")
        if unexpected:
            parts.append(f"unexpected {', '.join(map(str, unexpected[:3]))}")
        raise CheckpointError(
            f"{path}: {what} state does not fit this run's model ({'; '.join(parts)}); "
            "is it another run's checkpoint?"
        )
    for key, spec in specs.items():
        _check_tensor(path, f"{what}.{key}", state[key], spec)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return isinstance(a, int | float) and isinstance(b, int | float) and a == b


def _lr_factor_at(payload: dict[str, Any], schema: CheckpointSchema) -> float:
    """The config's lr factor where the checkpoint was written: in the epoch it is inside
    (``extra.epoch_batches``), else in the last epoch it completed."""
    from binaryvae.training.optim import lr_factor

    epoch, extra = payload.get("epoch"), payload.get("extra") or {}
    if isinstance(epoch, bool) or not isinstance(epoch, int):
        return 1.0  # refused by the payload check before this is called
    inside = isinstance(extra, dict) and "epoch_batches" in extra
    return lr_factor(epoch + (1 if inside else 0), schema.lr_decay_epoch, schema.lr_decay)


def _checked_optimizer(
    path: Path, state: Any, schema: CheckpointSchema, lr_factor: float = 1.0
) -> dict[str, Any]:
    """The optimizer state, checked against ``schema``: fresh param_groups, fresh tensors.
    ``lr_factor``: the config's lr decay at the checkpoint's position (its lr must be the
    fresh one times that; the returned param_groups hold the fresh lr, which training sets
    for each epoch)."""
    if set(state) != {"state", "param_groups"}:
        raise CheckpointError(f"{path}: optimizer state must hold exactly state and param_groups")
    groups, per_param = state["param_groups"], state["state"]
    if not isinstance(groups, list) or len(groups) != len(schema.param_groups):
        raise CheckpointError(
            f"{path}: optimizer.param_groups must be a list of {len(schema.param_groups)} "
            "group(s) like this run's optimizer"
        )
    for i, (group, fresh) in enumerate(zip(groups, schema.param_groups, strict=True)):
        if not isinstance(group, dict) or group.get("params") != fresh["params"]:
            raise CheckpointError(
                f"{path}: optimizer.param_groups[{i}].params is not this run's parameters "
                f"{fresh['params'][:3]}...; is it another run's checkpoint?"
            )
        for key in _HYPERPARAMETERS:
            want = fresh.get(key)
            if key == "lr" and lr_factor != 1.0:
                want = fresh.get("initial_lr", want) * lr_factor  # as set_epoch_lr has it
            if key in fresh and not _same(group.get(key), want):
                raise CheckpointError(
                    f"{path}: optimizer.param_groups[{i}].{key} is {group.get(key)!r}, but "
                    f"{schema.source} trains with {want!r} there; refused"
                )
    if not isinstance(per_param, dict):
        raise CheckpointError(f"{path}: optimizer.state must be a dict")
    checked: dict[int, dict[str, torch.Tensor]] = {}
    for index, entry in per_param.items():
        if isinstance(index, bool) or not isinstance(index, int):
            raise CheckpointError(f"{path}: optimizer.state has a key {index!r}, not a param id")
        if not 0 <= index < len(schema.params):
            raise CheckpointError(
                f"{path}: optimizer.state[{index}] names no parameter of this run's model "
                f"({len(schema.params)} parameters)"
            )
        where = f"optimizer.state[{index}]"
        if not isinstance(entry, dict) or set(entry) != schema.state_keys:
            keys = sorted(map(str, entry)) if isinstance(entry, dict) else type(entry).__name__
            raise CheckpointError(
                f"{path}: {where} holds {keys}, the optimizer's state is "
                f"{sorted(schema.state_keys)}"
            )
        fresh_entry = {}
        for key, value in entry.items():
            if key == "step":
                fresh_entry[key] = _checked_step(path, f"{where}.step", value)
                continue
            _check_tensor(path, f"{where}.{key}", value, schema.params[index])
            if key in _NON_NEGATIVE and bool((value < 0).any()):
                raise CheckpointError(f"{path}: {where}.{key} holds negative values")
            fresh_entry[key] = torch.empty_like(value, memory_format=torch.contiguous_format)
            fresh_entry[key].copy_(value)
        checked[index] = fresh_entry
    return {"state": checked, "param_groups": copy.deepcopy(schema.param_groups)}


def _checked_step(path: Path, name: str, value: Any) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise CheckpointError(f"{path}: {name} is a {type(value).__name__}, not a tensor")
    if value.dtype not in _STEP_DTYPES or value.dim() != 0:
        raise CheckpointError(
            f"{path}: {name} must be a 0-dim float32 tensor, got {value.dtype} of shape "
            f"{list(value.shape)}"
        )
    step = float(value)
    if not math.isfinite(step) or step < 0 or step != int(step):
        raise CheckpointError(f"{path}: {name} is {step}, not a count of steps")
    return torch.tensor(step, dtype=value.dtype, device=value.device)


def _check_rng(path: Path, rng: Any) -> None:
    """The RNG states have the shape and dtype torch and numpy give them (benchmarks restore
    them; runs reseed every epoch instead)."""
    if not isinstance(rng, dict) or not isinstance(rng.get("numpy"), dict):
        raise CheckpointError(f"{path}: rng must hold torch, numpy and python states")
    here = torch.get_rng_state()
    _check_tensor(path, "rng.torch", rng.get("torch"), (tuple(here.shape), here.dtype))
    _check_tensor(path, "rng.numpy.keys", rng["numpy"].get("keys"), ((624,), torch.int64))


def load_state(target: Any, state: dict[str, Any], path: str | Path) -> None:
    """``target.load_state_dict(state)`` (a module or an optimizer); `CheckpointError` naming
    ``path`` when the state does not fit (a checkpoint of another configuration)."""
    try:
        target.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError) as e:
        raise CheckpointError(
            f"{path} does not fit this run's model ({_short(e)}); is it another run's checkpoint?"
        ) from None
