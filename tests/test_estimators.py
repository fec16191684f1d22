"""Gradient estimators against exact references.

- Unbiased estimators (sfe, reinforce-loo, arm, disarm, arms, arms-normal, vimco; the learning
  signal log p(x|b) and a fixed prior here, the whole single-sample ELBO and a learned prior in
  `binaryvae.testing.check_estimator`, tests/test_registry.py): on a model with n = 3 bits the
  mean of many independent estimates of d ELBO / d logits (vimco: d IWAE-K / d logits) matches
  the exact gradient, computed by enumerating all 2^3 codes (all K-tuples for IWAE-K). One
  backward pass yields R independent estimates: the batch holds R replicas of each image, each
  replica with its own copy of the logits.
  Test: |z| < 4.5 for every coordinate (B * n = 6 per estimator). For a correct estimator a
  coordinate fails with probability 6.8e-6 (normal tail), so the whole file fails by chance with
  probability < 3.3e-4 (Bonferroni over its 48 coordinates); the seeds are fixed, so a run is
  reproducible. The z-scores are printed (pytest -s).
- The running-average control variate lowers the variance without moving the mean.
- Pathwise families: autograd gradients match central finite differences of the same objective
  with fixed noise (common random numbers from a seeded generator), in float64.
"""

from __future__ import annotations

import itertools

import pytest
import torch

import binaryvae.testing as bvt
from binaryvae.config import TrainConfig
from binaryvae.distributions import bernoulli_log_mass
from binaryvae.models import build_model
from binaryvae.models.families import FAMILY_CLASSES

N_BITS, D, R = bvt.N_BITS, bvt.DATA_DIM, bvt.REPLICAS
Z_MAX = bvt.Z_MAX
# every list of families derives from the registry and the classes' properties
UNBIASED_EXACT = [n for n, c in FAMILY_CLASSES.items() if c.exact and c.unbiased]
SIGNAL_FAMILIES = [n for n, c in FAMILY_CLASSES.items() if c.takes_learning_signal]
PATHWISE = [n for n, c in FAMILY_CLASSES.items() if not c.exact and c.has_likelihood]


# the estimators of the discrete ELBO's gradient (vimco's is the IWAE-K bound's)
ELBO_EXACT = [n for n in UNBIASED_EXACT if FAMILY_CLASSES[n].estimator_objective == "expectation"]


def test_the_family_lists_hold_what_the_estimator_classes_say():
    """The derived lists, against the estimators' own papers: sfe, reinforce-loo, ARM, DisARM
    ARMS, RELAX and RODEO are unbiased score-function estimators; VIMCO is unbiased for the
    IWAE-K bound's gradient and always takes the log importance weight; straight-through,
    Gumbel-Rao and ReinMax are biased."""
    assert SIGNAL_FAMILIES == [
        "bernoulli-sfe", "bernoulli-reinforce-loo", "bernoulli-arm", "bernoulli-disarm",
        "bernoulli-arms", "bernoulli-arms-normal", "bernoulli-relax", "bernoulli-rodeo"
    ]  # fmt: skip
    assert UNBIASED_EXACT == [*SIGNAL_FAMILIES, "bernoulli-vimco"]
    assert ELBO_EXACT == SIGNAL_FAMILIES
    assert FAMILY_CLASSES["bernoulli-vimco"].estimator_signal == "elbo"
    assert [n for n, c in FAMILY_CLASSES.items() if c.exact and not c.unbiased] == [
        "bernoulli-st", "bernoulli-gumbel-rao", "bernoulli-reinmax"
    ]  # fmt: skip


# the enumeration machinery is the library's (binaryvae.testing, which check_estimator runs)
FixedParams = bvt.FixedParams
_data = bvt.enumeration_data


def _enumerable_model(family: str, replicas: int, extra: dict | None = None):
    return bvt.enumerable_model(family, replicas, extra)


