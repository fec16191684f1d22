"""Sample quality for every family: the Fréchet distance between generated and test images in
the feature space of a small classifier trained once per dataset and cached.

Protocol (the number that puts autoencoder-gmm, which has no likelihood, on the same table as
the VAEs; lower is better; not a bound):
1. Features. For labelled image datasets, an MLP 784-256-128-C (ReLU) is trained on the
   dataset's *train* split with its labels (grey levels x/255, Adam 1e-3, batch 128, at least 3
   epochs and 80,000 image presentations, seed 0, fixed shuffles), once per dataset, and cached in
   ~/.cache/binaryvae/classifiers/ (or `cache_dir`, or $BINARYVAE_CACHE/classifiers) under
   `<dataset>-<fingerprint>.pt`, the fingerprint hashing the recipe, the train images and
   labels. Its test accuracy is stored beside it and reported. The features are the 128 ReLU
   activations of the last hidden layer. Datasets without labels (toy) use the raw data as
   features.
2. Generated images: `model.sample_codes(N)` (Bernoulli prior codes, N(0,1) draws, or GMM
   samples for autoencoder-gmm), decoded, shown as `model.decoder.mean` (pixel probabilities);
   N = the number of test images by default, with a fixed seed. Test images: the run's test
   tensor as given (grey levels or binarized).
3. A Gaussian is fitted to each feature set (mean, covariance with N - 1) and
   FD = |mu_1 - mu_2|^2 + tr(C_1 + C_2 - 2 (C_1 C_2)^{1/2}) (Fréchet 1957; Dowson & Landau 1982;
   Heusel et al. 2017), with tr (C_1 C_2)^{1/2} from the eigenvalues of C_1^{1/2} C_2 C_1^{1/2}.
FD depends on N (it is biased upward for small N): compare numbers computed with the same N.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from binaryvae.evaluation._common import eval_mode, model_device, seeded, to_model
from binaryvae.storage import atomic_write_bytes
from binaryvae.training.classifier import fit_classifier

__all__ = [
    "FDResult",
    "FeatureClassifier",
    "frechet_distance",
    "gaussian_stats",
    "load_or_train_classifier",
    "classifier_cache_dir",
    "dataset_fingerprint",
    "feature_fn",
    "generate_images",
    "sample_frechet_distance",
]

RECIPE = "mlp-256-128/relu/adam1e-3/bs128/min3ep-80k/seed0/grey/v1"
HIDDEN = (256, 128)
BATCH = 128
MIN_EPOCHS = 3
MIN_PRESENTATIONS = 80_000


@dataclass
class FDResult:
    """A Fréchet distance and how it was measured."""

    distance: float
    features: str  # "classifier:<file name>" or "raw"
    classifier_accuracy: float | None  # test accuracy of the feature classifier
    num_samples: int


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


def dataset_fingerprint(dataset: Any) -> str:
    """16 hex digits of sha256(recipe, name, train images, train labels)."""
    h = hashlib.sha256(RECIPE.encode())
    h.update(str(dataset.name).encode())
    for t in (dataset.train_x, dataset.train_y):
        h.update(t.contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def _train(dataset: Any) -> tuple[FeatureClassifier, float | None]:
    """Train the feature classifier deterministically (module docstring, step 1)."""
    x, y = _grey(dataset.train_x), dataset.train_y.long()  # [N, D], [N]
    classes = int(y.max()) + 1
    with seeded(0):  # fixes the initial weights
        clf = FeatureClassifier(x.shape[1], classes)
    epochs = max(MIN_EPOCHS, math.ceil(MIN_PRESENTATIONS / len(x)))
    fit_classifier(clf, x, y, epochs=epochs, batch_size=BATCH, lr=1e-3, seed=0)
    accuracy = None
    if getattr(dataset, "test_y", None) is not None:
        with torch.no_grad():
            pred = clf(_grey(dataset.test_x)).argmax(-1)
        accuracy = float((pred == dataset.test_y).float().mean())
    return clf, accuracy


def load_or_train_classifier(
    dataset: Any, cache_dir: str | os.PathLike | None = None
) -> tuple[FeatureClassifier, float | None, Path]:
    """The dataset's feature classifier: loaded from the cache, or trained once and cached.

    Returns (classifier in eval mode on cpu, its test accuracy or None, the cache file).
    """
    path = classifier_cache_dir(cache_dir) / f"{dataset.name}-{dataset_fingerprint(dataset)}.pt"
    if path.is_file():
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            clf = FeatureClassifier(int(state["dim"]), int(state["classes"]))
            clf.load_state_dict(state["model"])
            acc = state["accuracy"]
            return clf.eval(), (None if acc is None or acc < 0 else float(acc)), path
        except Exception:  # noqa: BLE001 - a torn or foreign cache file: fit it again below
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
        },
        buffer,
    )
    atomic_write_bytes(path, buffer.getvalue())  # a concurrent reader sees no half-written file
    return clf, accuracy, path


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean [F] and covariance [F, F] (denominator N - 1) of features [N, F], in float64."""
    f = np.asarray(features, dtype=np.float64)
    return f.mean(0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def frechet_distance(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to feature sets a [N, F] and b [M, F].

    FD = |mu_a - mu_b|^2 + tr C_a + tr C_b - 2 tr (C_a C_b)^{1/2}, where
    tr (C_a C_b)^{1/2} = sum sqrt(eig(C_a^{1/2} C_b C_a^{1/2})): the symmetric form, so eigh
    applies and no complex parts appear (scipy.linalg.sqrtm of C_a C_b gives the same trace).
    """
    a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else a
    b = b.detach().cpu().numpy() if isinstance(b, torch.Tensor) else b
    mu_a, cov_a = gaussian_stats(a)
    mu_b, cov_b = gaussian_stats(b)
    w, v = np.linalg.eigh(cov_a)
    sqrt_a = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T  # C_a^{1/2}
    middle = sqrt_a @ cov_b @ sqrt_a
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    fd = float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * tr_sqrt)
    return max(fd, 0.0)  # rounding can leave -1e-12 when the two sets coincide


def feature_fn(dataset: Any, cache_dir: str | os.PathLike | None = None):
    """(features: x [N, D] -> float64 numpy [N, F], label, accuracy) for the dataset."""
    labelled = (
        getattr(dataset, "train_y", None) is not None
        and getattr(dataset, "kind", "image") == "image"
    )
    if not labelled:
        return (lambda x: x.detach().double().cpu().numpy()), "raw", None
    clf, accuracy, path = load_or_train_classifier(dataset, cache_dir)

    @torch.no_grad()
    def features(x: torch.Tensor) -> np.ndarray:
        parts = [clf.features(x[i : i + 1000].float().cpu()) for i in range(0, len(x), 1000)]
        return torch.cat(parts).double().numpy()  # [N, F]

    return features, f"classifier:{path.name}", accuracy


@torch.no_grad()
def generate_images(model: Any, num: int, *, seed: int = 0, batch: int = 1000) -> torch.Tensor:
    """num images from the model's generative side: decoder.mean(decode(sample_codes)) [num, D]."""
    device = model_device(model)
    g = torch.Generator(device=device).manual_seed(seed)
    parts = []
    with seeded(seed, device), eval_mode(model):
        for start in range(0, num, batch):
            codes = model.sample_codes(min(batch, num - start), generator=g)  # [b, n]
            parts.append(model.decoder.mean(model.decode(codes.to(device))).float())
    return torch.cat(parts)


@torch.no_grad()
def sample_frechet_distance(
    model: Any,
    test_x: torch.Tensor,
    dataset: Any,
    *,
    num_samples: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
) -> FDResult:
    """FD between num_samples generated images and test_x [N, D] (module docstring protocol)."""
    num = num_samples or test_x.shape[0]
    features, label, accuracy = feature_fn(dataset, cache_dir)
    generated = generate_images(model, num, seed=seed)  # [num, D]
    fd = frechet_distance(features(generated), features(to_model(model, test_x)))
    return FDResult(fd, label, accuracy, num)
