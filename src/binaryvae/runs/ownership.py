"""Who owns a directory: the marker binaryvae writes first, the files it may delete, the lock.

- **Marker.** Every directory binaryvae creates for its output (a run, a compare or replica
  group, a sweep) holds `MARKER` (``.binaryvae-run``, JSON with the format and the kind), written
  before anything else. ``--force`` replaces only marked directories, and inside them deletes
  only the files binaryvae writes (`OWNED_FILES`, the contents it writes into ``checkpoints/``,
  ``figures/`` and ``tensorboard/``, and marked sub-directories, recursively); anything else
  -- a user's notes, a script, a folder of their own -- stays. A non-empty directory without
  the marker is refused. Nothing outside the given directory is ever removed.
- **Lock.** One writer per directory: `DirLock` takes an advisory ``fcntl.flock`` on `LOCK_FILE`
  inside it, held for the whole command and released by the operating system when the process
  ends, however it ends. A second writer fails at once with the holder's pid. The lock file
  is opened without following links (``O_NOFOLLOW``, relative to the directory's descriptor):
  a linked, hard-linked or non-regular lock file, or one holding anything but a pid, is
  refused (exit code 2, naming it) and left as it is. Readers
  (``report``, ``sample``) take no lock: every file is replaced atomically and metrics.jsonl is
  append-only, so a reader always sees a consistent snapshot.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from binaryvae import __version__
from binaryvae.errors import BadInput
from binaryvae.storage import (
    RUN_MARKER,
    LinkRefused,
    StorageError,
    atomic_write_text,
    open_dir,
    storage_error,
)

__all__ = [
    "Claim",
    "LOCK_FILE",
    "MARKER",
    "OWNED_FILES",
    "DirLock",
    "LockHeld",
    "check_new_dir",
    "claim_existing",
    "claim_new",
    "clean_owned",
    "is_marked",
    "read_marker",
]

MARKER = RUN_MARKER  # ".binaryvae-run"
MARKER_FORMAT = 1
LOCK_FILE = ".binaryvae.lock"
KINDS = ("run", "compare", "replicas", "sweep")

# files binaryvae writes at the top of a directory it owns (and their temporary files)
OWNED_FILES = frozenset(
    {
        "config.json",
        "metrics.jsonl",
        "summary.json",
        "compare.json",
        "replicas.json",
        "sweep.json",
        "sweep.csv",
        "report.html",
        "report.md",
    }
)
# sub-folders binaryvae writes, and the file patterns it puts there
OWNED_FOLDERS = {
    "checkpoints": ("*.pt", "*.tmp"),
    "figures": ("*.png", "*.tmp"),
    "tensorboard": ("events.out.tfevents.*.binaryvae", "*.tmp"),  # binaryvae.runs.tensorboard
}
# a pid and a newline: a lock file holding more (or anything else) is not binaryvae's
_LOCK_MAX_BYTES = 32


class LockHeld(BadInput):
    """Another process holds the directory's lock (the directory is that process's)."""


def is_marked(path: str | os.PathLike) -> bool:
    return (Path(path) / MARKER).is_file()


def read_marker(path: str | os.PathLike) -> dict:
    """The marker's contents (``{}`` when absent or unreadable: not a small JSON object of
    the marker's fields, `binaryvae.jsonfiles.read_json`)."""
    from binaryvae.jsonfiles import read_json
    from binaryvae.runs.directory import MARKER_SCHEMA

    try:
        return read_json(Path(path) / MARKER, MARKER_SCHEMA, max_bytes=1 << 16)
    except BadInput:
        return {}