def _exact_grad(model, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    return bvt.exact_gradient(model, x, logits)


def _estimates(model, x_rep: torch.Tensor, seed: int) -> torch.Tensor:
    return bvt.logit_estimates(model, x_rep, seed, R)


_z = bvt.z_scores


@pytest.mark.parametrize(
    "family,extra",
    [(f, {}) for f in UNBIASED_EXACT] + [("bernoulli-reinforce-loo", {"loo_samples": 4})],
)  # the whole-ELBO signal and the learned prior: check_estimator (tests/test_registry.py)
def test_unbiased_estimators_match_enumeration(family, extra):
    model, x_rep, x, logits = _enumerable_model(family, R, extra)
    model.eval()  # sfe: the running average stays at its value (0: the plain estimator, eq. 9)
    exact = _exact_grad(model, x, logits)
    z = _z(_estimates(model, x_rep, seed=11), exact)
    print(f"{family} {extra}: z = {[round(v, 2) for v in z.flatten().tolist()]}")
    assert (z.abs() < Z_MAX).all(), z


def test_control_variate_lowers_variance_without_moving_the_mean():
    model, x_rep, x, logits = _enumerable_model("bernoulli-sfe", R)
    model.eval()
    exact = _exact_grad(model, x, logits)
    plain = _estimates(model, x_rep, seed=21)
    with torch.no_grad():  # c = the mean learning signal, as the running average would reach
        codes = torch.tensor(list(itertools.product([0.0, 1.0], repeat=N_BITS)), dtype=x.dtype)
        f = model.decoder.log_prob(x, model.decoder(codes.unsqueeze(1)))  # [C, B]
        q = bernoulli_log_mass(codes.unsqueeze(1), logits).exp()  # [C, B]
        model.estimator.running_mean.fill_(float((q * f).sum(0).mean()))
    with_cv = _estimates(model, x_rep, seed=22)
    z_plain, z_cv = _z(plain, exact), _z(with_cv, exact)
    ratio = with_cv.var(0) / plain.var(0)
    print(f"sfe plain z = {z_plain.flatten().tolist()}\nsfe cv z = {z_cv.flatten().tolist()}")
    print(f"variance ratio cv / plain = {ratio.flatten().tolist()}")
    assert (z_plain.abs() < Z_MAX).all() and (z_cv.abs() < Z_MAX).all()
    assert (ratio < 0.5).all()


def test_running_average_tracks_the_signal_in_training():
    model, x_rep, x, logits = _enumerable_model("bernoulli-sfe", 64, {"sfe_decay": 0.9})
    model.train()
    for step in range(60):
        model.loss(x_rep, generator=torch.Generator().manual_seed(step))
    terms = model.loss(x_rep, generator=torch.Generator().manual_seed(99))
    assert abs(float(model.estimator.running_mean) - float(terms.recon.mean())) < 1.0


def test_straight_through_forward_uses_hard_bits():
    model, x_rep, x, logits = _enumerable_model("bernoulli-st", 1)
    with torch.no_grad():
        model.encoder.values.copy_(torch.tensor([[30.0, -30.0, 30.0], [-30.0, -30.0, 30.0]]))
    terms = model.loss(x)
    bits = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]], dtype=x.dtype)
    want = model.decoder.log_prob(x, model.decoder(bits))
    torch.testing.assert_close(terms.recon, want)
    terms.surrogate.backward()
    assert model.encoder.values.grad is not None


def _pathwise_cases():
    cases = []
    for family in PATHWISE:
        for objective in FAMILY_CLASSES[family].objectives:
            cases.append((family, objective, "fixed", {}))
        cases.append((family, "elbo", "learned", {}))
    # unequal temperatures: the KL by quadrature (`binary_concrete_kl`), differentiated here
    cases.append(("concrete", "elbo", "fixed", {"concrete_prior_beta": 3.0}))
    return cases


