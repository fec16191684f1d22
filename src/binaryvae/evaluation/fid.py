"""Sample quality for every family: the Fréchet distance between generated and test images in
the feature space of a small classifier trained once per dataset and cached.

Protocol (the number that puts autoencoder-gmm, which has no likelihood, on the same table as
the VAEs; lower is better; not a bound):
1. Features. For labelled image datasets, the 128 ReLU activations of the last hidden layer
   of a small classifier (784-256-128-C) trained once per dataset on its train split and cached
   (recipe and cache: `binaryvae.training.classifier`, which the caller uses to build the
   feature function; its test accuracy is reported). Datasets without labels (toy) use the raw
   data as features.
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

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from binaryvae.evaluation._common import eval_mode, model_device, seeded, to_model

__all__ = [
    "FDResult",
    "frechet_distance",
    "gaussian_stats",
    "generate_images",
    "sample_frechet_distance",
]

@dataclass
class FDResult:
    """A Fréchet distance and how it was measured."""

    distance: float
    features: str  # "classifier:<file name>" or "raw"
    classifier_accuracy: float | None  # test accuracy of the feature classifier
    num_samples: int


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
    features: Any,
    *,
    num_samples: int | None = None,
    seed: int = 0,
) -> FDResult:
    """FD between num_samples generated images and test_x [N, D] (module docstring protocol).

    ``features``: ``(fn, label, accuracy)`` with fn mapping images [N, D] to a float64 numpy
    [N, F] (`binaryvae.training.classifier.feature_network` builds it: fitting the network is
    training's business, measuring in it is evaluation's).
    """
    fn, label, accuracy = features
    num = num_samples or test_x.shape[0]
    generated = generate_images(model, num, seed=seed)  # [num, D]
    fd = frechet_distance(fn(generated), fn(to_model(model, test_x)))
    return FDResult(fd, label, accuracy, num)
