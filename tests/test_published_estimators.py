"""The K-sample options and the estimators added by issue 26: multi-sample DisARM
(``--samples K``, K/2 pairs), ``samples`` as reinforce-loo's K, RELAX and RODEO.

Each estimator also runs through `binaryvae.testing.check_estimator` in tests/test_registry.py
(every registered name, and the K-sample ones at K = 4); the exact toy moments are in
tests/test_toy_benchmark.py. Here: the options' parsing and refusals, the CLI's ``--samples``,
and each estimator against a hand-written reference on the same noise.
"""

from __future__ import annotations

import json

import pytest
import torch

from _runs_helpers import one_line_error, train_argv
from binaryvae.cli import main
from binaryvae.config import ModelOptions, TrainConfig
from binaryvae.errors import BadInput
from binaryvae.models.estimators import DisARM, make_estimator


def _f(bits: torch.Tensor) -> torch.Tensor:
    w = torch.linspace(-2.0, 3.0, bits.shape[-1], dtype=bits.dtype)
    return torch.sin(bits @ w) + (bits * w).square().sum(-1)


# ------------------------------------------------------------------ options
def test_samples_sets_k_of_disarm_and_reinforce_loo():
    est = make_estimator("disarm", ModelOptions.from_extra({"samples": 6}))
    assert (est.samples, est.samples_per_step) == (6, 6)
    assert make_estimator("disarm").samples_per_step == 2
    assert make_estimator("reinforce-loo", ModelOptions.from_extra({"samples": 3})).samples == 3
    assert make_estimator("reinforce-loo", ModelOptions.from_extra({"loo_samples": 5})).samples == 5
    both = ModelOptions.from_extra({"samples": 4, "loo_samples": 4})
    assert make_estimator("reinforce-loo", both).samples == 4


def test_contradicting_or_odd_sample_counts_are_refused():
    with pytest.raises(BadInput, match=r"extra.samples \(4\) and extra.loo_samples \(3\)"):
        ModelOptions.from_extra({"samples": 4, "loo_samples": 3})
    with pytest.raises(BadInput, match="extra.samples must be an even K >= 2, got 3"):
        make_estimator("disarm", ModelOptions.from_extra({"samples": 3}))
    with pytest.raises(BadInput, match="extra.samples"):
        ModelOptions.from_extra({"samples": 1})


