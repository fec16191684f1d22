"""Gradients of rsample/icdf (reparameterization and implicit reparameterization) and
property-based tests over the whole parameter range, extreme logits and extreme uniforms."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from binaryvae.distributions import Logistic, SmoothStepLogistic, StepLogistic

F64 = torch.float64
LOGITS = [-30.0, -12.0, -2.5, -0.3, 0.0, 0.8, 4.0, 15.0, 30.0]
US = [1e-300, 1e-40, 1e-7, 0.03, 0.4, 0.5, 0.61, 0.97, 1 - 1e-9, 1 - 2**-53]


def _icdf_grad(cls, x, u, **kw):
    x = x.clone().requires_grad_(True)
    z = cls(logits=x, **kw).icdf(u)
    (g,) = torch.autograd.grad(z.sum(), x)
    return z.detach(), g


@pytest.mark.parametrize("cls", [StepLogistic, SmoothStepLogistic])
def test_icdf_gradient_matches_finite_differences(cls):
    """dz/dlogits at fixed u: autograd (StepLogistic) or implicit reparameterization
    (SmoothStepLogistic) against central differences of the same icdf, in float64."""
    x = torch.tensor(LOGITS, dtype=F64)[:, None].expand(len(LOGITS), len(US))
    u = torch.tensor(US, dtype=F64).expand(len(LOGITS), len(US))
    z, g = _icdf_grad(cls, x, u)
    h = 1e-5
    with torch.no_grad():
        fd = (cls(logits=x + h).icdf(u) - cls(logits=x - h).icdf(u)) / (2 * h)
    # skip the cells where the step at z = 0 lies between x - h and x + h (u == q exactly)
    q = torch.sigmoid(-x)
    smooth_cell = ((u - q).abs() > 1e-4) | (cls is SmoothStepLogistic)
    assert torch.isfinite(g).all()
    err = (g - fd).abs()[smooth_cell]
    scale = (1e-6 + fd.abs())[smooth_cell]
    # finite-difference noise: eps |z| / h <= 2e-16 * 700 / 1e-5 ~ 1.5e-8
    assert (err <= 1e-6 * scale + 5e-8).all(), err.max()


@pytest.mark.parametrize("beta", [0.7, 3.0, 10.0, 60.0])
def test_smooth_implicit_gradient_against_own_icdf(beta):
    """The implicit gradient -(dF/dlogits)/f never sees the Newton iterations; it must agree with
    finite differences of the solver's output (through alpha as well as logits)."""
    alpha = torch.tensor([0.05, 0.6, 1.0, 1.45, 1.98], dtype=F64)[:, None]
    u = torch.tensor([1e-12, 0.2, 0.5, 0.83, 1 - 1e-10], dtype=F64)
    a = alpha.clone().requires_grad_(True)
    z = SmoothStepLogistic(alpha=a, beta=beta).icdf(u.expand(5, 5))
    (g,) = torch.autograd.grad(z.sum(), a)
    h = 1e-6
    with torch.no_grad():
        fd = (
            SmoothStepLogistic(alpha=alpha + h, beta=beta).icdf(u)
            - SmoothStepLogistic(alpha=alpha - h, beta=beta).icdf(u)
        ).sum(-1, keepdim=True) / (2 * h)
    assert torch.allclose(g, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("cls", [Logistic, StepLogistic, SmoothStepLogistic])
def test_rsample_gradient_matches_finite_differences_with_common_noise(cls):
    """Gradients of a smooth function of rsample against finite differences at a fixed seed."""

    def make(p):
        return Logistic(p, torch.tensor(1.3, dtype=F64)) if cls is Logistic else cls(logits=p)

    def objective(p):
        torch.manual_seed(7)
        return torch.sin(make(p).rsample((400,))).mean()

    p = torch.tensor(0.37, dtype=F64, requires_grad=True)
    (g,) = torch.autograd.grad(objective(p), p)
    h = 1e-6
    with torch.no_grad():
        fd = (objective(p + h) - objective(p - h)) / (2 * h)
    assert float(g) == pytest.approx(float(fd), rel=1e-5, abs=1e-8)


def test_icdf_gradient_wrt_u_is_inverse_density():
    u = torch.tensor([1e-9, 0.3, 0.9], dtype=F64, requires_grad=True)
    d = SmoothStepLogistic(logits=torch.tensor(1.1, dtype=F64), beta=10.0)
    z = d.icdf(u)
    (g,) = torch.autograd.grad(z.sum(), u)
    assert torch.allclose(g, torch.exp(-d.log_prob(z.detach())), rtol=1e-12)


_settings = settings(max_examples=60, deadline=None, derandomize=True)
_logit = st.floats(-30.0, 30.0, allow_nan=False)
_u_extreme = st.sampled_from(["tiny", "small", "mid", "big", "one_minus_eps"])


def _u(kind, fine, dtype):
    fi = torch.finfo(dtype)
    return {
        "tiny": fi.tiny,
        "small": 1e-30 if dtype == F64 else 1e-20,
        "mid": fine,
        "big": 1 - 1e-6,
        "one_minus_eps": 1 - fi.eps,
    }[kind]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cls", [StepLogistic, SmoothStepLogistic])
@_settings
@given(
    x=_logit,
    kind=_u_extreme,
    fine=st.floats(1e-6, 1 - 1e-6),
    beta=st.floats(0.3, 100.0),
    z=st.floats(-80.0, 80.0),
)
def test_no_nan_or_inf_anywhere(cls, dtype, x, kind, fine, beta, z):
    kw = {"beta": beta} if cls is SmoothStepLogistic else {}
    logits = torch.tensor([x], dtype=dtype, requires_grad=True)
    d = cls(logits=logits, **kw)
    u = torch.tensor([_u(kind, fine, dtype)], dtype=dtype)
    sample = d.icdf(u)
    zt = torch.tensor([z], dtype=dtype)
    values = [sample, d.log_prob(zt), d.cdf(zt), d.entropy(), d.probs, d.positive_probs]
    values.append(d.positive_logits)
    values.append(torch.distributions.kl_divergence(d, Logistic(0.0, 1.0)))
    for v in values:
        assert torch.isfinite(v).all(), values
    (g,) = torch.autograd.grad(sum(v.sum() for v in values), logits)
    assert torch.isfinite(g).all()
    assert 0.0 <= float(d.cdf(zt).detach()) <= 1.0


@_settings
@given(x=_logit, fine=st.floats(1e-6, 1 - 1e-6), beta=st.floats(0.3, 100.0))
def test_smooth_cdf_of_icdf_property(x, fine, beta):
    d = SmoothStepLogistic(logits=torch.tensor(x, dtype=F64), beta=beta)
    u = torch.tensor(fine, dtype=F64)
    z = d.icdf(u)
    assert float(d.cdf(z)) == pytest.approx(fine, rel=1e-12, abs=1e-14)


@_settings
@given(x=_logit, fine=st.floats(1e-300, 1 - 1e-16))
def test_step_cdf_of_icdf_property(x, fine):
    d = StepLogistic(logits=torch.tensor(x, dtype=F64))
    u = torch.tensor(fine, dtype=F64)
    z = d.icdf(u)
    tol = 64 * 2.2e-16 * (1 + abs(float(z)))
    assert float(d.cdf(z)) == pytest.approx(fine, rel=tol, abs=2.2e-16)
