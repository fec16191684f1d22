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

import dataclasses
import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from binaryvae.data import sources
from binaryvae.data.idx import read_idx_header, read_image_label_pair, sha256_decompressed
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
    "shape_text",
    "MNIST_MINI_DIR",
    "MNIST_MINI_LABEL",
    "TOY_SEED",
    "TOY_SIZES",
    "mnist_mini_split",
    "with_validation",
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
    # the validation split held out of the training split's end (`with_validation`), or None
    valid_x: torch.Tensor | None = None
    valid_y: torch.Tensor | None = None

    @property
    def data_dim(self) -> int:
        return int(self.train_x.shape[1])


@dataclass(frozen=True)
class DatasetInfo:
    """A registry entry: the factory and what can be said without loading.

    ``data_dim``, ``image_shape`` and ``kind`` are what building a model needs (see
    `dataset_geometry`): a trained run can be sampled without its data files. ``factory``
    takes ``(data_dir, download)`` and, optionally, ``image_shape=`` the shape its images must
    have (`load_dataset`).
    """

    factory: Callable[..., Dataset]
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


def with_validation(dataset: Dataset, n: int) -> Dataset:
    """``dataset`` with its last ``n`` training examples held out as the validation split
    (``valid_x``/``valid_y``) and the first N - n as the training split, in file order (the
    reference code's ``train[:50000]`` / ``train[50000:]`` for n = 10,000 of 60,000). A
    dataset already split is first put back together, so the result depends on ``n`` alone;
    n = 0 gives the whole training split and no validation split. The tensors are views, the
    fingerprint (of the files) unchanged. BadInput unless 0 <= n < the training examples."""
    train_x, train_y = dataset.train_x, dataset.train_y
    if dataset.valid_x is not None:
        train_x = torch.cat([train_x, dataset.valid_x])
        if train_y is not None and dataset.valid_y is not None:
            train_y = torch.cat([train_y, dataset.valid_y])
    total = int(train_x.shape[0])
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < total:
        raise BadInput(
            f"{dataset.name}: validation must hold 0 to {total - 1} of its {total} training "
            f"examples, got {n!r}"
        )
    if n == 0:
        if dataset.valid_x is None:
            return dataset
        return dataclasses.replace(dataset, train_x=train_x, train_y=train_y,
                                   valid_x=None, valid_y=None)  # fmt: skip
    if dataset.valid_x is not None and int(dataset.valid_x.shape[0]) == n:
        return dataset
    keep = total - n
    return dataclasses.replace(
        dataset,
        train_x=train_x[:keep],
        valid_x=train_x[keep:],
        train_y=None if train_y is None else train_y[:keep],
        valid_y=None if train_y is None else train_y[keep:],
    )


def shape_text(shape: tuple[int, ...] | None) -> str:
    """``(28, 29)`` -> ``"28x29"``; None (no images) -> ``"not images"``."""
    return "x".join(map(str, shape)) if shape else "not images"


def _expect_shape(name: str, shape, image_shape) -> None:
    """BadInput when a dataset's own ``shape`` is not the ``image_shape`` asked for."""
    if image_shape is not None and tuple(shape or ()) != tuple(image_shape):
        raise BadInput(
            f"{name}: images are {shape_text(shape)}, but the model is built for "
            f"{shape_text(tuple(image_shape))} images"
        )


def _check_headers(name: str, folder, images: tuple, image_shape) -> None:
    """Before any data are read, from the headers of the ``images`` files (train, test): the
    declared image shape against ``image_shape`` (naming both), and the memory the dataset
    needs -- its images as stored and their labels (a byte each in the file, int64 in memory),
    plus the largest images file once more while it is parsed -- against what the machine has.
    A header that cannot be read, or is not of images, is left to the reader to name (in the
    order the files are read); the labels files are read and checked with their images."""
    from binaryvae.data.idx import IdxError
    from binaryvae.resources import check_memory

    declared = []
    for path in images:
        try:
            dtype, shape = read_idx_header(path)
        except IdxError:
            return
        if len(shape) != 3:
            return
        _expect_shape(str(path), shape[1:], image_shape)
        declared.append((shape[0] * shape[1] * shape[2] * dtype.itemsize, shape[0]))
    need = sum(b + n * (1 + 8) for b, n in declared) + max(b for b, _ in declared)
    check_memory(need, f"loading {name} from {folder}",
                 f"its images files declare {sum(b for b, _ in declared):,} bytes")  # fmt: skip


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


# mnist-mini as read and checked, per process: {the two files' (path, size, mtime, inode):
# (x, y, image shape, fingerprint parts)}. A file changed on disk has another key, so it is
# read and checked against the registry again; the Dataset gets copies (index tensors).
_MNIST_MINI_READ: dict[tuple, tuple] = {}


def _mnist_mini_arrays() -> tuple[torch.Tensor, torch.Tensor, tuple[int, int], list]:
    """mnist-mini's images, labels, image shape and fingerprint parts, read and checked once
    per process while its files stay as they are (`_MNIST_MINI_READ`)."""
    files = _mnist_mini_files()
    stats = [path.stat() for _, path in files]
    key = tuple((str(path), st.st_size, st.st_mtime_ns, st.st_ino)
                for (_, path), st in zip(files, stats, strict=True))  # fmt: skip
    if key not in _MNIST_MINI_READ:
        digests: dict[str, str] = {}
        x, y, shape = read_image_label_pair(files[0][1], files[1][1], digests)
        parts = _checked_parts("mnist-mini", files, digests)
        _MNIST_MINI_READ.clear()
        _MNIST_MINI_READ[key] = (x, y, shape, parts)
    return _MNIST_MINI_READ[key]


def _mnist_mini(
    data_dir: str | Path | None = None, download: bool = True, image_shape=None
) -> Dataset:
    _expect_shape("mnist-mini", (28, 28), image_shape)
    x, y, shape, parts = _mnist_mini_arrays()
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


def _idx_dataset(name: str, label: str) -> Callable[..., Dataset]:
    def factory(
        data_dir: str | Path | None = None, download: bool = True, image_shape=None
    ) -> Dataset:
        folder = sources.resolve(name, data_dir, download)
        files = sources.FILES[name]
        paths = [sources.find_file(folder, f) for f in files]
        if None in paths:  # pragma: no cover - resolve checked it
            raise BadInput(sources.missing_message(name, data_dir))
        _check_headers(name, folder, (paths[0], paths[2]), image_shape)
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


def _toy(data_dir: str | Path | None = None, download: bool = True, image_shape=None) -> Dataset:
    _expect_shape("toy", None, image_shape)
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


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    download: bool = True,
    *,
    image_shape: tuple[int, int] | None = None,
) -> Dataset:
    """Load dataset ``name`` into memory; BadInput for an unknown name or missing files.

    ``image_shape``: the (H, W) every image must have (what the model is built for); files
    declaring another shape are refused from their headers, before their data are read. None
    accepts the files' own shape. Files whose declared sizes would not fit in the memory
    available now are refused likewise (`binaryvae.resources`).
    """
    try:
        info = DATASETS[name]
    except KeyError:
        raise BadInput(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}") from None
    if image_shape is None:
        return info.factory(data_dir, download)
    return info.factory(data_dir, download, image_shape=tuple(image_shape))


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
