"""The dataset registry: name -> factory, and the in-memory :class:`Dataset` every factory returns.

- ``mnist-mini``: the MNIST test set shipped in the package (a 10k subset of MNIST), split
  8,000 / 2,000 (image i is a test image when i % 5 == 4); the offline default.
- ``mnist``, ``fashion-mnist``: 60,000 / 10,000 images, located or downloaded (``sources``).
- ``toy``: the model of the dissertation's section 5.1 (``toy``), real-valued, 8 dimensions,
  8,000 / 2,000 vectors drawn with a fixed seed.

A new dataset is one factory plus one ``DATASETS`` entry.

Every loaded dataset carries its *fingerprint* (`fingerprint_of`), which a run records in its
config.json so that evaluating, reporting or resuming it later refuses other data. One
definition for all: the sha256 of a short manifest with one line ``NAME SHA256`` per part of
the dataset, where SHA256 is the sha256 of the part's decompressed bytes. The parts of an IDX
dataset (mnist, fashion-mnist, mnist-mini) are its IDX files, named as in
`binaryvae.data.sources.FILES` (gzip or raw give the same fingerprint; mnist-mini's two files
are the MNIST test files); the parts of the generated toy data are its float32 arrays
``train_x`` and ``test_x`` (little-endian, C order). The files of mnist, fashion-mnist and
mnist-mini are also checked against the checksums binaryvae knows when they are loaded
(`binaryvae.data.sources.check_known`). Computing a fingerprint costs what reading the files
costs (the digests come from the bytes being parsed); `fingerprint_found`, which reads
without parsing, caches each file's digest by its identity and modification time.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from binaryvae.data import sources
from binaryvae.data.idx import read_image_label_pair, sha256_decompressed
from binaryvae.data.toy import TOY_DIM, TOY_SIGMA, sample_toy
from binaryvae.errors import BadInput

__all__ = [
    "Dataset",
    "DATASETS",
    "DatasetInfo",
    "fingerprint_found",
    "dataset_geometry",
    "fingerprint_of",
    "load_dataset",
    "MNIST_MINI_DIR",
    "MNIST_MINI_LABEL",
    "TOY_SEED",
    "TOY_SIZES",
    "mnist_mini_split",
]

MNIST_MINI_DIR = Path(__file__).parent / "mnist_mini"
MNIST_MINI_LABEL = "mnist-mini (10k subset of MNIST: its test set, split 8,000/2,000)"
TOY_SEED = 0  # the toy data are fixed; the training seed varies only the model and the order
TOY_SIZES = (8000, 2000)


@dataclass
class Dataset:
    """A dataset held in memory: training and test tensors plus what a reader must know."""

    name: str
    label: str  # what every reported number is labelled with
    train_x: torch.Tensor  # uint8 [N, 784] (images) or float32 [N, d] (real)
    test_x: torch.Tensor  # same dtype, [M, D]
    train_y: torch.Tensor | None = None  # int64 [N] class labels, or None
    test_y: torch.Tensor | None = None  # int64 [M]
    image_shape: tuple[int, int] | None = None  # (28, 28), or None for non-image data
    kind: str = "image"  # "image" (uint8 grey levels) or "real" (float32)
    source: str = ""  # where the files came from (a folder), or how the data were made
    params: dict[str, Any] = field(default_factory=dict)  # e.g. the toy model's sigma
    fingerprint: str = ""  # `fingerprint_of` its parts (module docstring)

    @property
    def data_dim(self) -> int:
        return int(self.train_x.shape[1])


@dataclass(frozen=True)
class DatasetInfo:
    """A registry entry: the factory and what can be said without loading.

    ``data_dim``, ``image_shape`` and ``kind`` are what building a model needs (see
    `dataset_geometry`): a trained run can be sampled without its data files.
    """

    factory: Callable[[str | Path | None, bool], Dataset]
    description: str
    sizes: tuple[int, int]  # (train, test)
    shape: str  # e.g. "28x28 uint8" or "8 float32"
    data_dim: int = 784  # values per example (D of x [N, D])
    image_shape: tuple[int, int] | None = (28, 28)  # None for non-image data
    kind: str = "image"  # "image" (uint8 grey levels) or "real" (float32)


def mnist_mini_split(n: int = 10000) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed 8,000 / 2,000 split of mnist-mini: (train indices, test indices), int64.

    Image i is a test image when i % 5 == 4: deterministic, independent of any library's random
    generator, and it draws test images from both halves of the MNIST test set (whose first
    and second 5,000 images come from different writer populations).
    """
    i = torch.arange(n)
    return i[i % 5 != 4], i[i % 5 == 4]


