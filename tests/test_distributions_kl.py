"""KL divergences (registered with torch), relaxations and Bernoulli probabilities, against
scipy quadrature, closed forms and torch's own implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch.distributions import kl_divergence
from torch.distributions.relaxed_bernoulli import LogitRelaxedBernoulli

from _dist_refs import breakpoints, integrate, logistic_pdf, smooth_pdf, step_pdf
from binaryvae.distributions import (
    Logistic,
    SmoothStepLogistic,
    StepLogistic,
    bernoulli_kl_to_half,
    bernoulli_logits_from_gaussian,
    bernoulli_probs_from_concrete,
    bernoulli_probs_from_gaussian,
    bernoulli_probs_from_logistic,
    bernoulli_probs_from_step_logistic,
    binary_concrete,
    binary_concrete_logit_log_prob,
    binary_concrete_rsample,
    logistic_kl_equal_scale,
    steep_sigmoid,
)

F64 = torch.float64


def _t(v):
    return torch.tensor(v, dtype=F64)


def _kl_quad(qpdf, ppdf, points):
    def f(z):
        a = qpdf(z)
        return a * (math.log(a) - math.log(ppdf(z))) if a > 0 else 0.0

    return integrate(f, points=points)


@pytest.mark.parametrize(
    "m1,s1,m2,s2",
    [(0, 1, 0, 1), (1, 1, 0, 1), (10, 1, 0, 1), (-3.3, 2.0, 0.4, 2.0), (0.7, 0.4, -0.3, 1.7),
     (-2, 3.0, 1.0, 0.5), (5.0, 1.0, 0.0, 1.2)],
)  # fmt: skip
def test_kl_logistic_logistic(m1, s1, m2, s2):
    got = float(kl_divergence(Logistic(_t(m1), _t(s1)), Logistic(_t(m2), _t(s2))))
    want = _kl_quad(lambda z: logistic_pdf(z, m1, s1), lambda z: logistic_pdf(z, m2, s2), [m1, m2])
    assert got == pytest.approx(want, rel=1e-9, abs=1e-13)


def test_kl_logistic_equal_scale_closed_form_and_series():
    d = torch.tensor([0.0, 1e-8, 0.05, 0.0999, 0.1001, 1.0, 10.0, -10.0, 50.0], dtype=F64)
    got = logistic_kl_equal_scale(d)
    with torch.no_grad():
        direct = d * (1 / torch.tanh(d / 2)) - 2  # d coth(d/2) - 2 (cancels near 0)
    big = d.abs() > 0.5
    assert torch.allclose(got[big], direct[big], rtol=1e-14)
    small = ~big
    series = d**2 / 6 - d**4 / 360 + d**6 / 15120
    # the series branch (|d| < 0.1) and, just above the switch, the direct branch (1e-11)
    assert torch.allclose(got[small], series[small], rtol=1e-11, atol=0)
    mid = (d.abs() > 0.01) & ~big  # where the direct formula still has 1e-10 relative accuracy
    assert torch.allclose(got[mid], direct[mid], rtol=1e-9)
    # Table 5.1's Logistic column: 0.1640 at mu = 1, 8.0009 at mu = 10
    assert float(got[5]) == pytest.approx(1 / math.tanh(0.5) - 2, rel=1e-14)
    assert float(got[6]) == pytest.approx(10 / math.tanh(5) - 2, rel=1e-14)  # 8.000908


def test_kl_logistic_gradients():
    m = _t(0.7).requires_grad_(True)
    s = _t(0.9).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda m, s: kl_divergence(Logistic(m, s), Logistic(_t(-0.2), _t(1.3))), (m, s)
    )
    # equal fixed scales use the closed form; its gradient in loc is d'(d coth(d/2) - 2)
    assert torch.autograd.gradcheck(
        lambda m: kl_divergence(Logistic(m, 1.0), Logistic(0.0, 1.0)), (m,)
    )


@pytest.mark.parametrize("x", [-30.0, -7.0, -1.0, 0.0, 0.4, 3.0, 12.0, 30.0])
def test_kl_steplogistic_standard_is_bernoulli_kl(x):
    """Eq. 5.5 against quadrature of the densities and the Bernoulli KL from torch."""
    q = StepLogistic(logits=_t(x))
    got = float(kl_divergence(q, Logistic(0.0, 1.0)))
    p = float(torch.sigmoid(_t(x)))
    bern = float(
        kl_divergence(
            torch.distributions.Bernoulli(logits=_t(x)), torch.distributions.Bernoulli(_t(0.5))
        )
    )
    assert got == pytest.approx(bern, rel=1e-12, abs=1e-15)
    alpha = 2 * p
    if abs(x) < 20:  # eq. 5.5 as printed, where alpha is representable away from 0 and 2
        eq55 = ((2 - alpha) * math.log(2 - alpha) + alpha * math.log(alpha)) / 2
        assert got == pytest.approx(eq55, rel=1e-9, abs=1e-15)
        want = _kl_quad(lambda z: step_pdf(z, alpha), logistic_pdf, [0.0])
        assert got == pytest.approx(want, rel=1e-8, abs=1e-13)


@pytest.mark.parametrize("x,m,s", [(1.5, -0.3, 1.7), (-4.5, 2.0, 0.3), (0.2, 0.0, 2.0)])
def test_kl_steplogistic_general_logistic(x, m, s):
    alpha = 2 * float(torch.sigmoid(_t(x)))
    got = float(kl_divergence(StepLogistic(logits=_t(x)), Logistic(_t(m), _t(s))))
    want = _kl_quad(lambda z: step_pdf(z, alpha), lambda z: logistic_pdf(z, m, s), [0.0, m])
    assert got == pytest.approx(want, rel=1e-8)


@pytest.mark.parametrize(
    "alpha,beta,m,s",
    [(1.5, 10.0, 0.0, 1.0), (0.1, 10.0, 0.0, 1.0), (1.99, 3.0, 0.0, 1.0), (0.7, 0.5, 0.0, 1.0),
     (1.2, 40.0, 0.0, 1.0), (1.5, 10.0, 0.5, 1.4), (0.3, 2.0, -2.0, 0.6)],
)  # fmt: skip
def test_kl_smoothsteplogistic(alpha, beta, m, s):
    q = SmoothStepLogistic(alpha=_t(alpha), beta=beta)
    got = float(kl_divergence(q, Logistic(_t(m), _t(s))))
    want = _kl_quad(
        lambda z: smooth_pdf(z, alpha, beta),
        lambda z: logistic_pdf(z, m, s),
        breakpoints(beta, extra=(m,)),
    )
    assert got == pytest.approx(want, rel=1e-9, abs=1e-13)


def test_kls_are_differentiable():
    x = _t(0.8).requires_grad_(True)
    for make in (
        lambda x: StepLogistic(logits=x),
        lambda x: SmoothStepLogistic(logits=x, beta=10.0),
    ):
        for p in (Logistic(0.0, 1.0), Logistic(_t(0.3), _t(1.4))):
            assert torch.autograd.gradcheck(
                lambda x, make=make, p=p: kl_divergence(make(x), p), (x,)
            )
    # the closed form's gradient is the Bernoulli KL's: p q x
    (g,) = torch.autograd.grad(kl_divergence(StepLogistic(logits=x), Logistic(0.0, 1.0)), x)
    s = torch.sigmoid(x)
    assert float(g) == pytest.approx(float((s * (1 - s) * x).detach()), rel=1e-12)


def test_kl_batched_shapes():
    q = StepLogistic(logits=torch.zeros(4, 3))
    assert kl_divergence(q, Logistic(torch.zeros(3), torch.ones(3))).shape == (4, 3)
    assert kl_divergence(q, Logistic(torch.ones(3), torch.ones(3))).shape == (4, 3)
    r = SmoothStepLogistic(logits=torch.zeros(4, 3))
    assert kl_divergence(r, Logistic(0.0, 1.0)).shape == (4, 3)
    assert bernoulli_kl_to_half(torch.zeros(2)).shape == (2,)


# --- relaxations --------------------------------------------------------------------------------


def test_steep_sigmoid():
    z = torch.tensor([-1.0, 0.0, 0.05, 3.0])
    assert torch.allclose(steep_sigmoid(z), torch.sigmoid(10 * z))
    assert torch.equal(steep_sigmoid(z, beta=1e30), torch.tensor([0.0, 0.5, 1.0, 1.0]))


def test_binary_concrete_is_steep_sigmoid_of_logistic():
    """sigma(beta (log gamma + l)) has the law of steep_sigmoid(Logistic(log gamma, 1)):
    compare the logits y = beta (log gamma + l) with Logistic(beta log gamma, beta) by KS."""
    logits = torch.tensor(0.8, dtype=F64)
    beta = 4.0
    torch.manual_seed(3)
    y = binary_concrete(logits, beta).sample((20000,)).numpy()
    ks = stats.kstest(y, stats.logistic(loc=beta * 0.8, scale=beta).cdf)
    assert ks.pvalue > 1e-3  # fixed seed; a correct sampler fails with probability 1e-3


def test_binary_concrete_low_temperature_has_no_nan():
    logits = torch.tensor([-30.0, 0.0, 30.0], requires_grad=True)
    r = binary_concrete_rsample(logits, beta=1e6, sample_shape=(1000,))
    assert torch.isfinite(r).all() and ((r >= 0) & (r <= 1)).all()
    r.sum().backward()
    assert torch.isfinite(logits.grad).all()
    y = torch.tensor([-500.0, 0.0, 400.0])
    lp = binary_concrete_logit_log_prob(y, torch.tensor([1.0, 1.0, -1.0]), beta=0.1)
    ref = LogitRelaxedBernoulli(torch.tensor(10.0), logits=torch.tensor([1.0, 1.0, -1.0]))
    ref = ref.log_prob(y)
    finite = torch.isfinite(ref)
    assert not finite.all()  # torch overflows here ...
    assert torch.isfinite(lp).all()  # ... we do not
    assert torch.allclose(lp[finite], ref[finite])


# --- Bernoulli probabilities --------------------------------------------------------------------


def test_bernoulli_probs_gaussian_stable():
    t = torch.tensor([-37.0, -20.0, -8.0, -1.0, 0.0, 2.0, 9.0, 40.0], dtype=F64)
    np.testing.assert_allclose(
        bernoulli_probs_from_gaussian(t, _t(1.0)).numpy(), stats.norm.cdf(t.numpy()), rtol=1e-12
    )
    t32 = t.float()[2:]  # float32 underflows below t = -13.9
    np.testing.assert_allclose(
        bernoulli_probs_from_gaussian(t32, 1.0).numpy(), stats.norm.cdf(t32.numpy()), rtol=1e-5
    )
    logit = bernoulli_logits_from_gaussian(2 * t, _t(2.0)).numpy()
    ref = stats.norm.logcdf(t.numpy()) - stats.norm.logsf(t.numpy())
    np.testing.assert_allclose(logit, ref, rtol=1e-10)
    assert np.isfinite(logit).all()
    assert float(bernoulli_logits_from_gaussian(_t(3.0), _t(1.5))) == pytest.approx(
        stats.norm.logcdf(2.0) - stats.norm.logsf(2.0), rel=1e-12
    )


def test_bernoulli_probs_of_each_family():
    assert float(bernoulli_probs_from_logistic(_t(2.0), 4.0)) == pytest.approx(
        1 / (1 + math.e**-0.5)
    )
    assert float(bernoulli_probs_from_concrete(torch.log(_t(3.0)))) == pytest.approx(0.75)
    assert float(bernoulli_probs_from_step_logistic(_t(1.5))) == pytest.approx(0.75)
    assert float(StepLogistic(alpha=_t(1.5)).positive_probs) == pytest.approx(0.75)
    assert float(Logistic(_t(1.0), _t(1.0)).positive_probs) == pytest.approx(1 / (1 + math.e**-1))
    assert float(bernoulli_probs_from_gaussian(_t(0.0), _t(1.0))) == pytest.approx(0.5)
    d = SmoothStepLogistic(alpha=_t(1.5), beta=10.0)
    above = integrate(lambda z: smooth_pdf(z, 1.5, 10.0), lo=0.0, points=breakpoints(10.0))
    assert float(d.positive_probs) == pytest.approx(above, rel=1e-10)
    assert float(torch.sigmoid(d.positive_logits)) == pytest.approx(above, rel=1e-10)


def test_bernoulli_kl_and_log_mass_match_torch_bernoulli():
    """The shared discrete-model helpers against torch.distributions.Bernoulli (float64), and
    finite for saturated logits where a probs-based formula would give inf/NaN."""
    from torch.distributions import Bernoulli

    from binaryvae.distributions import bernoulli_kl, bernoulli_log_mass

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 7, generator=g, dtype=torch.float64) * 4
    prior = torch.randn(7, generator=g, dtype=torch.float64)
    want = kl_divergence(Bernoulli(logits=logits), Bernoulli(logits=prior.expand(5, 7))).sum(-1)
    torch.testing.assert_close(bernoulli_kl(logits, prior), want, rtol=1e-10, atol=1e-12)
    bits = (torch.rand(3, 5, 7, generator=g, dtype=torch.float64) < 0.5).double()
    want = Bernoulli(logits=logits).log_prob(bits).sum(-1)
    torch.testing.assert_close(bernoulli_log_mass(bits, logits), want, rtol=1e-10, atol=1e-12)
    extreme = torch.tensor([[-60.0, 60.0, 0.0]])
    assert torch.isfinite(bernoulli_kl(extreme, torch.zeros(3))).all()
    assert torch.isfinite(bernoulli_log_mass(torch.tensor([[1.0, 0.0, 1.0]]), extreme)).all()


def _concrete_logit_pdf(y: float, logits: float, beta: float) -> float:
    """Density of y = beta (logits + l), l ~ Logistic(0, 1): a Logistic(beta logits, beta)."""
    return logistic_pdf(y, beta * logits, beta)


@pytest.mark.parametrize(
    "a, q_beta, a0, p_beta",
    [(0.3, 1.5, 0.0, 2.0), (-4.0, 1.5, 1.0, 2.0), (2.0, 10.0, -1.0, 0.5), (0.7, 10.0, 0.7, 10.0)],
)
def test_binary_concrete_kl_matches_scipy_quadrature(a, q_beta, a0, p_beta):
    """KL of two binary Concretes in logit space (Maddison et al. 2017's lambda1 = 2/3 and
    lambda2 = 1/2 is q_beta 1.5, p_beta 2) against scipy's adaptive quadrature of
    q (log q - log p) over y; at equal temperatures it is the Logistic KL."""
    from binaryvae.distributions import binary_concrete_kl

    def integrand(y):
        q = _concrete_logit_pdf(y, a, q_beta)
        p = _concrete_logit_pdf(y, a0, p_beta)
        return q * (math.log(q) - math.log(p)) if q > 0 else 0.0

    centre = q_beta * a
    want = integrate(integrand, points=[centre, p_beta * a0, centre - 20 * q_beta,
                                        centre + 20 * q_beta])  # fmt: skip
    got = binary_concrete_kl(torch.tensor(a, dtype=torch.float64), q_beta,
                             torch.tensor(a0, dtype=torch.float64), p_beta)  # fmt: skip
    assert got.item() == pytest.approx(want, rel=1e-6, abs=1e-8)
    if q_beta == p_beta:
        want = logistic_kl_equal_scale(torch.tensor(a - a0, dtype=torch.float64)).item()
        assert got.item() == pytest.approx(want, abs=1e-8)
