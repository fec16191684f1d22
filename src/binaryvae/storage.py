"""Files written safely: one atomic-write helper, orphan clean-up, and one-line storage errors.

Every file binaryvae replaces (config.json, summary.json, checkpoints, figures, reports, samples,
downloaded datasets) goes through `atomic_writer`: the bytes go to a temporary file in the
same directory, are flushed and fsync'ed, the file is renamed over the target, and the directory
is fsync'ed so that the rename itself survives a crash. A reader therefore sees the old file or
the new one, never a torn one. A write killed before its rename leaves ``NAME.<random>.tmp``
behind; the next write of ``NAME`` removes such orphans (`remove_orphan_temps`).

**Nothing reaches outside a run directory.** Every write is made relative to a file descriptor
of its directory, and that directory is reached from its *root* one component at a time with
``O_NOFOLLOW``: the root is the outermost of the marked directories (``.binaryvae-run``, see
`binaryvae.runs.ownership`) that enclose the file, or the file's own folder when none does. The
root itself is the user's path and may be reached through links; below it, a symbolic link --
a linked ``figures/`` or ``checkpoints/`` folder, a linked ``report.html``, ``metrics.jsonl`` or
lock file -- is refused with `LinkRefused` (exit code 2, naming the link), never followed and
never written through. Temporary files are created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` and
renamed with ``src_dir_fd``/``dst_dir_fd``; `append_line` opens with ``O_APPEND | O_NOFOLLOW``.

An `OSError` while writing (no space left, read-only file system, permission denied, a name too
long, a directory in the way) becomes a `StorageError`: a `BadInput` whose one-line message names
the path and the cause, so the command line ends with exit code 2 and the previous file stays
intact.
"""

from __future__ import annotations

import errno
import json
import math
import os
import secrets
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from binaryvae.errors import BadInput

__all__ = [
    "RUN_MARKER",
    "STORAGE_ERRNOS",
    "LinkRefused",
    "StorageError",
    "append_bytes",
    "append_line",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_writer",
    "describe_os_error",
    "json_safe",
    "open_dir",
    "refuse_links",
    "remove_orphan_temps",
    "reset_folder",
    "run_root",
    "storage_error",
    "write_json_atomic",
]

# the marker every directory binaryvae writes carries (binaryvae.runs.ownership.MARKER)
RUN_MARKER = ".binaryvae-run"

# causes that are the user's environment, not a bug: reported in one line with exit code 2
STORAGE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.ENOTDIR}
)
# what a write into the temporary file can raise from the file system (inside the with-block,
# beside the block's own errors, which pass through unchanged)
_WRITE_ERRNOS = STORAGE_ERRNOS | {errno.EFBIG, errno.EIO}

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class StorageError(BadInput):
    """A file could not be written (or read) for a reason of the file system; names the path."""


class LinkRefused(StorageError):
    """A file or folder binaryvae would write inside a run directory is a symbolic link (or a
    file shared by hard links): refused, never followed; the message names the link."""


def _errno_name(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno, "") if exc.errno is not None else ""


def storage_error(path: str | os.PathLike, exc: OSError) -> StorageError:
    """`StorageError` "cannot write PATH: CAUSE" for ``exc`` raised while writing ``path``."""
    cause = exc.strerror or str(exc) or type(exc).__name__
    return StorageError(f"cannot write {path}: {cause}")


def describe_os_error(exc: OSError) -> str:
    """One line for any `OSError`: the path(s) it names, its cause and errno name."""
    cause = exc.strerror or str(exc) or type(exc).__name__
    cause = " ".join(str(cause).split())  # one line, whatever the cause's text holds
    name = _errno_name(exc)
    if name and name not in cause:
        cause += f" ({name})"
    paths = [os.fsdecode(p) for p in (exc.filename, exc.filename2) if p is not None]
    return f"{' -> '.join(paths)}: {cause}" if paths else cause


def _is_marked(directory: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(directory / RUN_MARKER).st_mode)
    except OSError:
        return False


def run_root(directory: str | os.PathLike) -> Path:
    """The directory below which nothing is followed for a write into ``directory``: the
    outermost of the consecutive marked directories enclosing it (a run inside a compare or a
    sweep: the compare or the sweep), else ``directory`` itself. Absolute, not resolved."""
    directory = Path(directory).absolute()
    root = None
    for d in (directory, *directory.parents):
        if _is_marked(d):
            root = d
        elif root is not None:
            break
    return root if root is not None else directory


def _link_refused(shown: Path, dir_fd: int, name: str, what: str) -> LinkRefused:
    try:
        target = f" (to {os.readlink(name, dir_fd=dir_fd)})"
    except OSError:
        target = ""
    return LinkRefused(
        f"refusing to {what} {shown}: it is a symbolic link{target}, and binaryvae follows no "
        "link inside a run directory (nothing was written; remove the link)"
    )


