"""Who owns a directory: the marker binaryvae writes first, the files it may delete, the lock.

- **Marker.** Every directory binaryvae creates for its output (a run, a compare or replica
  group, a sweep) holds `MARKER` (``.binaryvae-run``, JSON with the format and the kind), written
  before anything else. ``--force`` replaces only marked directories, and inside them deletes
  only the files binaryvae writes (`OWNED_FILES`, the contents it writes into ``checkpoints/``
  and ``figures/``, and marked sub-directories, recursively); anything else -- a user's notes, a
  script, a folder of their own -- stays. A non-empty directory without the marker is refused.
  Nothing outside the given directory is ever removed.
- **Lock.** One writer per directory: `DirLock` takes an advisory ``fcntl.flock`` on `LOCK_FILE`
  inside it, held for the whole command and released by the operating system when the process
  ends, however it ends. A second writer fails at once with the holder's pid. Readers
  (``report``, ``sample``) take no lock: every file is replaced atomically and metrics.jsonl is
  append-only, so a reader always sees a consistent snapshot.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from binaryvae import __version__
from binaryvae.errors import BadInput
from binaryvae.storage import atomic_write_text, storage_error

__all__ = [
    "Claim",
    "LOCK_FILE",
    "MARKER",
    "OWNED_FILES",
    "DirLock",
    "check_new_dir",
    "claim_existing",
    "claim_new",
    "clean_owned",
    "is_marked",
    "read_marker",
]

MARKER = ".binaryvae-run"
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
OWNED_FOLDERS = {"checkpoints": ("*.pt", "*.tmp"), "figures": ("*.png", "*.tmp")}


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
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise storage_error(lock, e) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder else "another process"
            raise BadInput(
                f"{self.path} is being written by another binaryvae process ({who}); "
                "wait for it to finish or stop it"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
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
    lock = DirLock(path).acquire()  # held by another process: BadInput, nothing touched
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
    if not fresh:
        return
    try:
        if is_marked(path):
            clean_owned(path)
        for name in (MARKER, LOCK_FILE):
            (path / name).unlink(missing_ok=True)
    except (OSError, BadInput):
        pass
    for folder in reversed(created):
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
    with DirLock(path):
        yield path
