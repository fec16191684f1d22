"""Contract tests of Logistic, StepLogistic and SmoothStepLogistic against scipy references.

One registry of example distributions drives the generic tests (shapes, expand, normalization,
cdf/icdf, goodness of fit, entropy, moments); family-specific tests follow.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from _dist_refs import breakpoints, integrate, logistic_pdf, smooth_pdf, step_pdf
from binaryvae.distributions import Logistic, SmoothStepLogistic, StepLogistic

F64 = torch.float64


def _t(v):
    return torch.tensor(v, dtype=F64)


# name -> (torch distribution, scalar numpy pdf, break points for quad); scalar parameters
EXAMPLES = {
    "logistic(0,1)": (lambda: Logistic(_t(0.0), _t(1.0)), lambda z: logistic_pdf(z), ()),
    "logistic(1.7,0.4)": (
        lambda: Logistic(_t(1.7), _t(0.4)),
        lambda z: logistic_pdf(z, 1.7, 0.4),
        (1.7,),
    ),
    "step(alpha=0.5)": (lambda: StepLogistic(alpha=_t(0.5)), lambda z: step_pdf(z, 0.5), (0.0,)),
    "step(logits=4.2)": (
        lambda: StepLogistic(logits=_t(4.2)),
        lambda z: step_pdf(z, 2 * float(torch.sigmoid(_t(4.2)))),
        (0.0,),
    ),
    "step(logits=-9)": (
        lambda: StepLogistic(logits=_t(-9.0)),
        lambda z: step_pdf(z, 2 * float(torch.sigmoid(_t(-9.0)))),
        (0.0,),
    ),
    "smooth(1.5,b=10)": (
        lambda: SmoothStepLogistic(alpha=_t(1.5), beta=10.0),
        lambda z: smooth_pdf(z, 1.5, 10.0),
        breakpoints(10.0),
    ),
    "smooth(0.2,b=3)": (
        lambda: SmoothStepLogistic(alpha=_t(0.2), beta=3.0),
        lambda z: smooth_pdf(z, 0.2, 3.0),
        breakpoints(3.0),
    ),
    "smooth(logits=-6,b=40)": (
        lambda: SmoothStepLogistic(logits=_t(-6.0), beta=40.0),
        lambda z: smooth_pdf(z, 2 * float(torch.sigmoid(_t(-6.0))), 40.0),
        breakpoints(40.0),
    ),
    "smooth(1.9,b=0.5)": (
        lambda: SmoothStepLogistic(alpha=_t(1.9), beta=0.5),
        lambda z: smooth_pdf(z, 1.9, 0.5),
        breakpoints(0.5),
    ),
}
NAMES = sorted(EXAMPLES)


@pytest.mark.parametrize("name", NAMES)
def test_density_matches_reference_and_integrates_to_one(name):
    make, pdf, pts = EXAMPLES[name]
    d = make()
    zs = np.array([-25.0, -3.0, -0.31, -0.02, 0.0, 0.02, 0.4, 1.7, 6.0, 30.0])
    got = d.log_prob(torch.as_tensor(zs, dtype=F64)).exp().numpy()
    want = np.array([pdf(z) for z in zs])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    # the library's own density integrates to one (scipy quadrature of d.log_prob)
    def library_pdf(z: float) -> float:
        return float(d.log_prob(torch.tensor(z, dtype=F64)).exp())

    assert integrate(library_pdf, points=pts) == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_cdf_matches_quadrature_of_density(name):
    make, pdf, pts = EXAMPLES[name]
    d = make()
    for z in [-40.0, -7.0, -1.1, -0.05, 0.0, 0.03, 0.9, 5.0, 35.0]:
        got = float(d.cdf(_t(z)))
        if z <= 0:
            want = integrate(pdf, hi=z, points=pts)
            assert got == pytest.approx(want, rel=1e-9, abs=1e-300)
        else:  # compare the upper tail, which holds the information there
            want = integrate(pdf, lo=z, points=pts)
            assert 1 - got == pytest.approx(want, rel=1e-6, abs=1e-15)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cdf_of_icdf_is_identity(name, dtype):
    make = EXAMPLES[name][0]
    base = make()
    params = {k: v.to(dtype) for k, v in base.__dict__.items() if k in ("loc", "scale")}
    if isinstance(base, Logistic):
        d = Logistic(params["loc"], params["scale"])
    elif isinstance(base, SmoothStepLogistic):
        d = SmoothStepLogistic(logits=base.logits.to(dtype), beta=base.beta)
    else:
        d = StepLogistic(logits=base.logits.to(dtype))
    fi = torch.finfo(dtype)
    u = torch.tensor([fi.tiny, 1e-30, 1e-9, 1e-3, 0.2, 0.5, 0.77, 0.999, 1 - fi.eps], dtype=dtype)
    z = d.icdf(u)
    assert torch.isfinite(z).all()
    back = d.cdf(z)
    # the smaller tail, relatively; the conditioning bound is |du/u| ~ |dz| ~ eps |z|
    lower = u < 0.5
    rel_err = torch.where(lower, (back - u) / u, (u - back) / (1 - u)).abs()
    # plus, above 1/2, the rounding of F = 1 - small to a multiple of eps
    bound = 64 * fi.eps * (1 + z.abs()) + torch.where(lower, 0.0, fi.eps / (1 - u))
    assert (rel_err <= bound).all(), (rel_err, bound)


@pytest.mark.parametrize("name", NAMES)
def test_samples_pass_ks_test(name):
    """Kolmogorov–Smirnov against the tested CDF; with a fixed seed the outcome is fixed, and for
    a correct sampler a p-value below 1e-3 would occur with probability 1e-3."""
    d = EXAMPLES[name][0]()
    torch.manual_seed(1234)
    x = d.sample((20000,)).numpy()
    p = stats.kstest(x, lambda v: d.cdf(torch.as_tensor(v, dtype=F64)).numpy()).pvalue
    assert p > 1e-3


@pytest.mark.parametrize("name", NAMES)
def test_entropy_mean_variance_match_quadrature(name):
    make, pdf, pts = EXAMPLES[name]
    d = make()

    def neg_plogp(z):
        f = pdf(z)
        return -f * math.log(f) if f > 0 else 0.0

    assert float(d.entropy()) == pytest.approx(integrate(neg_plogp, points=pts), rel=1e-8)
    mean = integrate(lambda z: z * pdf(z), points=pts)
    var = integrate(lambda z: (z - mean) ** 2 * pdf(z), points=pts)
    assert float(d.mean) == pytest.approx(mean, rel=1e-8, abs=1e-10)
    assert float(d.variance) == pytest.approx(var, rel=1e-8)


@pytest.mark.parametrize("name", NAMES)
def test_positive_probs_is_mass_above_zero(name):
    make, pdf, pts = EXAMPLES[name]
    d = make()
    want = integrate(pdf, lo=0.0, points=pts)
    assert float(d.positive_probs) == pytest.approx(want, rel=1e-9)
    assert float(torch.sigmoid(d.positive_logits)) == pytest.approx(want, rel=1e-9)
    if not isinstance(d, Logistic):  # logits and probs: two views of the one parameter
        assert float(d.probs) == pytest.approx(float(torch.sigmoid(d.logits)), rel=1e-12)
        assert float(d.probs) == pytest.approx(float(d.alpha) / 2, rel=1e-12)


@pytest.mark.parametrize("cls", [StepLogistic, SmoothStepLogistic])
def test_shapes_broadcasting_and_expand(cls):
    logits = torch.randn(3, 1, dtype=F64)
    d = cls(logits=logits)
    assert d.batch_shape == (3, 1) and d.event_shape == ()
    assert d.rsample((5, 2)).shape == (5, 2, 3, 1)
    value = torch.zeros(4, 3, 7, dtype=F64)
    assert d.log_prob(value).shape == (4, 3, 7)
    assert d.cdf(value).shape == (4, 3, 7)
    assert d.icdf(torch.full((3, 7), 0.3, dtype=F64)).shape == (3, 7)
    e = d.expand((2, 3, 4))
    assert e.batch_shape == (2, 3, 4)
    assert e.sample().shape == (2, 3, 4)
    assert torch.allclose(e.probs, d.probs.expand(2, 3, 4))
    assert torch.allclose(e.positive_probs, d.positive_probs.expand(2, 3, 4))
    assert torch.allclose(e.entropy(), d.entropy().expand(2, 3, 4))
    a = cls(alpha=0.7)
    assert a.batch_shape == () and a.sample((3,)).shape == (3,)
    assert a.expand((2,)).alpha.shape == (2,)
    with pytest.raises(ValueError):
        cls(alpha=torch.tensor([0.5, 2.0]), validate_args=True)
    with pytest.raises(ValueError):
        cls()


def test_logistic_shapes_and_scipy():
    d = Logistic(torch.zeros(2, 1, dtype=F64), torch.tensor([1.0, 2.0, 0.5], dtype=F64))
    assert d.batch_shape == (2, 3)
    assert d.expand((4, 2, 3)).rsample().shape == (4, 2, 3)
    z = torch.linspace(-30, 30, 13, dtype=F64)
    ref = stats.logistic.logpdf(z.numpy()[:, None, None], 0.0, np.array([1.0, 2.0, 0.5]))
    ref = np.broadcast_to(ref, (13, 2, 3))
    np.testing.assert_allclose(d.log_prob(z[:, None, None]).numpy(), ref, rtol=1e-12)
    np.testing.assert_allclose(
        d.icdf(torch.tensor(0.3, dtype=F64)).numpy()[0],
        stats.logistic.ppf(0.3, 0.0, [1.0, 2.0, 0.5]),
        rtol=1e-12,
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_float32_and_float64_agree(dtype):
    for cls in (StepLogistic, SmoothStepLogistic):
        x = torch.tensor([-20.0, -1.0, 0.5, 25.0])
        u = torch.tensor([1e-20, 0.3, 0.6, 1 - 1e-6])
        d = cls(logits=x.to(dtype))
        z = d.icdf(u.to(dtype))
        ref = cls(logits=x.double()).icdf(u.to(dtype).double())
        assert z.dtype == dtype and d.log_prob(z).dtype == dtype
        assert torch.allclose(z.double(), ref, rtol=1e-4, atol=1e-4)
