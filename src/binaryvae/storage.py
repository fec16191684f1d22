"""Files written safely: one atomic-write helper, orphan clean-up, and one-line storage errors.

Every file binaryvae replaces (config.json, summary.json, checkpoints, figures' JSON side files,
downloaded datasets) goes through `atomic_write_bytes`: the bytes go to a temporary file in the
same directory, are flushed and fsync'ed, the file is renamed over the target, and the directory
is fsync'ed so that the rename itself survives a crash. A reader therefore sees the old file or
the new one, never a torn one. A write killed before its rename leaves ``NAME.<random>.tmp``
behind; the next write of ``NAME`` removes such orphans (`remove_orphan_temps`).

An `OSError` while writing (no space left, read-only file system, permission denied) becomes a
`StorageError`: a `BadInput` whose one-line message names the path and the cause, so the command
line ends with exit code 2 and the previous file stays intact.
"""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from binaryvae.errors import BadInput

__all__ = [
    "STORAGE_ERRNOS",
    "StorageError",
    "append_line",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_writer",
    "json_safe",
    "remove_orphan_temps",
    "storage_error",
    "write_json_atomic",
]

# causes that are the user's environment, not a bug: reported in one line with exit code 2
STORAGE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.ENOTDIR}
)


class StorageError(BadInput):
    """A file could not be written (or read) for a reason of the file system; names the path."""


def storage_error(path: str | os.PathLike, exc: OSError) -> StorageError:
    """`StorageError` "cannot write PATH: CAUSE" for ``exc`` raised while writing ``path``."""
    cause = exc.strerror or str(exc) or type(exc).__name__
    return StorageError(f"cannot write {path}: {cause}")


def _file_mode() -> int:
    """The mode open() would give a new file (0666 minus the umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def remove_orphan_temps(path: str | os.PathLike) -> list[Path]:
    """Remove ``NAME.*.tmp`` files beside ``path`` left by writes killed before their rename.

    Only the temporary files of this one target are touched (the caller holds the run
    directory's lock, so no other process is writing them). Returns the paths removed.
    """
    path = Path(path)
    removed = []
    try:
        candidates = list(path.parent.glob(path.name + ".*.tmp"))
    except OSError:
        return removed
    for orphan in candidates:
        try:
            orphan.unlink()
            removed.append(orphan)
        except FileNotFoundError:
            pass
        except OSError:
            pass  # not ours to fix; the write itself will report a real problem
    return removed


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a directory; the rename is still atomic
    finally:
        os.close(fd)


@contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """``with atomic_writer(path) as f: f.write(...)``: the file appears at ``path`` only when
    the block ends without an exception (module docstring); `StorageError` on OSError.

    ``f.name`` is the temporary file's path, so the block can check what it wrote (e.g. a
    checksum) and raise to abandon it. Creates the parent directory if needed; on failure the
    old file is untouched and the temporary file is removed.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_orphan_temps(path)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise storage_error(path, e) from None
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode())  # mkstemp creates 0600; use the umask like open() does
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in STORAGE_ERRNOS:
            raise storage_error(path, e) from None  # the file system's refusal, in one line
        raise  # the block's own failure (e.g. a network error while downloading)
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` by ``data`` atomically (`atomic_writer`)."""
    with atomic_writer(path) as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """`atomic_write_bytes` of UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def json_safe(value: Any) -> Any:
    """JSON-safe copy: tuples to lists, tensors/numpy scalars to numbers, NaN/inf to None."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0 and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` (made `json_safe`) as indented, key-sorted JSON, atomically."""
    text = json.dumps(json_safe(data), indent=2, sort_keys=True) + "\n"
    atomic_write_text(path, text)


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line to ``path`` and fsync it; `StorageError` on OSError.

    A crash mid-append can leave a torn last line, which readers skip (metrics.jsonl).
    """
    try:
        with open(path, "a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise storage_error(path, e) from None
