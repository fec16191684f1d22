"""Gradient diagnostics against closed forms (one bit) and enumeration (three bits), and their
place in a run's metrics."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from _runs_helpers import metric_rows, tiny_config
from binaryvae.config import TrainConfig
from binaryvae.diagnostics import exact_discrete_elbo, gradient_diagnostics
from binaryvae.distributions import bernoulli_kl
from binaryvae.models import build_model
from binaryvae.runs import train_replicas, train_run

D = 6


class FixedParams(nn.Module):
    """An 'encoder' whose output is a fixed tensor [B, k] (the diagnostics differentiate with
    respect to the encoder outputs, so only their values matter)."""

    def __init__(self, values: torch.Tensor):
        super().__init__()
        self.register_buffer("values", values.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.values


def _model(family: str, n: int, logits: torch.Tensor, **extra) -> nn.Module:
    torch.manual_seed(1)
    cfg = TrainConfig(family=family, latent_dim=n, hidden=(8,), extra=extra)
    model = build_model(cfg, D, None, "image").double()
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.mul_(3.0)  # codes that matter
    model.encoder = FixedParams(logits.double())
    return model


def _one_bit(family: str, a: float, copies: int, **extra):
    x = (torch.rand(1, D, generator=torch.Generator().manual_seed(0)) < 0.5).double()
    model = _model(family, 1, torch.full((copies, 1), a), **extra)
    with torch.no_grad():
        f0, f1 = (model.decoder.log_prob(x, model.decoder(torch.tensor([[b]]).double())).item()
                  for b in (0.0, 1.0))  # fmt: skip
    return model, x.expand(copies, D), f0, f1


def _closed_form_variance(estimator: str, a: float, f0: float, f1: float) -> float:
    """Variance of one estimate of d E_q[f(b)] / d a, b ~ Bernoulli(p = sigmoid(a)), p < 1/2.

    sfe (no baseline): g = f(b) (b - p); disarm: g = (f1 - f0) sigmoid(|a|) / 2 when b != b~
    (probability 2p), else 0; arm: g = (f(b~) - f(b)) (u - 1/2), nonzero for u < p and
    u > 1 - p. The KL's gradient is deterministic and adds no variance."""
    p = 1 / (1 + math.exp(-a))
    delta = f1 - f0
    mean = p * (1 - p) * delta
    if estimator == "sfe":
        second = p * f1**2 * (1 - p) ** 2 + (1 - p) * f0**2 * p**2
    elif estimator == "disarm":
        second = 2 * p * (0.5 * delta * (1 - p)) ** 2
    elif estimator == "arm":  # 2 delta^2 int_0^p (u - 1/2)^2 du
        second = 2 * delta**2 * ((p - 0.5) ** 3 + 0.125) / 3
    else:
        raise ValueError(estimator)
    return second - mean**2


@pytest.mark.parametrize("family, estimator, extra", [
    ("bernoulli-sfe", "sfe", {"sfe_baseline": False}),
    ("bernoulli-disarm", "disarm", {}),
    ("bernoulli-arm", "arm", {}),
])  # fmt: skip
def test_variance_matches_the_one_bit_closed_form(family, estimator, extra):
    """400 identical images x 50 estimates = 20,000 draws of one coordinate's estimate: the
    sample variance within 6% (about 5 standard errors) of the closed form, and the exact
    gradient equal to p (1 - p) (f1 - f0) - dKL/da."""
    a = -0.7
    model, x, f0, f1 = _one_bit(family, a, copies=400, **extra)
    out = gradient_diagnostics(model, x, samples=50,
                               generator=torch.Generator().manual_seed(3))  # fmt: skip
    want = _closed_form_variance(estimator, a, f0, f1)
    print(f"{family}: variance {out['grad_var']:.5f}, closed form {want:.5f}")
    assert out["grad_var"] == pytest.approx(want, rel=0.06)
    p = 1 / (1 + math.exp(-a))
    # d KL(Bern(p) || Bern(1/2)) / d a = p (1 - p) a
    exact = p * (1 - p) * (f1 - f0) - p * (1 - p) * a
    assert out["grad_exact_norm"] == pytest.approx(abs(exact), rel=1e-6)
    assert out["grad_bias_norm"] < 4.5 * out["grad_bias_noise"]  # unbiased: bias = noise


