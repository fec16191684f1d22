"""The feature network of the sample Fréchet distance: a small classifier, fitted once per
dataset and cached (protocol: `binaryvae.evaluation.fid`, step 1).

Fitting lives here because training is the only layer that calls ``backward()``/``step()``;
the evaluation layer receives the finished feature function (`feature_network`) from its
caller and never imports this module.

Recipe: an MLP 784-256-128-C (ReLU) trained on the dataset's *train* split with its labels
(grey levels x/255, Adam 1e-3, batch 128, at least 3 epochs and 80,000 image presentations,
seed 0, fixed shuffles). The features are the 128 ReLU activations of the last hidden layer.
Datasets without labels (toy) use the raw data as features.

Hermetic (a sample FD never depends on who filled the cache):
- Deterministic: the fit runs on one intra-op thread with deterministic algorithms
  (`deterministic_fit`, which restores the caller's settings), its initial weights from seed 0
  in a forked RNG, its shuffles from a local generator: the same bytes for any
  ``torch.set_num_threads`` of the caller on one machine. (Two threads give other weights,
  max |diff| 0.06 on mnist-mini: reductions split differently.)
- Keyed: cached in ~/.cache/binaryvae/classifiers/ (or `cache_dir`, or
  $BINARYVAE_CACHE/classifiers) under ``<dataset>-<fingerprint>.pt``, the fingerprint hashing
  everything that changes the weights or the stored accuracy: the recipe, `CLASSIFIER_VERSION`,
  the torch version, the CPU kernels torch dispatches to (AVX2, AVX512, ...), the dataset's name,
  train images and labels, test images and labels.
- Verified: the sha256 of the file's bytes is recorded at fit time in ``<file>.sha256``; a file
  whose bytes do not match it (a foreign or torn file, or one without the record) is never
  used: the classifier is fitted again and both files are rewritten (`atomic_write_bytes`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from binaryvae.storage import atomic_write_bytes

__all__ = [
    "CLASSIFIER_VERSION",
    "FeatureClassifier",
    "Features",
    "classifier_cache_dir",
    "dataset_fingerprint",
    "deterministic_fit",
    "feature_network",
    "fd_features",
    "fit_classifier",
    "load_or_train_classifier",
]


def fit_classifier(
    classifier: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
) -> nn.Module:
    """Minimise the cross-entropy of ``classifier(x)`` against labels with Adam, in place.

    Args:
        classifier: maps float ``[B, D]`` to logits ``[B, C]``.
        x: float32 ``[N, D]`` inputs; y: int64 ``[N]`` labels in ``[0, C)``.
        epochs: passes over the data, each in a fresh order drawn from ``seed``.

    Deterministic for a given seed and initial classifier (one generator drives the shuffles).
    Returns the classifier in eval mode.
    """
    opt = torch.optim.Adam(classifier.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    classifier.train()
    with torch.enable_grad():  # callers are usually under torch.no_grad()
        for _ in range(epochs):
            for idx in torch.randperm(len(x), generator=g).split(batch_size):
                loss = F.cross_entropy(classifier(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return classifier.eval()


@contextlib.contextmanager
def deterministic_fit() -> Iterator[None]:
    """Run the block on one intra-op thread with ``torch.use_deterministic_algorithms(True)``;
    the caller's thread count and determinism settings are restored afterwards (also on error).

    One thread makes every reduction add in one order, so a fit gives the same bytes whatever
    thread count the calling process uses (on one machine: other CPU kernels, other bytes).
    """
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.set_num_threads(threads)


RECIPE = "mlp-256-128/relu/adam1e-3/bs128/min3ep-80k/seed0/grey/v1"
# bump when anything about the fit changes that RECIPE does not name (2: one thread, checksum)
CLASSIFIER_VERSION = 2
HIDDEN = (256, 128)
BATCH = 128
MIN_EPOCHS = 3
MIN_PRESENTATIONS = 80_000


class FeatureClassifier(nn.Module):
    """MLP classifier whose last hidden layer gives the features: x [B, D] -> logits [B, C]."""

    def __init__(self, dim: int, classes: int, hidden: tuple[int, ...] = HIDDEN) -> None:
        super().__init__()
        sizes = (dim, *hidden)
        self.body = nn.Sequential(
            *[
                m
                for a, b in zip(sizes, sizes[1:], strict=False)
                for m in (nn.Linear(a, b), nn.ReLU())
            ]
        )
        self.head = nn.Linear(sizes[-1], classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer's activations: [B, D] -> [B, hidden[-1]]."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def classifier_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """`cache_dir`, else $BINARYVAE_CACHE/classifiers, else ~/.cache/binaryvae/classifiers."""
    if cache_dir is not None:
        return Path(cache_dir)
    root = os.environ.get("BINARYVAE_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "binaryvae") / "classifiers"


def _grey(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 grey levels in [0, 1]; float data unchanged: [N, D]."""
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