def fingerprint_of(parts: Iterable[tuple[str, str]]) -> str:
    """A dataset's fingerprint from its parts ``(name, hex sha256 of the decompressed bytes)``:
    the hex sha256 of the UTF-8 text holding one line ``f"{name} {sha256}\\n"`` per part, in
    order (module docstring)."""
    text = "".join(f"{name} {digest}\n" for name, digest in parts)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# mnist-mini's two files are MNIST's test files: their registry entries, fixed at import
_MNIST_MINI_KNOWN = tuple(f for f in sources.FILES["mnist"] if f.name.startswith("t10k-"))


def _mnist_mini_files() -> tuple[tuple[sources.RemoteFile, Path], ...]:
    """mnist-mini's two files (images, labels) with their registry entries."""
    return tuple((f, MNIST_MINI_DIR / (f.name + ".gz")) for f in _MNIST_MINI_KNOWN)


def _checked_parts(
    name: str, files: Iterable[tuple[sources.RemoteFile, Path]], digests: dict[str, str]
) -> list[tuple[str, str]]:
    """The fingerprint parts of files just read, each checked against the registry."""
    parts = []
    for file, path in files:
        digest = digests[str(path)]
        sources.check_known(name, file, path, digest)
        parts.append((file.name, digest))
    return parts


def _mnist_mini(data_dir: str | Path | None = None, download: bool = True) -> Dataset:
    files = _mnist_mini_files()
    digests: dict[str, str] = {}
    x, y, shape = read_image_label_pair(files[0][1], files[1][1], digests)
    parts = _checked_parts("mnist-mini", files, digests)
    train, test = mnist_mini_split(len(x))
    return Dataset(
        "mnist-mini",
        MNIST_MINI_LABEL,
        x[train],
        x[test],
        y[train],
        y[test],
        shape,
        "image",
        str(MNIST_MINI_DIR),
        fingerprint=fingerprint_of(parts),
    )


def _idx_dataset(name: str, label: str) -> Callable[[str | Path | None, bool], Dataset]:
    def factory(data_dir: str | Path | None = None, download: bool = True) -> Dataset:
        folder = sources.resolve(name, data_dir, download)
        files = sources.FILES[name]
        paths = [sources.find_file(folder, f) for f in files]
        if None in paths:  # pragma: no cover - resolve checked it
            raise BadInput(sources.missing_message(name, data_dir))
        tr_img, tr_lbl, te_img, te_lbl = paths
        digests: dict[str, str] = {}
        train_x, train_y, shape = read_image_label_pair(tr_img, tr_lbl, digests)
        test_x, test_y, test_shape = read_image_label_pair(te_img, te_lbl, digests)
        parts = _checked_parts(name, zip(files, paths, strict=True), digests)
        if test_shape != shape:
            raise BadInput(f"{te_img}: images are {test_shape}, training images are {shape}")
        return Dataset(name, label, train_x, test_x, train_y, test_y, shape, "image", str(folder),
                       fingerprint=fingerprint_of(parts))  # fmt: skip

    factory.__doc__ = f"Load {label} (located or downloaded; see binaryvae.data.sources)."
    return factory


def _toy_parts(train_x: torch.Tensor, test_x: torch.Tensor) -> list[tuple[str, str]]:
    return [
        (part, hashlib.sha256(x.numpy().astype("<f4", order="C").tobytes()).hexdigest())
        for part, x in (("train_x", train_x), ("test_x", test_x))
    ]