def _is_link(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def open_dir(
    directory: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    create: bool = False,
) -> int:
    """A file descriptor of ``directory`` (the caller closes it), reached from ``root``
    (default `run_root`) one component at a time without following links.

    ``root`` itself is opened as given (it may be reached through links: it is the user's
    path). ``create`` makes the missing folders (``0777`` minus the umask). Raises
    `LinkRefused` naming the first linked component, `StorageError` on any other OSError.
    """
    directory = Path(directory)
    absdir = Path(directory).absolute()
    absroot = run_root(absdir) if root is None else Path(root).absolute()
    try:
        parts = absdir.relative_to(absroot).parts
    except ValueError:
        raise ValueError(f"{directory} is not inside {root}") from None
    # the root as the caller spelled it (absolute when the path given does not reach it)
    n = len(parts)
    shown = (
        directory if not n else directory.parents[n - 1] if n <= len(directory.parents) else absroot
    )
    try:
        fd = os.open(absroot, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        if not create:
            missing = FileNotFoundError(errno.ENOENT, "No such directory")
            raise storage_error(shown, missing) from None
        try:
            absroot.mkdir(parents=True, exist_ok=True)
            fd = os.open(absroot, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise storage_error(shown, e) from None
    except OSError as e:
        raise storage_error(shown, e) from None
    for part in parts:
        shown = shown / part
        try:
            try:
                sub = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(part, 0o777, dir_fd=fd)
                except FileExistsError:
                    pass  # made meanwhile: opened (and checked) below
                sub = os.open(part, _DIR_FLAGS, dir_fd=fd)
        except OSError as e:
            link = _is_link(fd, part)
            err = _link_refused(shown, fd, part, "write into") if link else storage_error(shown, e)
            os.close(fd)
            raise err from None
        os.close(fd)
        fd = sub
    return fd


@contextmanager
def _dir(directory: Path, root, create: bool) -> Iterator[int]:
    fd = open_dir(directory, root=root, create=create)
    try:
        yield fd
    finally:
        os.close(fd)


def _check_target(dir_fd: int, name: str, path: Path) -> None:
    """Refuse to replace ``name`` if it is a link (`LinkRefused`) or not a plain file."""
    try:
        mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISLNK(mode):
        raise _link_refused(path, dir_fd, name, "write")
    if stat.S_ISDIR(mode):
        raise storage_error(path, IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR)))
    if not stat.S_ISREG(mode):
        raise StorageError(f"cannot write {path}: it exists and is not a regular file")


def refuse_links(
    directory: str | os.PathLike, names: Iterable[str], *, root: str | os.PathLike | None = None
) -> None:
    """Raise `LinkRefused` if ``directory`` (below its root) or any of ``names`` in it is a
    symbolic link; writes nothing. A missing directory or name is fine."""
    directory = Path(directory)
    if not directory.exists():
        return
    with _dir(directory, root, create=False) as fd:
        for name in names:
            if _is_link(fd, name):
                raise _link_refused(directory / name, fd, name, "write")


def reset_folder(
    folder: str | os.PathLike, suffix: str, *, root: str | os.PathLike | None = None
) -> None:
    """Create ``folder`` if missing and delete the files in it whose names end in ``suffix``
    (a report's old figures). Reached as in `open_dir`: a linked folder is `LinkRefused` and
    nothing in it is touched; a link inside it is removed itself, never its target."""
    folder = Path(folder)
    with _dir(folder, root, create=True) as fd:
        try:
            for name in os.listdir(fd):
                if not name.endswith(suffix):
                    continue
                mode = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
                if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
                    os.unlink(name, dir_fd=fd)
        except OSError as e:
            raise storage_error(folder, e) from None


def _remove_orphans(dir_fd: int, name: str, parent: Path) -> list[Path]:
    removed = []
    try:
        entries = os.listdir(dir_fd)
    except OSError:
        return removed
    prefix = name + "."
    for entry in entries:
        if not (entry.startswith(prefix) and entry.endswith(".tmp")) or len(entry) < len(name) + 5:
            continue
        try:
            mode = os.stat(entry, dir_fd=dir_fd, follow_symlinks=False).st_mode
            if stat.S_ISREG(mode) or stat.S_ISLNK(mode):  # a link: only the link goes
                os.unlink(entry, dir_fd=dir_fd)
                removed.append(parent / entry)
        except OSError:
            pass  # not ours to fix; the write itself will report a real problem
    return removed


def remove_orphan_temps(path: str | os.PathLike) -> list[Path]:
    """Remove ``NAME.*.tmp`` files beside ``path`` left by writes killed before their rename.

    Only the temporary files of this one target are touched (the caller holds the run
    directory's lock, so no other process is writing them); a linked folder is not entered.
    Returns the paths removed.
    """
    path = Path(path)
    try:
        with _dir(path.parent, None, create=False) as fd:
            return _remove_orphans(fd, path.name, path.parent)
    except StorageError:
        return []


def _create_temp(dir_fd: int, name: str) -> tuple[str, int]:
    """A new ``NAME.<random>.tmp`` in ``dir_fd`` (O_EXCL, O_NOFOLLOW), mode 0666 - umask."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(100):
        tmp = f"{name}.{secrets.token_hex(4)}.tmp"
        try:
            return tmp, os.open(tmp, flags, 0o666, dir_fd=dir_fd)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name")


@contextmanager
def atomic_writer(
    path: str | os.PathLike, *, root: str | os.PathLike | None = None
) -> Iterator[BinaryIO]:
    """``with atomic_writer(path) as f: f.write(...)``: the file appears at ``path`` only when
    the block ends without an exception (module docstring); `StorageError` on OSError.

    ``f.name`` is the temporary file's path, so the block can check what it wrote (e.g. a
    checksum) and raise to abandon it. Creates the parent directory if needed; on failure the
    old file is untouched and the temporary file is removed. Nothing below ``root`` (default
    `run_root` of the parent) is followed: a link on the way or at ``path`` is `LinkRefused`.
    """
    path = Path(path)
    dir_fd = open_dir(path.parent, root=root, create=True)
    try:
        _check_target(dir_fd, path.name, path)
        _remove_orphans(dir_fd, path.name, path.parent)
        tmp, fd = _create_temp(dir_fd, path.name)
    except OSError as e:
        os.close(dir_fd)
        raise storage_error(path, e) from None
    except BaseException:
        os.close(dir_fd)
        raise
    in_block = True
    try:
        with os.fdopen(fd, "wb") as f:
            f.raw.name = str(path.parent / tmp)
            yield f
            in_block = False
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException as e:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
        os.close(dir_fd)
        if isinstance(e, OSError) and (not in_block or e.errno in _WRITE_ERRNOS):
            raise storage_error(path, e) from None  # the file system's refusal, in one line
        raise  # the block's own failure (e.g. a network error while downloading)
    try:
        os.fsync(dir_fd)
    except OSError:
        pass  # some file systems cannot fsync a directory; the rename is still atomic
    finally:
        os.close(dir_fd)


def atomic_write_bytes(
    path: str | os.PathLike, data: bytes, *, root: str | os.PathLike | None = None
) -> None:
    """Replace ``path`` by ``data`` atomically (`atomic_writer`)."""
    with atomic_writer(path, root=root) as f:
        f.write(data)


def atomic_write_text(
    path: str | os.PathLike, text: str, *, root: str | os.PathLike | None = None
) -> None:
    """`atomic_write_bytes` of UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"), root=root)


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


