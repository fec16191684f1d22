"""Tests of binaryvae.evaluation.fid: the Fréchet distance against scipy's sqrtm formula and
closed forms, and the cached, deterministic feature classifier."""

from __future__ import annotations

import hashlib
from pathlib import Path
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


# ------------------------------------------------------------------ a hermetic feature classifier
def _state_bytes(module: nn.Module) -> bytes:
    """The raw bytes of every tensor of the state dict, in order: equal iff bit-identical."""
    return b"".join(t.contiguous().numpy().tobytes() for t in module.state_dict().values())


def test_fit_runs_on_one_thread_whatever_the_caller_uses_and_restores_its_settings(monkeypatch):
    monkeypatch.setattr(clf_module, "MIN_PRESENTATIONS", 3000)
    seen = []
    real_fit = clf_module.fit_classifier

    def spy(*args, **kwargs):
        seen.append((torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()))
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(clf_module, "fit_classifier", spy)
    ds = labelled_dataset()
    before = torch.get_num_threads()
    weights = {}
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            weights[threads] = _state_bytes(clf_module._train(ds)[0])
            assert torch.get_num_threads() == threads  # the caller's count is back
            assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.set_num_threads(before)
    assert seen == [(1, True), (1, True)]
    assert weights[1] == weights[2]


@pytest.mark.slow
def test_mnist_mini_classifier_is_the_same_bytes_for_one_and_two_caller_threads():
    """The full recipe on mnist-mini (where two threads without `deterministic_fit` move the
    weights by up to 0.06): the same bytes whether the caller runs 1 or 2 threads."""
    from binaryvae.data import load_dataset

    ds = load_dataset("mnist-mini")
    before = torch.get_num_threads()
    weights = {}
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            weights[threads] = _state_bytes(clf_module._train(ds)[0])
    finally:
        torch.set_num_threads(before)
    assert weights[1] == weights[2]


def test_the_cache_key_names_torch_the_version_and_every_split(monkeypatch):
    ds = labelled_dataset()
    key = clf_module.dataset_fingerprint(ds)
    assert clf_module.dataset_fingerprint(labelled_dataset()) == key  # a pure function
    monkeypatch.setattr(torch, "__version__", "0.0.0-other")
    assert clf_module.dataset_fingerprint(ds) != key
    monkeypatch.undo()
    monkeypatch.setattr(clf_module, "CLASSIFIER_VERSION", clf_module.CLASSIFIER_VERSION + 1)
    assert clf_module.dataset_fingerprint(ds) != key
    monkeypatch.undo()
    monkeypatch.setattr(clf_module, "_cpu_kernels", lambda: "OTHER")
    assert clf_module.dataset_fingerprint(ds) != key
    monkeypatch.undo()
    for split in ("train_x", "train_y", "test_x", "test_y"):
        changed = labelled_dataset()
        t = getattr(changed, split).clone()
        t[0] = 1 - t[0] if split.endswith("y") else t[0] + 1
        setattr(changed, split, t)
        assert clf_module.dataset_fingerprint(changed) != key, split


def _foreign_classifier(path, ds) -> None:
    """Plant at ``path`` what another process might have left there: the same file name and
    layout, other weights (the same recipe fitted from another initialisation)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        other = clf_module.FeatureClassifier(ds.train_x.shape[1], 2)
    torch.save({"model": other.state_dict(), "dim": 16, "classes": 2, "accuracy": 0.99,
                "recipe": clf_module.RECIPE, "version": clf_module.CLASSIFIER_VERSION},
               path)  # fmt: skip


def test_a_foreign_file_under_the_cache_name_is_never_used(tmp_path, monkeypatch):
    monkeypatch.setattr(clf_module, "MIN_PRESENTATIONS", 3000)
    ds = labelled_dataset()
    clean, acc, path = load_or_train_classifier(ds, tmp_path)
    good_bytes = path.read_bytes()
    record = path.with_name(path.name + ".sha256")
    assert record.read_text().split()[0] == hashlib.sha256(good_bytes).hexdigest()
    for drop_record in (False, True):
        _foreign_classifier(path, ds)  # same name; its bytes do not match the recorded sha256
        if drop_record:
            record.unlink()  # an older binaryvae wrote no record: not verified, not used
        again, acc2, path2 = load_or_train_classifier(ds, tmp_path)
        assert path2 == path and acc2 == acc
        assert _state_bytes(again) == _state_bytes(clean)
        assert path.read_bytes() == good_bytes  # fitted again and rewritten, the record too
        assert record.read_text().split()[0] == hashlib.sha256(good_bytes).hexdigest()
    path.write_bytes(good_bytes[: len(good_bytes) // 2])  # a torn file
    assert _state_bytes(load_or_train_classifier(ds, tmp_path)[0]) == _state_bytes(clean)


def test_the_suite_uses_a_private_cache_not_the_users(private_binaryvae_cache):
    here = clf_module.classifier_cache_dir()
    assert here == private_binaryvae_cache / "classifiers"
    assert not here.is_relative_to(Path("~").expanduser())


def test_sample_fd_is_unaffected_by_a_foreign_classifier_in_the_home_cache(tmp_path, monkeypatch):
    """A classifier planted in ~/.cache/binaryvae/classifiers (HOME is a temporary folder here;
    $BINARYVAE_CACHE unset, so the code reads the home cache) under the exact name the code
    uses: the sample FD equals the one computed with a clean cache."""
    monkeypatch.setattr(clf_module, "MIN_PRESENTATIONS", 3000)
    ds = labelled_dataset()
    test_x = ds.test_x.float() / 255
    halves = torch.full((2, 16), -2.0)
    halves[0, :8] = 1.5
    halves[1, 8:] = 1.5
    clean = fid.sample_frechet_distance(
        Generator(halves), test_x, feature_network(ds, tmp_path / "clean"), num_samples=400
    )
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("BINARYVAE_CACHE")
    home_cache = tmp_path / "home" / ".cache" / "binaryvae" / "classifiers"
    assert clf_module.classifier_cache_dir() == home_cache
    home_cache.mkdir(parents=True)
    name = clean.features.removeprefix("classifier:")
    _foreign_classifier(home_cache / name, ds)
    foreign = torch.load(home_cache / name, weights_only=True)["model"]
    planted = fid.sample_frechet_distance(
        Generator(halves), test_x, feature_network(ds), num_samples=400
    )
    assert planted.features == clean.features
    assert planted.distance == clean.distance and planted.classifier_accuracy == (
        clean.classifier_accuracy
    )
    # and the planted weights were really different ones (the check above could not pass by luck)
    fitted = torch.load(home_cache / name, weights_only=True)["model"]
    assert any(not torch.equal(foreign[k], fitted[k]) for k in fitted)