def test_multi_sample_disarm_is_the_mean_of_its_pairs_estimates():
    """K = 6: three pairs from u [3, B, n] (the generator's first draw); the logits' gradient
    is the mean of the three DisARM estimates (Dong et al. 2020, section 3) written out here,
    the value the mean of f over the six codes."""
    torch.manual_seed(0)
    logits = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    est = DisARM(samples=6)
    out = est(logits, _f, torch.Generator().manual_seed(3))
    (grad,) = torch.autograd.grad(out.surrogate.sum(), logits)
    u = torch.rand((3, 5, 4), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    p = torch.sigmoid(logits.detach())
    want = torch.zeros(5, 4, dtype=torch.float64)
    values = []
    for m in range(3):
        b = (u[m] < p).double()
        bt = (1 - u[m] < p).double()
        fb, fbt = _f(b), _f(bt)
        values += [fb, fbt]
        for i in range(4):
            sign = torch.where(bt[:, i] > 0, -1.0, 1.0)
            differ = (b[:, i] != bt[:, i]).double()
            want[:, i] += 0.5 * (fb - fbt) * sign * differ * torch.sigmoid(logits[:, i].abs())
    torch.testing.assert_close(grad, want.detach() / 3, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.value, torch.stack(values).mean(0), rtol=1e-12, atol=1e-12)


def test_disarm_with_two_samples_is_the_single_pair_bit_for_bit():
    logits = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    outs = []
    for est in (DisARM(), DisARM(samples=2)):
        out = est(logits, _f, torch.Generator().manual_seed(11))
        outs.append((out.value, torch.autograd.grad(out.surrogate.sum(), logits)[0]))
    assert all(torch.equal(a, b) for a, b in zip(outs[0], outs[1], strict=True))


# ------------------------------------------------------------------ the command line
def test_train_samples_option_reaches_the_estimator(tmp_path):
    from binaryvae.cli import build_parser
    from binaryvae.cli.train import config_from_args
    from binaryvae.models import build_model

    args = build_parser().parse_args(train_argv(tmp_path / "r", "--family", "bernoulli-disarm",
                                                "--samples", "4"))  # fmt: skip
    config = config_from_args(args)
    assert config.extra == {"samples": 4}
    model = build_model(config, 784, None, "image")
    assert model.decoder_evaluations_per_step == 4


def test_train_samples_replaces_loo_samples_of_a_config(tmp_path):
    from binaryvae.cli import build_parser
    from binaryvae.cli.train import config_from_args

    path = tmp_path / "config.json"
    path.write_text(json.dumps(TrainConfig(family="bernoulli-reinforce-loo",
                                           extra={"loo_samples": 3}).to_dict()))  # fmt: skip
    args = build_parser().parse_args(["train", "--out", str(tmp_path / "r"), "--config",
                                      str(path), "--samples", "5"])  # fmt: skip
    assert config_from_args(args).extra == {"samples": 5}


def test_train_samples_for_a_family_without_it_is_one_line_exit_2(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_argv(out, "--family", "bernoulli-arm", "--samples", "4")) == 2
    err = one_line_error(capsys)
    assert "extra.samples" in err and "bernoulli-arm" in err
    assert not out.exists()
    assert main(train_argv(out, "--family", "bernoulli-disarm", "--samples", "3")) == 2
    assert "even" in one_line_error(capsys)
    assert not out.exists()


# ------------------------------------------------------------------ RELAX
def test_relax_conditional_sample_has_the_law_of_z_given_b():
    """z = a - logit(u) has P(z > t) = sigmoid(a - t); z~ = conditional_logistic(a, b, v) must
    be its quantile at v given the sign b: P(z > z~ | z > 0) = v (b = 1) and
    P(z < z~ | z < 0) = 1 - v, i.e. (sigmoid(a - z~) - p) / (1 - p) = v (b = 0)."""
    from binaryvae.models.published.relax import conditional_logistic

    a = torch.tensor([-6.0, -1.0, 0.0, 0.7, 4.0], dtype=torch.float64)[:, None].expand(5, 7)
    v = torch.linspace(0.01, 0.99, 7, dtype=torch.float64).expand(5, 7)
    p = torch.sigmoid(a)
    one = conditional_logistic(a, torch.ones_like(a), v)
    zero = conditional_logistic(a, torch.zeros_like(a), v)
    assert (one > 0).all() and (zero < 0).all()
    torch.testing.assert_close(torch.sigmoid(a - one) / p, v, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close((torch.sigmoid(a - zero) - p) / (1 - p), v, rtol=1e-9,
                               atol=1e-12)  # fmt: skip


def _relax_model(replicas: int, extra: dict):
    from binaryvae.models.published import RELAX
    from binaryvae.testing import enumerable_model

    return enumerable_model(RELAX, replicas, extra, prior="learned")


def test_check_estimator_sees_relax_with_z_tilde_given_the_wrong_bit(monkeypatch):
    """The enumeration test has power against RELAX's subtle part: z~ drawn given the other
    value of b (p(z | 1 - b) instead of p(z | b)): the score term's c(z~) then no longer has
    the conditional mean that cancels grad E c(z) - E grad c(z~)."""
    from binaryvae.models.published import relax
    from binaryvae.testing import exact_gradient, logit_estimates, z_scores

    right = relax.conditional_logistic
    monkeypatch.setattr(relax, "conditional_logistic", lambda a, b, v: right(a, 1 - b, v))
    model, x_rep, x, logits = _relax_model(20000, {"learning_signal": "elbo"})
    model.eval()
    z = z_scores(logit_estimates(model, x_rep, 3, 20000), exact_gradient(model, x, logits))
    print("relax with z~ given the wrong bit: max |z| =", float(z.abs().max()))
    assert z.abs().max() > 10


def _tr_var(est: torch.Tensor) -> float:
    return float(est.var(0).sum())


def test_relax_trains_its_control_variate_down_in_variance_and_stays_unbiased():
    """Algorithm 2 on the enumeration model: 30 Adam steps on phi alone (lr 0.03, the gradient
    the estimator injects) lower the trace of the logits' estimate's variance, measured on
    10,000 fresh draws before and after, and the mean still matches the exact gradient."""
    from binaryvae.testing import Z_MAX, exact_gradient, logit_estimates, z_scores

    model, x_rep, x, logits = _relax_model(10000, {"learning_signal": "reconstruction"})
    exact = exact_gradient(model, x, logits)
    model.eval()
    before = logit_estimates(model, x_rep, 21, 10000)
    small, small_x, _, _ = _relax_model(250, {"learning_signal": "reconstruction"})
    phi = list(small.estimator.parameters())
    start = [p.detach().clone() for p in phi]
    opt = torch.optim.Adam(phi, lr=0.03)
    small.train()
    for step in range(30):
        small.zero_grad()
        gen = torch.Generator().manual_seed(500 + step)
        small.loss(small_x, generator=gen).surrogate.backward()
        opt.step()
    assert all(not torch.equal(a, b.detach()) for a, b in zip(start, phi, strict=True))
    model.estimator.load_state_dict(small.estimator.state_dict())
    model.eval()
    after = logit_estimates(model, x_rep, 22, 10000)
    print("tr Var before", _tr_var(before), "after", _tr_var(after))
    assert _tr_var(after) < 0.9 * _tr_var(before)
    assert z_scores(after, exact).abs().max() < Z_MAX


def test_relax_injects_the_gradient_of_the_mean_squared_estimate_into_phi_alone():
    """In training mode phi's gradient is d/dphi of the batch mean of ||g||^2, g the logits'
    estimate: checked by central differences of that mean (computed from the logits'
    gradients in evaluation mode, on the same noise) along eta and lambda; the decoder's
    gradient is the one evaluation mode gives (the injected term reaches phi only)."""
    from binaryvae.testing import logit_estimates

    model, x_rep, _, _ = _relax_model(50, {"learning_signal": "elbo"})

    def mean_square() -> float:
        model.eval()
        est = logit_estimates(model, x_rep, 4, 50)
        return float(est.square().sum(-1).mean())

    model.train()
    model.zero_grad()
    model.loss(x_rep, generator=torch.Generator().manual_seed(4)).surrogate.backward()
    est = model.estimator
    grads = {"scale": est.scale.grad.clone(), "log_temperature": est.log_temperature.grad.clone()}
    decoder_train = [p.grad.clone() for p in model.decoder.parameters()]
    model.eval()
    model.zero_grad()
    model.loss(x_rep, generator=torch.Generator().manual_seed(4)).surrogate.backward()
    for a, b in zip(decoder_train, model.decoder.parameters(), strict=True):
        torch.testing.assert_close(a, b.grad, rtol=1e-12, atol=1e-12)
    h = 1e-5
    for name, grad in grads.items():
        param = getattr(est, name)
        with torch.no_grad():
            param += h
        up = mean_square()
        with torch.no_grad():
            param -= 2 * h
        down = mean_square()
        with torch.no_grad():
            param += h
        assert float(grad.sum()) == pytest.approx((up - down) / (2 * h), rel=1e-5)


def test_relax_lr_gives_the_control_variate_its_own_adam_group():
    from binaryvae.models import build_model
    from binaryvae.training.optim import make_optimizer

    config = TrainConfig(family="bernoulli-relax", latent_dim=5, hidden=(8,),
                         extra={"relax_lr": 0.02, "relax_hidden": 6})  # fmt: skip
    model = build_model(config, 784, (28, 28))
    assert model.estimator.w1.shape == (10, 6) and model.decoder_evaluations_per_step == 3
    groups = make_optimizer(model, 1e-3).param_groups
    assert [g["lr"] for g in groups] == [1e-3, 0.02]
    assert [id(p) for p in groups[1]["params"]] == [id(p) for p in model.estimator.parameters()]
    plain = build_model(TrainConfig(family="bernoulli-relax", latent_dim=5, hidden=(8,)), 784)
    assert len(make_optimizer(plain, 1e-3).param_groups) == 1
    with pytest.raises(BadInput, match="extra.relax_lr"):
        ModelOptions.from_extra({"relax_lr": 0})


# ------------------------------------------------------------------ RODEO
def _rodeo_model(replicas: int, extra: dict, alpha: float = 0.7, beta: float = -0.5):
    """The enumeration model with RODEO, its control variates switched on (alpha, beta != 0;
    at the reference's initial alpha = beta = 0 it is REINFORCE-LOO)."""
    from binaryvae.models.published import RODEO
    from binaryvae.testing import enumerable_model

    model, x_rep, x, logits = enumerable_model(RODEO, replicas, extra, prior="learned")
    with torch.no_grad():
        model.estimator.alpha.fill_(alpha)
        model.estimator.beta.fill_(beta)
    return model, x_rep, x, logits


@pytest.mark.parametrize("k, signal", [
    (2, "reconstruction"), (2, "elbo"), (3, "elbo"),
    pytest.param(4, "reconstruction", marks=pytest.mark.slow),
    pytest.param(4, "elbo", marks=pytest.mark.slow),
])  # fmt: skip
def test_rodeo_with_its_control_variates_on_is_unbiased(k, signal):
    """The enumeration z-test (learned prior) with alpha, beta != 0 and a random network: the
    registry's check_estimator sees RODEO at its initial alpha = beta = 0 (REINFORCE-LOO)."""
    from binaryvae.testing import Z_MAX, exact_gradient, logit_estimates, z_scores

    extra = {"samples": k, "learning_signal": signal, "rodeo_hidden": 16}
    model, x_rep, x, logits = _rodeo_model(20000, extra)
    model.eval()
    z = z_scores(logit_estimates(model, x_rep, 5, 20000), exact_gradient(model, x, logits))
    assert z.abs().max() < Z_MAX


def test_check_estimator_sees_rodeo_whose_surrogate_reads_its_own_sample(monkeypatch):
    """The planted bug: h_k built from all K samples, b_k included; its Stein terms then lose
    their zero mean and the enumeration test resolves the bias."""
    from binaryvae.models.published import rodeo
    from binaryvae.testing import exact_gradient, logit_estimates, z_scores

    monkeypatch.setattr(rodeo, "others", lambda k, device: torch.arange(k).expand(k, k))
    extra = {"samples": 2, "rodeo_hidden": 16}
    model, x_rep, x, logits = _rodeo_model(20000, extra, alpha=2.0, beta=2.0)
    model.eval()
    z = z_scores(logit_estimates(model, x_rep, 5, 20000), exact_gradient(model, x, logits))
    print("rodeo reading its own sample: max |z| =", float(z.abs().max()))
    assert z.abs().max() > 10


def test_gibbs_stein_operator_has_mean_zero_by_enumeration():
    """E_q[(A h)(x)] = 0 for an arbitrary h on {0, 1}^3, summed over the 8 codes exactly."""
    import itertools

    from binaryvae.models.published.rodeo import gibbs_stein

    theta = torch.tensor([0.2, 0.6, 0.9], dtype=torch.float64)
    table = torch.randn(8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    codes = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)), dtype=torch.float64)

    def h(x):
        return table[(x * torch.tensor([4.0, 2.0, 1.0], dtype=torch.float64)).sum(-1).long()]

    flips = codes.unsqueeze(1) + torch.eye(3, dtype=torch.float64) * (1 - 2 * codes.unsqueeze(1))
    stein = gibbs_stein(h(flips), h(codes), codes, theta)  # [8]
    mass = (theta**codes * (1 - theta) ** (1 - codes)).prod(-1)
    assert float((mass * stein).sum()) == pytest.approx(0.0, abs=1e-15)
    assert float((mass * stein.abs()).sum()) > 0.1


