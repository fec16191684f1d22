"""Where the downloadable datasets (mnist, fashion-mnist) live: lookup, download, checksums.

A dataset is four IDX files (``train-images-idx3-ubyte`` etc.), each accepted gzip-compressed
(``NAME.gz``) or raw (``NAME``). Folders are searched in this order (:func:`candidate_dirs`):

1. the ``data_dir`` argument (``--data-dir``): ``DATA_DIR/NAME`` if it exists, else ``DATA_DIR``;
2. ``$BINARYVAE_DATA_DIR/NAME`` (a folder holding one sub-folder per dataset name);
3. the user cache ``~/.cache/binaryvae/NAME`` (``$XDG_CACHE_HOME/binaryvae/NAME`` when set);
4. Debian's location ``/usr/share/datasets/NAME`` (package dataset-fashion-mnist).

The first folder holding all four files wins. Otherwise the files are downloaded from
``MIRRORS[NAME]`` into the cache, with a progress bar, verified by the sha256 of their
*decompressed* bytes (re-compressed copies such as Debian's differ as archives), and moved into
place by an atomic rename: a checksum mismatch or an interrupted download leaves no file behind.
Files found locally are checked the same way when a dataset is loaded (`check_known`): a
corrupt or different copy is refused, naming the file.
"""

from __future__ import annotations

import http.client
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from binaryvae.data.idx import IdxError, sha256_decompressed
from binaryvae.errors import BadInput
from binaryvae.storage import atomic_writer

__all__ = [
    "ChecksumMismatch",
    "DatasetNotFound",
    "RemoteFile",
    "FILES",
    "MIRRORS",
    "ENV_DATA_DIR",
    "DEBIAN_DIR",
    "cache_dir",
    "candidate_dirs",
    "find_file",
    "locate",
    "download",
    "resolve",
    "check_known",
    "missing_message",
]

ENV_DATA_DIR = "BINARYVAE_DATA_DIR"
DEBIAN_DIR = Path("/usr/share/datasets")
_TIMEOUT_S = 30


class DatasetNotFound(BadInput):
    """The files of a dataset are nowhere to be found (and could not be downloaded)."""


class ChecksumMismatch(BadInput):
    """A local dataset file whose decompressed bytes are not the ones binaryvae knows."""


@dataclass(frozen=True)
class RemoteFile:
    """One IDX file of a dataset, by its decompressed name, size and content checksum."""

    name: str  # decompressed file name, e.g. "train-images-idx3-ubyte"
    size: int  # decompressed bytes
    sha256: str  # of the decompressed bytes


# The four files of each dataset, in the order train-images, train-labels, test-images,
# test-labels. Checksums of the decompressed bytes: computed here from the Fashion-MNIST files
# and the MNIST test files of the workplace's shared datasets; the two MNIST training files
# (not available here) carry the value published by several independent projects for the
# decompressed files of http://yann.lecun.com/exdb/mnist/.
FILES: dict[str, tuple[RemoteFile, ...]] = {
    "mnist": (
        RemoteFile(
            "train-images-idx3-ubyte",
            47040016,
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        ),
        RemoteFile(
            "train-labels-idx1-ubyte",
            60008,
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        ),
        RemoteFile(
            "t10k-images-idx3-ubyte",
            7840016,
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        ),
        RemoteFile(
            "t10k-labels-idx1-ubyte",
            10008,
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        ),
    ),
    "fashion-mnist": (
        RemoteFile(
            "train-images-idx3-ubyte",
            47040016,
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        ),
        RemoteFile(
            "train-labels-idx1-ubyte",
            60008,
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        ),
        RemoteFile(
            "t10k-images-idx3-ubyte",
            7840016,
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        ),
        RemoteFile(
            "t10k-labels-idx1-ubyte",
            10008,
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        ),
    ),
}

# Base URLs tried in order; a file is fetched as BASE + NAME + ".gz". Tests point these at a
# local server (monkeypatch.setitem(MIRRORS, "mnist", ("http://127.0.0.1:PORT/",))).
MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
}


def _files(name: str) -> tuple[RemoteFile, ...]:
    try:
        return FILES[name]
    except KeyError:
        raise BadInput(
            f"no downloadable dataset {name!r}; choose one of {', '.join(FILES)}"
        ) from None