@pytest.mark.parametrize("family,objective,prior,extra", _pathwise_cases())
def test_pathwise_gradients_match_finite_differences(family, objective, prior, extra):
    """Autograd gradient of the surrogate w.r.t. the encoder outputs (and learned prior) equals
    the central difference (h = 1e-5, float64) of the same loss with the same noise."""
    torch.manual_seed(0)
    cfg = TrainConfig(
        family=family,
        objective=objective,
        prior=prior,
        latent_dim=3,
        hidden=(8,),
        beta=4.0,
        extra=extra,
    )
    model = build_model(cfg, D, None, "image").double()
    x, _ = _data()
    k = model.family.params_per_dim * 3
    model.encoder = FixedParams(
        torch.randn(2, k, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    )
    params = [model.encoder.values] + ([model.prior_module.param] if prior == "learned" else [])
    if prior == "learned":
        with torch.no_grad():
            model.prior_module.param.copy_(torch.tensor([0.3, -0.4, 0.8]))

    def loss() -> torch.Tensor:
        return model.loss(x, objective, generator=torch.Generator().manual_seed(7)).surrogate

    if objective == "elbo":  # every pathwise KL is closed form or quadrature: no noise in it
        a, b = (model.loss(x, generator=torch.Generator().manual_seed(s)).kl for s in (7, 8))
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    grads = torch.autograd.grad(loss(), params)
    h = 1e-5
    for p, g in zip(params, grads, strict=True):
        fd = torch.zeros_like(p)
        with torch.no_grad():
            for i in range(p.numel()):
                flat = p.view(-1)
                flat[i] += h
                up = loss()
                flat[i] -= 2 * h
                down = loss()
                flat[i] += h
                fd.view(-1)[i] = (up - down) / (2 * h)
        torch.testing.assert_close(g, fd, rtol=1e-4, atol=1e-5)


def test_straight_through_is_biased_and_the_z_test_sees_it():
    """The z-test has power: straight-through (biased by design) misses the exact gradient by
    tens of standard errors on the same model."""
    model, x_rep, x, logits = _enumerable_model("bernoulli-st", R)
    z = _z(_estimates(model, x_rep, seed=31), _exact_grad(model, x, logits))
    print(f"bernoulli-st: z = {[round(v, 1) for v in z.flatten().tolist()]}")
    assert z.abs().max() > 10 * Z_MAX


@pytest.mark.parametrize("family", ELBO_EXACT)
def test_decoder_gradients_match_enumeration(family):
    """The decoder's gradient (every weight, 234 coordinates) of the unbiased estimators matches
    the enumerated one: 200 independent estimates, each averaging 100 replicas, |t| < 5 per
    coordinate (t with 199 degrees of freedom: P(|t| > 5) = 1.3e-6 per coordinate, < 1e-3 for
    the whole test with Bonferroni)."""
    runs, reps = 200, 100
    model, x_rep, x, logits = _enumerable_model(family, reps)
    model.eval()
    params = list(model.decoder.parameters())
    codes = torch.tensor(list(itertools.product([0.0, 1.0], repeat=N_BITS)), dtype=x.dtype)
    f = model.decoder.log_prob(x, model.decoder(codes.unsqueeze(1)))  # [C, B]
    q = bernoulli_log_mass(codes.unsqueeze(1), logits).exp()  # [C, B]
    exact = torch.cat([g.flatten() for g in torch.autograd.grad((q * f).sum(0).mean(), params)])
    est = []
    for run in range(runs):
        terms = model.loss(x_rep, generator=torch.Generator().manual_seed(1000 + run))
        grads = torch.autograd.grad(-terms.surrogate, params)
        est.append(torch.cat([g.flatten() for g in grads]))
    est = torch.stack(est)  # [runs, P]
    t = (est.mean(0) - exact) / (est.std(0) / runs**0.5 + 1e-12)
    print(f"{family}: decoder |t| max {t.abs().max():.2f} over {t.numel()} coordinates")
    assert (t.abs() < 5.0).all()


@pytest.mark.slow
@pytest.mark.parametrize("n", [56, 96, 200])
def test_steplogistic_trains_three_epochs_of_mnist_mini_at_large_n(n):
    """Three epochs of mnist-mini (8,000 images, batch 128, Adam 3e-3, default network): no
    NaN/inf anywhere and a test ELBO well above its starting value (about 10 s per size)."""
    from binaryvae.data import load_dataset

    ds = load_dataset("mnist-mini")
    x, x_test = ds.train_x.float() / 255, ds.test_x[:1000].float() / 255
    torch.manual_seed(0)
    model = build_model(TrainConfig(family="steplogistic", latent_dim=n), 784, (28, 28))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    with torch.no_grad():
        before = float(model.loss(x_test).elbo.mean())
    for _ in range(3):
        perm = torch.randperm(x.shape[0])
        for i in range(0, x.shape[0], 128):
            terms = model.loss(x[perm[i : i + 128]])
            opt.zero_grad()
            terms.surrogate.backward()
            assert torch.isfinite(terms.surrogate)
            opt.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    with torch.no_grad():
        after = model.loss(x_test)
    assert torch.isfinite(after.elbo).all() and float(after.elbo.mean()) > before + 100