def test_rodeo_trains_its_control_variates_down_in_variance_and_stays_unbiased():
    from binaryvae.testing import Z_MAX, exact_gradient, logit_estimates, z_scores

    extra = {"samples": 2, "learning_signal": "reconstruction"}
    model, x_rep, x, logits = _rodeo_model(10000, extra, alpha=0.0, beta=0.0)
    exact = exact_gradient(model, x, logits)
    model.eval()
    before = logit_estimates(model, x_rep, 31, 10000)
    small, small_x, _, _ = _rodeo_model(250, extra, alpha=0.0, beta=0.0)
    opt = torch.optim.Adam(small.estimator.parameters(), lr=0.03)
    small.train()
    for step in range(30):
        small.zero_grad()
        gen = torch.Generator().manual_seed(700 + step)
        small.loss(small_x, generator=gen).surrogate.backward()
        opt.step()
    assert float(small.estimator.alpha.detach()) != 0.0
    assert float(small.estimator.beta.detach()) != 0.0
    model.estimator.load_state_dict(small.estimator.state_dict())
    model.eval()
    after = logit_estimates(model, x_rep, 32, 10000)
    print("rodeo tr Var before", _tr_var(before), "after", _tr_var(after))
    assert _tr_var(after) < 0.9 * _tr_var(before)
    assert z_scores(after, exact).abs().max() < Z_MAX