def _brute_force_elbo(model, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """The discrete ELBO per image by an explicit loop over the codes, one decoder call each."""
    n = logits.shape[-1]
    total = torch.zeros(x.shape[0], dtype=x.dtype)
    for bits in itertools.product([0.0, 1.0], repeat=n):
        b = torch.tensor(bits, dtype=x.dtype)
        log_q = (b * torch.nn.functional.logsigmoid(logits)
                 + (1 - b) * torch.nn.functional.logsigmoid(-logits)).sum(-1)  # fmt: skip
        with torch.no_grad():
            log_lik = model.decoder.log_prob(x, model.decoder(b.expand(x.shape[0], n)))
        total = total + log_q.exp() * log_lik
    return total - bernoulli_kl(logits, model.prior_bit_logits().detach())


@pytest.mark.parametrize("family", ["bernoulli-disarm", "steplogistic", "gaussian-sigmoid"])
def test_the_exact_gradient_matches_a_brute_force_enumeration(family):
    torch.manual_seed(0)
    p = 2 if family == "gaussian-sigmoid" else 1  # encoder outputs per bit
    params = torch.randn(4, p * 3).double()
    model = _model(family, 3, params)
    x = (torch.rand(4, D, generator=torch.Generator().manual_seed(5)) < 0.5).double()
    leaves = tuple(t.requires_grad_() for t in model.encoder_params(x))
    got = torch.autograd.grad(exact_discrete_elbo(model, x, leaves).sum(), leaves)
    ref_leaves = tuple(t.detach().clone().requires_grad_() for t in leaves)
    logits = model.family.bit_logits(ref_leaves)
    want = torch.autograd.grad(_brute_force_elbo(model, x, logits).sum(), ref_leaves)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-7)


@pytest.mark.slow  # 7 s of CPU: 4 x 2,000 gradient estimates
def test_straight_through_and_relaxations_are_measured_biased():
    """On three bits with a decoder whose codes matter (64 images, 2,000 estimates), the mean
    gradients of straight-through, of Logistic at beta = 10 and of Gaussian + sigmoid sit far
    from the discrete ELBO's (bias several times the mean's own noise; measured 13x, 5x, 30x);
    DisARM's sits at the noise (measured 0.9x)."""
    torch.manual_seed(0)
    logits = torch.randn(64, 3)
    x = (torch.rand(64, D, generator=torch.Generator().manual_seed(5)) < 0.5).double()
    ratios = {}
    for family, params in (("bernoulli-st", logits), ("logistic", logits),
                           ("gaussian-sigmoid", torch.randn(64, 6)),
                           ("bernoulli-disarm", logits)):  # fmt: skip
        model = _model(family, 3, params)
        out = gradient_diagnostics(model, x, samples=2000,
                                   generator=torch.Generator().manual_seed(9))  # fmt: skip
        ratios[family] = out["grad_bias_norm"] / out["grad_bias_noise"]
    print(ratios)
    assert ratios["bernoulli-st"] > 8 and ratios["gaussian-sigmoid"] > 8
    assert ratios["logistic"] > 3.5
    assert ratios["bernoulli-disarm"] < 4.5


def test_runs_log_gradient_diagnostics_and_the_iwae_bound(tmp_path):
    cfg = tiny_config(family="bernoulli-sfe", epochs=2, latent_dim=4, dataset="toy",
                      grad_every=8, grad_samples=5, eval_iwae_every=2, eval_iwae_k=7)  # fmt: skip
    train_run(cfg, tmp_path / "one", progress=False)
    rows = metric_rows(tmp_path / "one")
    # 16 steps per epoch (8,000 toy points, batch 500): steps 8, 16 | 24, 32
    assert [g["step"] for g in rows[0]["gradient"]] == [8, 16]
    assert [g["step"] for g in rows[1]["gradient"]] == [24, 32]
    for g in rows[0]["gradient"]:
        assert g["grad_samples"] == 5 and g["grad_var"] > 0 and g["grad_bias_norm"] >= 0
    assert "test_iwae_k7" not in rows[0] and "test_iwae_k7" in rows[1]
    # the diagnostics draw their own noise: training is the same with and without them
    plain = train_run(tiny_config(family="bernoulli-sfe", epochs=2, latent_dim=4,
                                  dataset="toy"), tmp_path / "two", progress=False)  # fmt: skip
    again = metric_rows(tmp_path / "two")
    assert rows[1]["train_loss"] == again[1]["train_loss"]
    assert plain["test_discrete_elbo"] is not None
    # replicas measure each replica on its own plain model: the same numbers as single runs
    train_replicas(cfg, [0, 1], tmp_path / "group", progress=False)
    group = metric_rows(tmp_path / "group" / "seed-0")
    for got, want in zip(group[0]["gradient"], rows[0]["gradient"], strict=True):
        assert got["grad_var"] == pytest.approx(want["grad_var"], rel=1e-4)
