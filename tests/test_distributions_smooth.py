"""G_beta (the non-elementary part of the smoothed StepLogistic's CDF) and the behaviour of
SmoothStepLogistic's bit probability, against scipy quadrature and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from scipy.special import expit, zeta

from _dist_refs import breakpoints, integrate, smooth_pdf
from binaryvae.distributions import (
    SmoothStepLogistic,
    StepLogistic,
    smooth_step_contraction,
    smooth_step_g,
    smooth_step_g0,
)

F64 = torch.float64


def max_relative_error(beta: float) -> float:
    """Largest relative error of `smooth_step_g` (float64) against scipy.integrate.quad at 400 z:
    200 uniform in [-60, 60], 200 uniform in [-3/beta, 3/beta] (the sigmoid's transition)."""
    import math

    import numpy as np
    from scipy.integrate import quad
    from scipy.special import log_expit

    from binaryvae.distributions import smooth_step_g

    rng = np.random.default_rng(0)
    zs = np.concatenate([rng.uniform(-60, 60, 200), rng.uniform(-3, 3, 200) / beta])

    def integrand(t):
        return math.exp(log_expit(t) + log_expit(-t) + log_expit(beta * t))

    worst = 0.0
    got = smooth_step_g(torch.as_tensor(zs, dtype=torch.float64), beta).numpy()
    for z, g in zip(zs, got, strict=True):
        if z <= 0:
            ref = quad(integrand, -np.inf, z, epsabs=0, epsrel=1e-13, limit=200)[0]
        else:  # upper tail by quad, to keep the reference's relative accuracy
            ref = 0.5 - quad(integrand, z, np.inf, epsabs=0, epsrel=1e-13, limit=200)[0]
        if ref > 1e-300:  # below, float64 is subnormal (G(z) ~ e^{(1 + beta) z})
            worst = max(worst, abs(g - ref) / ref)
    return worst


@pytest.mark.parametrize("beta", [0.3, 1.0, 3.0, 10.0, 40.0])
def test_g_beta_max_relative_error_against_quad(beta):
    """The documented accuracy: max relative error below 3e-10 on 400 points of [-60, 60] and
    [-3/beta, 3/beta] (float64)."""
    assert max_relative_error(beta) < 3e-10


def test_g_beta_closed_forms_and_reflection():
    # beta = 1: G(z) = ∫ sigma^2 (1 - sigma) dt = sigma(z)^2 / 2
    z = torch.linspace(-30, 30, 61, dtype=F64)
    assert torch.allclose(smooth_step_g(z, 1.0), torch.sigmoid(z) ** 2 / 2, rtol=1e-12)
    assert smooth_step_g0(1.0) == pytest.approx(1 / 8, rel=1e-14)
    # reflection G(-z) = sigma(-z) - 1/2 + G(z) and the limit G(inf) = 1/2
    for beta in (0.5, 10.0):
        lhs = smooth_step_g(-z, beta)
        rhs = torch.sigmoid(-z) - 0.5 + smooth_step_g(z, beta)
        assert torch.allclose(lhs, rhs, atol=1e-15)
        assert float(smooth_step_g(torch.tensor(800.0, dtype=F64), beta)) == 0.5


def test_cdf_identity_against_density():
    """F(z) = (2 - alpha) sigma(z) + (2 alpha - 2) G_beta(z) is the integral of eq. 5.8."""
    alpha, beta = 0.35, 7.0
    for z in (-4.0, -0.2, 0.0, 0.13, 2.5):
        want = integrate(lambda t: smooth_pdf(t, alpha, beta), hi=z, points=breakpoints(beta))
        g = float(smooth_step_g(torch.tensor(z, dtype=F64), beta))
        assert (2 - alpha) * expit(z) + (2 * alpha - 2) * g == pytest.approx(want, rel=1e-10)


def test_contraction_kappa():
    """P(z > 0) = 1/2 + kappa(beta) (alpha/2 - 1/2), kappa = 1 - 4 G_beta(0)."""
    assert smooth_step_contraction(1.0) == pytest.approx(0.5, rel=1e-13)
    for beta in (20.0, 50.0, 200.0):
        asym = 1 - math.log(2) / beta + 3 * zeta(3) / (8 * beta**3)
        assert smooth_step_contraction(beta) == pytest.approx(asym, abs=2 / beta**5)
    g0 = quad(lambda s: expit(0.2 * math.log(s / (1 - s))), 0, 0.5, epsabs=0, epsrel=1e-13)[0]
    assert smooth_step_g0(0.2) == pytest.approx(g0, rel=1e-10)
    kappas = [smooth_step_contraction(b) for b in (0.1, 0.5, 1.0, 3.0, 10.0, 100.0)]
    assert all(0 < k < 1 for k in kappas) and kappas == sorted(kappas)
    assert smooth_step_contraction(10.0) == pytest.approx(0.93113, abs=1e-5)


@pytest.mark.parametrize("alpha", [0.1, 0.8, 1.0, 1.7])
def test_positive_probs_moves_from_half_to_alpha_over_two(alpha):
    a = torch.tensor(alpha, dtype=F64)
    for beta in (0.2, 2.0, 10.0, 50.0):
        d = SmoothStepLogistic(alpha=a, beta=beta)
        above = integrate(
            lambda z, b=beta: smooth_pdf(z, alpha, b), lo=0.0, points=breakpoints(beta)
        )
        assert float(d.positive_probs) == pytest.approx(above, rel=1e-10)
        assert float(d.positive_probs) == pytest.approx(
            0.5 + smooth_step_contraction(beta) * (alpha / 2 - 0.5)
        )
        # probs is the parameter (alpha / 2 = sigmoid(logits), as in torch), not P(z > 0)
        assert float(d.probs) == pytest.approx(alpha / 2, rel=1e-12)
        assert float(d.probs) == pytest.approx(float(torch.sigmoid(d.logits)), rel=1e-12)
    # large beta: the StepLogistic; small beta: the Logistic(0, 1)
    big = SmoothStepLogistic(alpha=a, beta=1e4)
    assert float(big.positive_probs) == pytest.approx(alpha / 2, abs=1e-4)
    z = torch.linspace(-5, 5, 11, dtype=F64)
    z = z[z.abs() > 0.01]
    assert torch.allclose(big.log_prob(z), StepLogistic(alpha=a).log_prob(z), atol=1e-6)
    small = SmoothStepLogistic(alpha=a, beta=1e-3)
    assert float(small.positive_probs) == pytest.approx(0.5, abs=1e-3)


def test_sampled_bit_frequency_matches_positive_probs():
    """Fraction of positive samples against positive_probs (binomial, 200k draws: 5 sd =
    0.0056)."""
    d = SmoothStepLogistic(alpha=torch.tensor(1.6, dtype=F64), beta=4.0)
    torch.manual_seed(0)
    frac = float((d.sample((200_000,)) > 0).double().mean())
    p = float(d.positive_probs)
    assert abs(frac - p) < 5 * math.sqrt(p * (1 - p) / 200_000)
    assert abs(p - 0.8) > 0.01  # and visibly not alpha / 2 at this beta


def test_table_is_cached_and_device_agnostic():
    z = torch.tensor([-1.0, 0.5])
    assert smooth_step_g(z, 10.0).dtype == torch.float32
    assert np.allclose(smooth_step_g(z, 10.0).numpy(), smooth_step_g(z.double(), 10.0).numpy())
    with pytest.raises(ValueError):
        SmoothStepLogistic(alpha=1.0, beta=0.0)