def test_rodeo_with_its_control_variates_on_passes_check_estimator():
    """Every check (the contract, the enumeration z-test, replica and resume equality) on
    RODEO whose alpha and beta start away from 0, so that the network and the injected
    variance gradient take part in all of them."""
    from binaryvae.models.published import RODEO
    from binaryvae.testing import check_estimator

    class On(RODEO):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            with torch.no_grad():
                self.alpha.fill_(0.6)
                self.beta.fill_(-0.4)

    report = check_estimator(On, {"samples": 3, "rodeo_hidden": 16})
    assert report.checks == ["contract", "unbiased", "replicas", "resume"]


@pytest.mark.slow
@pytest.mark.parametrize("family, extra", [
    ("bernoulli-relax", {"relax_lr": 0.01, "relax_hidden": 8}),
    ("bernoulli-rodeo", {"samples": 3, "rodeo_lr": 0.01, "rodeo_hidden": 8}),
])  # fmt: skip
def test_a_run_with_a_learned_control_variate_resumes_exactly(family, extra, tmp_path):
    """train --steps 6 against --steps 3 then --resume --steps 6: the same metric rows and the
    same final parameters, the control variate's (in its own Adam group) included."""
    from _runs_helpers import metric_rows, tiny_config
    from binaryvae.runs import train_run
    from binaryvae.training import load_checkpoint

    def config(steps):
        return tiny_config(family=family, epochs=None, steps=steps, extra=extra)

    whole, part = tmp_path / "whole", tmp_path / "part"
    train_run(config(6), whole, progress=False)
    train_run(config(3), part, progress=False)
    train_run(config(6), part, resume=True, progress=False)
    assert metric_rows(part) == metric_rows(whole)
    a = load_checkpoint(whole / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(part / "checkpoints" / "last.pt")["model"]
    assert any(k.startswith("estimator.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("family, extra", [
    ("bernoulli-relax", {"relax_hidden": 8, "relax_lr": 3e-3}),
    ("bernoulli-rodeo", {"samples": 3, "rodeo_hidden": 8, "rodeo_lr": 3e-3}),
])  # fmt: skip
def test_stacked_replicas_of_a_learned_control_variate_equal_their_single_runs(family, extra):
    """20 Adam steps (batch 40) of three seeds stacked against the three single runs, in
    float64: every parameter (the control variate's, in its own Adam group, included) to 1e-8
    relative. (In float32 the learned control variates amplify round-off: 4e-4 for relax after
    50 steps, against 4e-13 in float64; the estimator's one-step replica equality is also in
    check_estimator.)"""
    from binaryvae.data import EpochBatches, load_dataset
    from binaryvae.models import build_model
    from binaryvae.models.replicas import (
        ReplicaGenerator,
        replica_layouts,
        stack_models,
        unstack_state,
    )
    from binaryvae.training import fit_epoch, make_optimizer

    seeds, x = [3, 0, 7], load_dataset("mnist-mini").train_x[:800]

    def model(seed):
        torch.manual_seed(seed)
        config = TrainConfig(family=family, latent_dim=6, hidden=(16,), batch_size=40,
                             seed=seed, extra=extra)  # fmt: skip
        return build_model(config, 784, (28, 28)).double()

    def batches(seed):
        epoch = EpochBatches(x, batch_size=40, binarize="none", seed=seed).epoch(1)
        return (xb.double() for xb in epoch)

    singles = []
    for seed in seeds:
        m = model(seed)
        fit_epoch(m, make_optimizer(m, 1e-3), batches(seed), epoch=1, objective="elbo",
                  generator=torch.Generator().manual_seed(100 + seed))  # fmt: skip
        singles.append(m)
    stacked = stack_models([model(s) for s in seeds])
    together = (torch.stack(xs) for xs in zip(*[batches(s) for s in seeds], strict=True))
    gen = ReplicaGenerator([torch.Generator().manual_seed(100 + s) for s in seeds])
    fit_epoch(stacked, make_optimizer(stacked, 1e-3), together, epoch=1, objective="elbo",
              generator=gen, replicas=len(seeds))  # fmt: skip
    layouts = replica_layouts(stacked)
    for r, single in enumerate(singles):
        state = unstack_state(stacked.state_dict(), r, layouts, len(seeds))
        for key, value in single.state_dict().items():
            scale = value.abs().max().clamp_min(1e-12)
            assert (state[key] - value).abs().max() <= 1e-8 * scale, key