def write_json_atomic(
    path: str | os.PathLike, data: Any, *, root: str | os.PathLike | None = None
) -> None:
    """Write ``data`` (made `json_safe`) as indented, key-sorted JSON, atomically."""
    text = json.dumps(json_safe(data), indent=2, sort_keys=True) + "\n"
    atomic_write_text(path, text, root=root)


def append_line(
    path: str | os.PathLike, line: str, *, root: str | os.PathLike | None = None
) -> None:
    """Append one line to ``path`` and fsync it; `StorageError` on OSError.

    Opened with ``O_APPEND | O_NOFOLLOW`` relative to its folder (reached as in
    `atomic_writer`): a linked file, or one with other hard links, is `LinkRefused`. A crash
    mid-append can leave a torn last line, which readers skip (metrics.jsonl).
    """
    append_bytes(path, (line + "\n").encode("utf-8"), root=root)


def append_bytes(
    path: str | os.PathLike, data: bytes, *, root: str | os.PathLike | None = None
) -> None:
    """Append ``data`` to ``path`` and fsync it, as `append_line` appends a line (the same
    refusals: a linked or hard-linked file, a link on the way; `StorageError` on OSError)."""
    path = Path(path)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    with _dir(path.parent, root, create=True) as dir_fd:
        try:
            fd = os.open(path.name, flags, 0o666, dir_fd=dir_fd)
        except OSError as e:
            if _is_link(dir_fd, path.name):
                raise _link_refused(path, dir_fd, path.name, "append to") from None
            raise storage_error(path, e) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise StorageError(f"cannot append to {path}: it is not a regular file")
            if st.st_nlink != 1:
                raise LinkRefused(
                    f"refusing to append to {path}: it has {st.st_nlink} hard links, so the "
                    "append would change another file too (nothing was written)"
                )
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        except OSError as e:
            raise storage_error(path, e) from None
        finally:
            os.close(fd)
