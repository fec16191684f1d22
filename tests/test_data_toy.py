"""The toy model of diss. 5.1: sample statistics vs analytic values, exact posterior vs scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from binaryvae.data import load_dataset, sample_toy, toy_log_posterior, toy_log_px
from binaryvae.data import toy_posterior_probs as post


def test_toy_dataset_shape_and_determinism():
    ds = load_dataset("toy")
    assert ds.kind == "real" and ds.image_shape is None and ds.train_y is None
    assert ds.train_x.shape == (8000, 8) and ds.test_x.shape == (2000, 8)
    assert ds.train_x.dtype == torch.float32
    assert torch.equal(load_dataset("toy").train_x, ds.train_x)  # fixed seed
    assert not torch.equal(ds.train_x[:2000], ds.test_x)


def test_toy_statistics_match_the_model():
    # 10 * 8000 * 8 = 640k draws; tolerances are about 5 standard errors.
    s = sample_toy(80000, dim=8, sigma=0.5, generator=torch.Generator().manual_seed(0))
    x, bits = s.x.double(), s.bits.double()
    n = x.numel()
    # E[x] = 1/2; sd(x) = sqrt(0.5) -> se = 0.0009
    assert abs(x.mean().item() - 0.5) < 0.005
    # P(step(z) = 1) = 1/2 -> se = 0.0006
    assert abs(bits.mean().item() - 0.5) < 0.003
    # Var[x] = sigma^2 + Var[step] = 0.25 + 0.25, per dimension (se per dim about 0.0018)
    var = x.var(0)
    assert torch.allclose(var, torch.full_like(var, 0.5), atol=0.01)
    # the noise is Gaussian with sd 0.5 around the step
    resid = x - bits
    assert abs(resid.std().item() - 0.5) < 0.003
    assert abs(stats.kurtosis(resid.reshape(-1).numpy())) < 0.05
    # dimensions are independent: off-diagonal correlations are about 1/sqrt(80000) = 0.0035
    corr = torch.corrcoef(x.T)
    assert (corr - torch.eye(8, dtype=corr.dtype)).abs().max() < 0.02
    assert n == 640000


def test_exact_log_px_is_the_gaussian_mixture():
    x = torch.linspace(-2, 3, 41, dtype=torch.float64).reshape(-1, 1)
    ref = np.log(0.5 * stats.norm.pdf(x.numpy(), 0, 0.5) + 0.5 * stats.norm.pdf(x.numpy(), 1, 0.5))
    np.testing.assert_allclose(toy_log_px(x).numpy(), ref[:, 0], rtol=1e-10)
    # sums over dimensions
    xx = torch.randn(5, 3, dtype=torch.float64)
    assert torch.allclose(toy_log_px(xx), sum(toy_log_px(xx[:, i:i + 1]) for i in range(3)))
    # integrates to 1 (1 dimension)
    total, _ = integrate.quad(lambda v: math.exp(toy_log_px(torch.tensor([v])).item()), -8, 9)
    assert abs(total - 1) < 1e-8


@pytest.mark.parametrize("x", [-1.0, 0.0, 0.5, 1.0, 2.5])
def test_exact_posterior_integrates_and_matches_bayes(x):
    xt = torch.tensor([x], dtype=torch.float64)
    p1 = post(xt).item()
    n0, n1 = stats.norm.pdf(x, 0, 0.5), stats.norm.pdf(x, 1, 0.5)
    assert abs(p1 - n1 / (n0 + n1)) < 1e-12

    def density(z: float) -> float:
        return math.exp(toy_log_posterior(torch.tensor([z], dtype=torch.float64), xt).item())

    mass_neg, _ = integrate.quad(density, -np.inf, 0)
    mass_pos, _ = integrate.quad(density, 0, np.inf)
    assert abs(mass_neg + mass_pos - 1) < 1e-8
    assert abs(mass_pos - p1) < 1e-8
    # Bayes' rule pointwise (diss. eq. 5.1): p(x|z) p(z) / p(x)
    z = 0.7
    bayes = stats.norm.pdf(x, 1, 0.5) * stats.logistic.pdf(z) / math.exp(toy_log_px(xt).item())
    assert abs(density(z) - bayes) < 1e-10


def test_posterior_is_calibrated_on_samples():
    s = sample_toy(50000, dim=4, generator=torch.Generator().manual_seed(1))
    p = post(s.x.double())
    bits = s.bits.double()
    # E[bit - P(bit | x)] = 0 and uncorrelated with any function of x (se about 0.0012)
    assert abs((bits - p).mean().item()) < 0.006
    assert abs(((bits - p) * (s.x.double() - 0.5)).mean().item()) < 0.006
    for lo, hi in [(-0.5, 0.2), (0.2, 0.8), (0.8, 1.5)]:
        sel = (s.x >= lo) & (s.x < hi)
        assert abs(bits[sel].mean().item() - p[sel].mean().item()) < 0.01