def _write_marker(path: Path, kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown directory kind {kind!r}")
    atomic_write_text(
        path / MARKER,
        json.dumps({"binaryvae": __version__, "format": MARKER_FORMAT, "kind": kind}) + "\n",
    )


def check_new_dir(path: str | os.PathLike, force: bool) -> None:
    """Raise BadInput unless ``path`` may become a new output directory; writes nothing.

    A path that does not exist, or an empty directory, is fine. An existing non-empty directory
    needs ``force``, and even then only one carrying `MARKER` (binaryvae wrote it).
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
    if not is_marked(path):
        raise BadInput(
            f"refusing to overwrite {path}: it has no {MARKER} marker, so binaryvae did not "
            "write it (nothing was deleted)"
        )
    _refuse_links(path, "overwrite")


def _refuse_links(path: Path, what: str) -> None:
    """Raise `LinkRefused` if a name binaryvae writes in ``path`` or a marked sub-directory
    (its files and folders, the marker, the lock) is a symbolic link: such a link is neither
    followed nor deleted, so the user sees it named and decides (nothing is touched)."""
    names = sorted(OWNED_FILES | set(OWNED_FOLDERS) | {MARKER, LOCK_FILE})
    for d in [path, *_marked_subdirs(path)]:
        for name in names:
            link = d / name
            if link.is_symlink():
                try:
                    target = f" (to {os.readlink(link)})"
                except OSError:
                    target = ""
                raise LinkRefused(
                    f"refusing to {what} {path}: {link} is a symbolic link{target}, which "
                    "binaryvae neither follows nor deletes (nothing was touched; remove the link)"
                )


def _owned_files(path: Path) -> Iterator[Path]:
    """The files binaryvae wrote at ``path`` (not the lock, not marked sub-directories)."""
    for entry in path.iterdir():
        name = entry.name
        if entry.is_file() and not entry.is_symlink():
            base = name.split(".", 1)[0]
            if name in OWNED_FILES:
                yield entry
            elif name.endswith(".tmp") and any(name.startswith(f + ".") for f in OWNED_FILES):
                yield entry  # an orphan of a killed atomic write
            elif name.startswith("metrics.") and name.endswith(".tmp") and base == "metrics":
                yield entry


def _marked_subdirs(path: Path) -> list[Path]:
    """Marked sub-directories at any depth below ``path`` (not following symlinks)."""
    found = []
    for entry in sorted(path.iterdir()):
        if entry.is_dir() and not entry.is_symlink() and is_marked(entry):
            found.append(entry)
            found += _marked_subdirs(entry)
    return found


def _clean_one(path: Path) -> None:
    for f in _owned_files(path):
        f.unlink(missing_ok=True)
    for folder, patterns in OWNED_FOLDERS.items():
        sub = path / folder
        if sub.is_dir() and not sub.is_symlink():
            for pattern in patterns:
                for f in sub.glob(pattern):
                    if f.is_file() and not f.is_symlink():
                        f.unlink(missing_ok=True)
            _rmdir_if_empty(sub)


def _rmdir_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass  # not empty: something that is not ours stays, and so does its folder


def clean_owned(path: str | os.PathLike) -> None:
    """Delete what binaryvae wrote in the marked directory ``path`` (module docstring).

    Marked sub-directories are cleaned too, each under its own lock (BadInput, nothing deleted,
    if another process holds one). ``path``'s own marker and lock file stay (the caller holds
    the lock and writes a fresh marker). Raises BadInput if ``path`` is not marked.
    """
    path = Path(path)
    if not is_marked(path):
        raise BadInput(f"refusing to clean {path}: it has no {MARKER} marker")
    subdirs = _marked_subdirs(path)
    try:
        with ExitStack() as stack:
            for sub in subdirs:  # every writer below must be idle before anything is deleted
                stack.enter_context(DirLock(sub))
            for sub in reversed(subdirs):  # deepest first
                _clean_one(sub)
            _clean_one(path)
        for sub in reversed(subdirs):
            # a sub-directory left with nothing of someone else's goes; one still holding
            # their files stays, marked, so that binaryvae may write into it again
            left = {e.name for e in sub.iterdir()} - {MARKER, LOCK_FILE}
            if not left:
                for name in (MARKER, LOCK_FILE):
                    (sub / name).unlink(missing_ok=True)
                _rmdir_if_empty(sub)
    except OSError as e:
        raise storage_error(getattr(e, "filename", None) or path, e) from None


class DirLock:
    """Exclusive advisory lock on a directory (``with DirLock(path): ...``); module docstring.

    Raises BadInput naming the directory and the holder's pid when another process holds it.
    The lock file is created if missing and never deleted while in use.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> DirLock:
        lock = self.path / LOCK_FILE
        dir_fd = open_dir(self.path)  # no link followed below the run's root (LinkRefused)
        try:
            fd = _open_lock(dir_fd, lock)
        finally:
            os.close(dir_fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder else "another process"
            raise LockHeld(
                f"{self.path} is being written by another binaryvae process ({who}); "
                "wait for it to finish or stop it"
            ) from None
        try:
            content = os.pread(fd, _LOCK_MAX_BYTES + 1, 0)
            if len(content) > _LOCK_MAX_BYTES or not content.strip().isdigit() and content.strip():
                raise StorageError(
                    f"refusing to use {lock} as a lock: its content is not a pid, so binaryvae "
                    "did not write it (nothing was changed; remove it)"
                )
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as e:
            os.close(fd)
            raise storage_error(lock, e) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> DirLock:
        return self.acquire() if self._fd is None else self

    def __exit__(self, *exc) -> None:
        self.release()


def _open_lock(dir_fd: int, lock: Path) -> int:
    """The lock file's descriptor, opened in ``dir_fd`` with ``O_NOFOLLOW`` (created if
    missing); `LinkRefused` for a link or a file with other hard links, `StorageError` for
    anything but a regular file."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(LOCK_FILE, flags, 0o644, dir_fd=dir_fd)
    except OSError as e:
        try:
            is_link = stat.S_ISLNK(os.stat(LOCK_FILE, dir_fd=dir_fd, follow_symlinks=False).st_mode)
        except OSError:
            is_link = False
        if is_link:
            try:
                target = f" (to {os.readlink(LOCK_FILE, dir_fd=dir_fd)})"
            except OSError:
                target = ""
            raise LinkRefused(
                f"refusing to use {lock} as a lock: it is a symbolic link{target}, and binaryvae "
                "follows no link inside a run directory (nothing was changed; remove the link)"
            ) from None
        raise storage_error(lock, e) from None
    st = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(st.st_mode):
        problem = "it is not a regular file"
    elif st.st_nlink != 1:
        problem = f"it has {st.st_nlink} hard links, so writing a pid would change another file"
    if problem:
        os.close(fd)
        cls = LinkRefused if stat.S_ISREG(st.st_mode) else StorageError
        raise cls(f"refusing to use {lock} as a lock: {problem} (nothing was changed; remove it)")
    return fd


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


class Claim:
    """What `claim_new` yields: the directory, and `commit` to say the start-up writes are done.

    Until `commit` is called, an exception leaving the ``with`` block removes what this command
    wrote into a directory it created (or found empty): a run that cannot even write its
    config.json (no space, read-only) leaves nothing behind.
    """

    def __init__(self, path: Path):
        self.path = path
        self.committed = False

    def commit(self) -> None:
        self.committed = True


@contextmanager
def claim_new(path: str | os.PathLike, *, force: bool, kind: str = "run") -> Iterator[Claim]:
    """Make ``path`` a fresh output directory of ``kind`` and hold its lock while in the block.

    Order: check (nothing written), create the directory and its marker, take the lock, then --
    under the lock -- delete what an earlier binaryvae output left there (``force``) and write a
    fresh marker. If the lock is held by another process, the directory is that process's and
    nothing of it is touched; if the first writes fail, what this call created is removed.
    """
    path = Path(path)
    check_new_dir(path, force)
    created: list[Path] = []
    fresh = False
    try:
        for parent in reversed([path, *path.parents]):
            if not parent.exists():
                parent.mkdir()
                created.append(parent)
        fresh = not any(path.iterdir())  # created here, or an empty directory
        if fresh:
            _write_marker(path, kind)
    except OSError as e:
        _undo(path, created, fresh)
        raise storage_error(path, e) from None
    except BaseException:  # the marker's write refused (StorageError): nothing may stay
        _undo(path, created, fresh)
        raise
    try:
        lock = DirLock(path).acquire()
    except LockHeld:
        raise  # held by another process: the directory is that process's, nothing touched
    except BaseException:  # the lock file cannot be made (no space, a link): nothing stays
        _undo(path, created, fresh)
        raise
    claim = Claim(path)
    try:
        if force:
            check_new_dir(path, force)  # again, under the lock
            clean_owned(path)
        _write_marker(path, kind)
        yield claim
    except BaseException:
        if not claim.committed:
            _undo(path, created, fresh)
        raise
    finally:
        lock.release()


def _undo(path: Path, created: list[Path], fresh: bool) -> None:
    """After a failure at start-up: in a directory that was new or empty, remove what binaryvae
    wrote (all of it is ours) and the directories created; otherwise leave it as it is."""
    if fresh:
        try:
            if is_marked(path):
                clean_owned(path)
            for name in (MARKER, LOCK_FILE):
                (path / name).unlink(missing_ok=True)
        except (OSError, BadInput):
            pass
    for folder in reversed(created):  # made by this call: removed if still empty
        _rmdir_if_empty(folder)


@contextmanager
def claim_existing(path: str | os.PathLike, what: str = "resume") -> Iterator[Path]:
    """Hold the lock of an existing marked directory (resume, evaluate) while in the block."""
    path = Path(path)
    if not path.is_dir():
        raise BadInput(f"cannot {what} {path}: no such directory")
    if not is_marked(path):
        raise BadInput(
            f"cannot {what} {path}: it has no {MARKER} marker (not written by this binaryvae)"
        )
    _refuse_links(path, what)  # before anything is read or written, not after an epoch
    with DirLock(path):
        yield path