def _toy(data_dir: str | Path | None = None, download: bool = True) -> Dataset:
    g = torch.Generator().manual_seed(TOY_SEED)
    n_train, n_test = TOY_SIZES
    train = sample_toy(n_train, TOY_DIM, TOY_SIGMA, g)
    test = sample_toy(n_test, TOY_DIM, TOY_SIGMA, g)
    label = f"toy (diss. 5.1: z ~ Logistic(0,1), x|z ~ N(step(z), {TOY_SIGMA}^2), {TOY_DIM} dims)"
    return Dataset(
        "toy",
        label,
        train.x,
        test.x,
        None,
        None,
        None,
        "real",
        f"generated, seed {TOY_SEED}",
        {"sigma": TOY_SIGMA, "dim": TOY_DIM, "train_bits": train.bits, "test_bits": test.bits},
        fingerprint=fingerprint_of(_toy_parts(train.x, test.x)),
    )


DATASETS: dict[str, DatasetInfo] = {
    "mnist-mini": DatasetInfo(_mnist_mini, MNIST_MINI_LABEL, (8000, 2000), "28x28 uint8"),
    "mnist": DatasetInfo(
        _idx_dataset("mnist", "MNIST"),
        "MNIST (LeCun, Cortes and Burges)",
        (60000, 10000),
        "28x28 uint8",
    ),
    "fashion-mnist": DatasetInfo(
        _idx_dataset("fashion-mnist", "Fashion-MNIST"),
        "Fashion-MNIST (Zalando Research)",
        (60000, 10000),
        "28x28 uint8",
    ),
    "toy": DatasetInfo(
        _toy,
        f"toy model of diss. 5.1 (sigma={TOY_SIGMA}, seed {TOY_SEED})",
        TOY_SIZES,
        f"{TOY_DIM} float32",
        TOY_DIM,
        None,
        "real",
    ),
}


def dataset_geometry(name: str) -> tuple[int, tuple[int, int] | None, str]:
    """``(data_dim, image_shape, kind)`` of dataset ``name`` from the registry alone (no file is
    read): what `binaryvae.models.build_model` needs to rebuild a trained model."""
    try:
        info = DATASETS[name]
    except KeyError:
        raise BadInput(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}") from None
    return info.data_dim, info.image_shape, info.kind


def load_dataset(name: str, data_dir: str | Path | None = None, download: bool = True) -> Dataset:
    """Load dataset ``name`` into memory; BadInput for an unknown name or missing files."""
    try:
        info = DATASETS[name]
    except KeyError:
        raise BadInput(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}") from None
    return info.factory(data_dir, download)


# (path, device, inode, size, mtime, ctime) -> sha256 of the decompressed bytes
_DIGESTS: dict[tuple, str] = {}


def _file_digest(path: Path) -> str:
    """`sha256_decompressed` of ``path``, cached while the file is unchanged."""
    st = os.stat(path)
    key = (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256_decompressed(path)
    return _DIGESTS[key]


def fingerprint_found(name: str, data_dir: str | Path | None = None) -> tuple[str, str] | None:
    """``(fingerprint, source)`` of dataset ``name`` as it is found here now, without loading,
    checking or downloading it; None when its files are found nowhere (`sources.locate`).

    The same fingerprint as `load_dataset(name, data_dir).fingerprint` (module docstring) and
    the same ``source``, at the cost of reading the files once per process (cached).
    """
    dataset_geometry(name)  # BadInput for an unknown name
    if name == "toy":
        return _toy(None, False).fingerprint, f"generated, seed {TOY_SEED}"
    if name == "mnist-mini":
        files = _mnist_mini_files()
        return fingerprint_of((f.name, _file_digest(p)) for f, p in files), str(MNIST_MINI_DIR)
    found = sources.locate(name, data_dir)
    if found is None:
        return None
    folder = found[1]
    parts = []
    for file in sources.FILES[name]:
        path = sources.find_file(folder, file)
        if path is None:  # removed since locate() looked
            return None
        parts.append((file.name, _file_digest(path)))
    return fingerprint_of(parts), str(folder)