def cache_dir(name: str) -> Path:
    """The user-cache folder of dataset ``name`` (created only when something is downloaded)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "binaryvae" / name


def candidate_dirs(name: str, data_dir: str | Path | None = None) -> list[tuple[str, Path]]:
    """The folders searched for dataset ``name``, in order, each with the reason it is searched."""
    out: list[tuple[str, Path]] = []
    if data_dir is not None:
        d = Path(data_dir).expanduser()
        out.append(("--data-dir", d / name if (d / name).is_dir() else d))
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        out.append((f"${ENV_DATA_DIR}", Path(env).expanduser() / name))
    out.append(("user cache", cache_dir(name)))
    out.append(("Debian", DEBIAN_DIR / name))
    return out


def find_file(folder: Path, file: RemoteFile) -> Path | None:
    """``folder/NAME.gz`` or ``folder/NAME`` (raw), whichever exists first; else None."""
    for candidate in (folder / (file.name + ".gz"), folder / file.name):
        if candidate.is_file():
            return candidate
    return None


def locate(name: str, data_dir: str | Path | None = None) -> tuple[str, Path] | None:
    """The first searched folder holding all files of ``name``: ``(reason, folder)``, or None."""
    files = _files(name)
    for reason, folder in candidate_dirs(name, data_dir):
        if all(find_file(folder, f) is not None for f in files):
            return reason, folder
    return None


def missing_message(name: str, data_dir: str | Path | None = None, why: str = "") -> str:
    """One line: which files of ``name`` are missing and where to put them."""
    files = ", ".join(f.name + "[.gz]" for f in _files(name))
    places = "; ".join(f"{reason}: {folder}" for reason, folder in candidate_dirs(name, data_dir))
    tail = f" ({why})" if why else ""
    return (
        f"dataset {name!r} not found{tail}: put {files} into one of: {places}; or set "
        f"${ENV_DATA_DIR} to a folder holding {name}/"
    )


def _fetch(url: str, out, desc: str) -> None:
    """Stream ``url`` into the open file ``out`` with a progress bar; raises on HTTP errors or
    short reads."""
    with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
        total = response.headers.get("Content-Length")
        total = int(total) if total and total.isdigit() else None
        got = 0
        with tqdm(
            total=total, unit="B", unit_scale=True, desc=desc, leave=False, disable=None
        ) as bar:
            for chunk in iter(lambda: response.read(1 << 16), b""):
                out.write(chunk)
                got += len(chunk)
                bar.update(len(chunk))
        if total is not None and got != total:
            raise http.client.IncompleteRead(b"", total - got)


class _Rejected(Exception):
    """A downloaded file that failed its check (abandons the atomic write)."""


def _download_one(name: str, file: RemoteFile, folder: Path, mirrors: tuple[str, ...]) -> str:
    """Fetch one file into ``folder/NAME.gz``: "" on success, else why every mirror failed.

    The bytes go through `binaryvae.storage.atomic_writer`: the file appears under its name only
    once its decompressed content has the registry's sha256.
    """
    failures = []
    for base in mirrors:
        url = base + file.name + ".gz"
        try:
            with atomic_writer(folder / (file.name + ".gz")) as out:
                _fetch(url, out, f"{name}/{file.name}")
                out.flush()
                try:
                    digest = sha256_decompressed(out.name)
                except IdxError as e:
                    raise _Rejected(f"{url}: {str(e).split(': ', 1)[-1]}") from None
                if digest != file.sha256:
                    raise _Rejected(
                        f"{url}: sha256 mismatch of the decompressed file "
                        f"(got {digest[:16]}..., expected {file.sha256[:16]}...)"
                    )
            return ""
        except _Rejected as e:
            failures.append(str(e))
        except (
            urllib.error.URLError,
            http.client.HTTPException,
            TimeoutError,
            ConnectionError,
        ) as e:
            reason = getattr(e, "reason", None) or e
            failures.append(f"{url}: {type(e).__name__}: {reason}")
    return "; ".join(failures)


def download(name: str, data_dir: str | Path | None = None) -> Path:
    """Download the missing files of ``name`` into its cache folder and return that folder.

    Raises BadInput (listing the missing files and where to put them) when no mirror delivers a
    file with the right checksum; nothing partial is left behind.
    """
    files = _files(name)
    folder = cache_dir(name)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        for file in files:
            if find_file(folder, file) is not None:
                continue
            why = _download_one(name, file, folder, MIRRORS.get(name, ()))
            if why:
                raise DatasetNotFound(
                    missing_message(name, data_dir, f"download of {file.name} failed: {why}")
                )
    except BaseException:
        if created and folder.is_dir() and not any(folder.iterdir()):
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


def resolve(name: str, data_dir: str | Path | None = None, download_missing: bool = True) -> Path:
    """The folder holding all files of ``name``: located, else downloaded (when allowed)."""
    found = locate(name, data_dir)
    if found is not None:
        return found[1]
    if not download_missing:
        raise DatasetNotFound(missing_message(name, data_dir, "downloading disabled"))
    return download(name, data_dir)


def _verify_dir(name: str, folder: Path) -> list[tuple[RemoteFile, Path | None, bool | None]]:
    """Check each file of ``name`` in ``folder``: ``(file, path or None, sha256 ok or None)``."""
    out = []
    for file in _files(name):
        path = find_file(folder, file)
        if path is None:
            out.append((file, None, None))
            continue
        try:
            ok = sha256_decompressed(path) == file.sha256
        except IdxError:
            ok = False
        out.append((file, path, ok))
    return out


def check_known(name: str, file: RemoteFile, path: Path, digest: str) -> None:
    """`ChecksumMismatch` naming ``path`` unless ``digest`` (the sha256 of its decompressed
    bytes) is the registry's for ``file`` of dataset ``name``."""
    if digest != file.sha256:
        raise ChecksumMismatch(
            f"{path}: not the {file.name} of {name} that binaryvae knows (sha256 of the "
            f"decompressed bytes {digest[:16]}..., expected {file.sha256[:16]}...): a corrupt or "
            "different copy; replace it (`binaryvae datasets --verify` checks every file)"
        )
