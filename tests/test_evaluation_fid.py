"""Tests of binaryvae.evaluation.fid: the Fréchet distance against scipy's sqrtm formula and
closed forms, and the cached, deterministic feature classifier."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from binaryvae.evaluation import fid
from binaryvae.evaluation.fid import frechet_distance
from binaryvae.training import classifier as clf_module
from binaryvae.training.classifier import feature_network, load_or_train_classifier


def reference_fd(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook formula with scipy.linalg.sqrtm(C_a C_b) (Heusel et al. 2017)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covmean))


def correlated(n: int, f: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, f)) @ rng.normal(size=(f, f)) + rng.normal(size=f)


def test_fd_of_a_set_with_itself_is_zero():
    a = correlated(500, 12, 0)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)


def test_fd_matches_scipy_reference_formula():
    a, b = correlated(800, 10, 1), correlated(600, 10, 2)
    assert frechet_distance(a, b) == pytest.approx(reference_fd(a, b), rel=1e-7)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)


def test_fd_of_a_shifted_set_is_the_squared_shift():
    a = correlated(300, 6, 3)
    shift = np.arange(6.0)
    assert frechet_distance(a, a + shift) == pytest.approx(float((shift**2).sum()), rel=1e-9)
    # torch tensors are accepted as well
    assert frechet_distance(torch.from_numpy(a), torch.from_numpy(a + shift)) == pytest.approx(55)


def labelled_dataset(name: str = "tiny") -> SimpleNamespace:
    """Two classes of 16-pixel uint8 'images': bright left half or bright right half."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (400,), generator=g)
    x = torch.randint(0, 60, (400, 16), generator=g)
    x[y == 0, :8] += 190
    x[y == 1, 8:] += 190
    x = x.to(torch.uint8)
    return SimpleNamespace(
        name=name, kind="image", train_x=x[:300], train_y=y[:300], test_x=x[300:], test_y=y[300:]
    )


def test_classifier_is_trained_once_cached_and_deterministic(tmp_path, monkeypatch):
    monkeypatch.setattr(clf_module, "MIN_PRESENTATIONS", 3000)  # a tiny dataset needs few steps
    ds = labelled_dataset()
    clf, acc, path = load_or_train_classifier(ds, tmp_path / "a")
    assert path.is_file() and path.name.startswith("tiny-") and acc > 0.95
    again, acc2, path2 = load_or_train_classifier(ds, tmp_path / "a")  # from the cache
    assert path2 == path and acc2 == acc
    other, _, _ = load_or_train_classifier(ds, tmp_path / "b")  # trained again: same weights
    for p, q, r in zip(
        clf.state_dict().values(),
        again.state_dict().values(),
        other.state_dict().values(),
        strict=True,
    ):
        assert torch.equal(p, q) and torch.equal(p, r)
    changed = labelled_dataset()
    changed.train_y = 1 - changed.train_y
    assert clf_module.dataset_fingerprint(changed) != clf_module.dataset_fingerprint(ds)


class Generator(nn.Module):
    """A generative stand-in: Bernoulli prior codes decoded to pixel logits."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.latent_dim = 1
        self.table = nn.Parameter(logits)  # [2, D]: the image of code 0 and of code 1
        self.decoder = SimpleNamespace(kind="bernoulli", mean=torch.sigmoid)

    def sample_codes(self, num, generator=None):
        return torch.bernoulli(torch.full((num, 1), 0.5), generator=generator)

    def decode(self, codes):
        return self.table[codes[..., 0].long()]


def test_sample_fd_ranks_a_faithful_generator_above_a_blank_one(tmp_path, monkeypatch):
    monkeypatch.setattr(clf_module, "MIN_PRESENTATIONS", 3000)
    ds = labelled_dataset()
    test_x = ds.test_x.float() / 255
    halves = torch.full((2, 16), -2.0)
    halves[0, :8] = 1.5
    halves[1, 8:] = 1.5
    features = feature_network(ds, tmp_path)
    good = fid.sample_frechet_distance(Generator(halves), test_x, features, num_samples=400)
    blank = fid.sample_frechet_distance(
        Generator(torch.full((2, 16), -3.0)), test_x, features, num_samples=400
    )
    assert good.features.startswith("classifier:") and good.classifier_accuracy > 0.95
    assert 0 <= good.distance < blank.distance
    raw = fid.sample_frechet_distance(
        Generator(halves),
        test_x,
        feature_network(SimpleNamespace(name="toy", kind="real", train_y=None)),
        num_samples=400,
    )
    assert raw.features == "raw" and raw.classifier_accuracy is None and raw.num_samples == 400