def _cpu_kernels() -> str:
    """The CPU kernel set torch dispatches to here ("AVX2", "AVX512", ...): other kernels add
    in another order, so they give other weights."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):  # an old or unusual build: name the build instead
        return "unknown"


def dataset_fingerprint(dataset: Any) -> str:
    """16 hex digits of sha256 of everything the cached classifier's bytes depend on: the
    recipe, `CLASSIFIER_VERSION`, the torch version, the CPU kernels, the dataset's name, its
    train images and labels, and its test images and labels (the stored accuracy)."""
    h = hashlib.sha256(RECIPE.encode())
    for part in (f"v{CLASSIFIER_VERSION}", torch.__version__, _cpu_kernels(), str(dataset.name)):
        h.update(b"\0" + part.encode())
    for t in (*_whole_training_split(dataset), getattr(dataset, "test_x", None),
              getattr(dataset, "test_y", None)):  # fmt: skip
        if t is None:
            h.update(b"\0none")
            continue
        t = t.contiguous().cpu()
        h.update(f"\0{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def _whole_training_split(dataset: Any) -> tuple[Any, Any]:
    """(images, labels) of the whole training split: a validation split held out of it
    (`binaryvae.data.with_validation`) put back, so that the feature classifier -- an
    evaluation instrument -- is the same for every run of the dataset, whatever it holds out."""
    x, y = dataset.train_x, dataset.train_y
    vx, vy = getattr(dataset, "valid_x", None), getattr(dataset, "valid_y", None)
    if vx is not None and vy is not None and y is not None:
        x, y = torch.cat([x, vx]), torch.cat([y, vy])
    return x, y


def _train(dataset: Any) -> tuple[FeatureClassifier, float | None]:
    """Train the feature classifier deterministically (module docstring)."""
    train_x, train_y = _whole_training_split(dataset)
    x, y = _grey(train_x), train_y.long()  # [N, D], [N]
    classes = int(y.max()) + 1
    with deterministic_fit():
        with torch.random.fork_rng(devices=[]):  # fixes the initial weights, leaves the RNG alone
            torch.manual_seed(0)
            clf = FeatureClassifier(x.shape[1], classes)
        epochs = max(MIN_EPOCHS, math.ceil(MIN_PRESENTATIONS / len(x)))
        fit_classifier(clf, x, y, epochs=epochs, batch_size=BATCH, lr=1e-3, seed=0)
        accuracy = None
        if getattr(dataset, "test_y", None) is not None:
            with torch.no_grad():
                pred = clf(_grey(dataset.test_x)).argmax(-1)
            accuracy = float((pred == dataset.test_y).float().mean())
    return clf, accuracy


def _checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _verified_bytes(path: Path) -> bytes | None:
    """The bytes of the cache file ``path`` if they match the sha256 recorded beside it at fit
    time; None when either file is missing or unreadable or they do not match."""
    try:
        data = path.read_bytes()
        recorded = _checksum_path(path).read_text(encoding="ascii").split()
    except (OSError, UnicodeDecodeError):
        return None
    if not recorded or hashlib.sha256(data).hexdigest() != recorded[0]:
        return None
    return data


def load_or_train_classifier(
    dataset: Any, cache_dir: str | os.PathLike | None = None
) -> tuple[FeatureClassifier, float | None, Path]:
    """The dataset's feature classifier: loaded from the cache, or trained once and cached.

    A cache file is used only if its bytes match the sha256 recorded at fit time (module
    docstring); otherwise the classifier is fitted again (deterministically: the same weights
    any other process fitting it here gets) and the file and its checksum are rewritten.
    Returns (classifier in eval mode on cpu, its test accuracy or None, the cache file).
    """
    path = classifier_cache_dir(cache_dir) / f"{dataset.name}-{dataset_fingerprint(dataset)}.pt"
    data = _verified_bytes(path)
    if data is not None:
        try:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            if state.get("recipe") != RECIPE or state.get("version") != CLASSIFIER_VERSION:
                raise ValueError("another recipe")
            clf = FeatureClassifier(int(state["dim"]), int(state["classes"]))
            clf.load_state_dict(state["model"])
            acc = state["accuracy"]
            return clf.eval(), (None if acc is None or acc < 0 else float(acc)), path
        except Exception:  # noqa: BLE001 - a checksummed file of another layout: fit it again
            pass
    clf, accuracy = _train(dataset)
    buffer = io.BytesIO()
    torch.save(
        {
            "model": clf.state_dict(),
            "dim": clf.body[0].in_features,
            "classes": clf.head.out_features,
            "accuracy": -1.0 if accuracy is None else accuracy,
            "recipe": RECIPE,
            "version": CLASSIFIER_VERSION,
        },
        buffer,
    )
    data = buffer.getvalue()
    # each file is replaced atomically; a reader between the two writes finds a mismatch and
    # fits again (the same bytes), so it never uses unverified weights
    atomic_write_bytes(path, data)
    atomic_write_bytes(_checksum_path(path), f"{hashlib.sha256(data).hexdigest()}\n".encode())
    return clf, accuracy, path


class Features(NamedTuple):
    """What `binaryvae.evaluation.sample_frechet_distance` measures in."""

    fn: Any  # x [N, D] -> float64 numpy [N, F]
    label: str  # "classifier:<cache file name>" or "raw"
    accuracy: float | None  # test accuracy of the feature classifier


def feature_network(dataset: Any, cache_dir: str | os.PathLike | None = None) -> Features:
    """The dataset's feature function (the cached classifier's last hidden layer, or the raw
    data for unlabelled or non-image datasets)."""
    labelled = (
        getattr(dataset, "train_y", None) is not None
        and getattr(dataset, "kind", "image") == "image"
    )
    if not labelled:
        return Features(lambda x: x.detach().double().cpu().numpy(), "raw", None)
    clf, accuracy, path = load_or_train_classifier(dataset, cache_dir)

    @torch.no_grad()
    def features(x: torch.Tensor) -> np.ndarray:
        parts = [clf.features(x[i : i + 1000].float().cpu()) for i in range(0, len(x), 1000)]
        return torch.cat(parts).double().numpy()  # [N, F]

    return Features(features, f"classifier:{path.name}", accuracy)


def fd_features(dataset: Any, fd_samples: int | None) -> Features | None:
    """The feature function of a run's summary sample FD from ``fd_samples`` generated images
    (`binaryvae.config.TrainConfig.summary_fd_samples`): None when it is 0 (no sample FD),
    else `feature_network` of ``dataset``."""
    return None if fd_samples == 0 else feature_network(dataset)
