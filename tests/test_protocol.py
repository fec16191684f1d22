"""The reference protocol's options (issue 28), each against a hand-computed case, and the
presets that set them all.

References: numpy for the centred input, the signed decoder input, the data-mean bias and the
split; the Keras glorot-uniform bound sqrt(6 / (fan_in + fan_out)) and U(-b, b)'s variance
b^2 / 3; plain SGD's step -lr * grad; the EMA recursion written out by hand; the enumeration
of all 2^3 codes (tests/test_estimators.py's z-test) for the independent decoder sample.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math

import numpy as np
import pytest
import torch

from _runs_helpers import DATASETS
from binaryvae.cli import main
from binaryvae.config import PROTOCOL_FIELDS, PROTOCOLS, TrainConfig, protocol_values
from binaryvae.data import Dataset, load_dataset, train_mean, with_validation
from binaryvae.distributions import bernoulli_kl, bernoulli_log_mass
from binaryvae.errors import BadInput
from binaryvae.models import build_model
from binaryvae.models.grad_moments import ParamGradientEMA
from binaryvae.models.networks import InputAffine, glorot_bound
from binaryvae.runs.build import build_replica_model, prepare
from binaryvae.runs.sweep_grid import Grid, grid_from_values
from binaryvae.training import make_optimizer
from test_estimators import N_BITS, Z_MAX, FixedParams, R, _data, _estimates, _exact_grad, _z

INDEPENDENT = [
    "bernoulli-reinforce-loo",
    "bernoulli-arm",
    "bernoulli-disarm",
    "bernoulli-arms",
    "bernoulli-arms-normal",
]


def _stand_in(n_train: int = 60, n_test: int = 10, d: int = 12, seed: int = 0) -> Dataset:
    """A small uint8 image dataset: pixel 0 always 0, pixel 1 always 255 (the clip's cases)."""
    g = torch.Generator().manual_seed(seed)
    train = torch.randint(0, 256, (n_train, d), generator=g, dtype=torch.uint8)
    test = torch.randint(0, 256, (n_test, d), generator=g, dtype=torch.uint8)
    train[:, 0], train[:, 1] = 0, 255
    return Dataset("stand-in", "stand-in", train, test, image_shape=(3, 4))


def _first_linear_input(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What the first nn.Linear inside ``module`` receives when ``module(x)`` runs."""
    first = next(m for m in module.modules() if isinstance(m, torch.nn.Linear))
    seen = []
    handle = first.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach()))
    try:
        module(x)
    finally:
        handle.remove()
    return seen[0]


# ----------------------------------------------------------------------------- 1, 2: inputs
def test_centred_encoder_input_is_x_minus_the_training_splits_mean():
    ds = _stand_in()
    cfg = TrainConfig(family="bernoulli-disarm", latent_dim=3, hidden=(5,), encoder_input="centred",
                      binarize="dynamic", validation=20)  # fmt: skip
    model = build_replica_model(cfg, ds)
    # numpy: the first 40 images' grey-level mean (dynamic binarization's expectation)
    mean = ds.train_x[:40].numpy().astype(np.float64).mean(0) / 255.0
    x = torch.rand(7, 12)
    got = _first_linear_input(model.encoder, x).numpy()
    np.testing.assert_allclose(got, x.numpy() - mean, rtol=0, atol=1e-6)
    assert isinstance(model.encoder, InputAffine)
    # the mean travels with the model's state (a checkpoint restores it)
    assert "encoder.shift" in model.state_dict()


def test_train_mean_follows_the_pixel_mode():
    ds = _stand_in()
    x = ds.train_x.numpy().astype(np.float64)
    np.testing.assert_allclose(train_mean(ds.train_x, "none").numpy(), x.mean(0) / 255, atol=1e-6)
    np.testing.assert_allclose(train_mean(ds.train_x, "dynamic").numpy(), x.mean(0) / 255,
                               atol=1e-6)  # fmt: skip
    np.testing.assert_allclose(train_mean(ds.train_x, "threshold").numpy(),
                               (x >= 128).mean(0), atol=1e-6)  # fmt: skip


def test_signed_decoder_input_is_two_b_minus_one():
    cfg = TrainConfig(family="bernoulli-disarm", latent_dim=6, hidden=(5,), decoder_input="signed")
    model = build_model(cfg, 12, (3, 4), "image")
    b = (torch.rand(4, 6) < 0.5).float()
    got = _first_linear_input(model.decoder.net, b).numpy()
    np.testing.assert_array_equal(got, 2.0 * b.numpy() - 1.0)
    # the default: the bits themselves
    plain = build_model(dataclasses.replace(cfg, decoder_input="bits"), 12, (3, 4), "image")
    np.testing.assert_array_equal(_first_linear_input(plain.decoder.net, b).numpy(), b.numpy())


# ----------------------------------------------------------------------------- 3: the bias
def test_data_mean_decoder_bias_is_the_logit_of_the_clipped_mean():
    ds = _stand_in()
    cfg = TrainConfig(family="bernoulli-disarm", latent_dim=3, hidden=(5,),
                      decoder_bias="data-mean", binarize="threshold")  # fmt: skip
    model = build_replica_model(cfg, ds)
    p = np.clip((ds.train_x.numpy() >= 128).mean(0), 0.001, 0.999)
    want = np.log(p) - np.log(1.0 - p)
    got = model.decoder.net.net[-1].bias.detach().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert got[0] == pytest.approx(math.log(0.001 / 0.999), abs=1e-4)  # clipped at 0.001
    assert got[1] == pytest.approx(math.log(0.999 / 0.001), abs=1e-4)  # and at 0.999


def test_data_mean_bias_refuses_a_decoder_it_cannot_set():
    with pytest.raises(BadInput, match="decoder_bias 'data-mean'.*gaussian"):
        build_model(TrainConfig(family="gaussian", latent_dim=2, hidden=(4,),
                                decoder_bias="data-mean"), 8, None, "real")  # fmt: skip
    with pytest.raises(BadInput, match="decoder_bias 'data-mean'.*conv"):
        build_model(TrainConfig(family="bernoulli-disarm", latent_dim=2, network="conv",
                                decoder_bias="data-mean"), 784, (28, 28), "image")  # fmt: skip


# ----------------------------------------------------------------------------- 4: glorot
def test_glorot_init_bounds_the_weights_zeroes_the_biases_and_has_uniform_variance():
    torch.manual_seed(3)
    cfg = TrainConfig(family="bernoulli-disarm", latent_dim=200, hidden=(200, 200),
                      activation="leaky_relu", init="glorot")  # fmt: skip
    model = build_model(cfg, 784, (28, 28), "image")
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(layers) == 6
    for layer in layers:
        fan_out, fan_in = layer.weight.shape
        bound = math.sqrt(6.0 / (fan_in + fan_out))  # Keras glorot_uniform's limit
        assert glorot_bound(layer.weight) == pytest.approx(bound)
        w = layer.weight.detach().double()
        assert w.abs().max() <= bound
        assert torch.count_nonzero(layer.bias) == 0
        # U(-b, b) has variance b^2 / 3; >= 40,000 draws: relative s.e. < 0.5%
        assert w.var().item() == pytest.approx(bound**2 / 3, rel=0.03)
    # the first layer: 784 -> 200, bound 0.0781 (PyTorch's default is 1/sqrt(784) = 0.0357)
    assert glorot_bound(layers[0].weight) == pytest.approx(0.0781, abs=1e-4)


# ----------------------------------------------------------------------------- 5, 6: optim
def test_prior_sgd_steps_by_minus_lr_grad_and_adam_leaves_the_prior_alone():
    cfg = TrainConfig(family="bernoulli-disarm", latent_dim=5, hidden=(6,), prior="learned",
                      prior_sgd_lr=1e-2, adam_eps=1e-7, lr=1e-3)  # fmt: skip
    torch.manual_seed(0)
    model = build_model(cfg, 12, (3, 4), "image").double()
    opt = make_optimizer(model, cfg.lr)
    prior = model.prior_module.param
    x = (torch.rand(8, 12, dtype=torch.float64) < 0.5).double()
    for step in range(2):
        opt.zero_grad()
        model.loss(x, generator=torch.Generator().manual_seed(step)).surrogate.backward()
        before, grad = prior.detach().clone(), prior.grad.detach().clone()
        enc_before = model.encoder.net[0].weight.detach().clone()
        opt.step()
        torch.testing.assert_close(prior.detach(), before - 1e-2 * grad, rtol=0, atol=1e-15)
        assert not torch.equal(model.encoder.net[0].weight, enc_before)  # Adam moved these
    assert prior not in opt.state  # no Adam moments for the prior
    assert all(p in opt.state for p in model.encoder.parameters())
    groups = opt.param_groups
    assert [g.get("sgd", False) for g in groups] == [False, True]
    assert groups[1]["params"] == [prior] and groups[1]["lr"] == 1e-2
    assert all(g["eps"] == 1e-7 for g in groups)


def test_adam_eps_is_recorded_in_the_param_groups_and_the_default_is_plain_adam():
    model = build_model(TrainConfig(latent_dim=3, hidden=(4,), adam_eps=1e-7), 12, (3, 4))
    opt = make_optimizer(model, 1e-4)
    assert type(opt) is torch.optim.Adam  # one option alone: still torch's Adam
    assert [g["eps"] for g in opt.param_groups] == [1e-7]
    default = make_optimizer(build_model(TrainConfig(latent_dim=3, hidden=(4,)), 12, (3, 4)), 1e-4)
    assert type(default) is torch.optim.Adam and default.param_groups[0]["eps"] == 1e-8


def test_prior_sgd_needs_a_learned_prior():
    with pytest.raises(BadInput, match="prior_sgd_lr.*learned"):
        TrainConfig(prior_sgd_lr=1e-2)


# ----------------------------------------------------------------------------- 7: the split
def test_validation_is_the_last_n_training_images_and_training_the_first():
    ds = _stand_in(n_train=60)
    split = with_validation(ds, 10)
    assert split.train_x.shape[0] == 50 and split.valid_x.shape[0] == 10
    assert torch.equal(split.train_x, ds.train_x[:50])
    assert torch.equal(split.valid_x, ds.train_x[50:])
    assert with_validation(split, 10) is split  # already so
    again = with_validation(split, 20)  # put back together, then split anew
    assert torch.equal(again.train_x, ds.train_x[:40])
    assert torch.equal(again.valid_x, ds.train_x[40:])
    whole = with_validation(split, 0)
    assert torch.equal(whole.train_x, ds.train_x) and whole.valid_x is None
    assert split.fingerprint == ds.fingerprint
    with pytest.raises(BadInput, match="validation must hold 0 to 59"):
        with_validation(ds, 60)


def test_the_feature_classifier_sees_the_whole_training_split_whatever_is_held_out():
    from binaryvae.training.classifier import dataset_fingerprint

    ds = _stand_in()
    ds.train_y = torch.arange(60) % 3
    ds.test_y = torch.arange(10) % 3
    assert dataset_fingerprint(with_validation(ds, 10)) == dataset_fingerprint(ds)
    other = dataclasses.replace(ds, train_x=ds.train_x.flip(0))
    assert dataset_fingerprint(with_validation(other, 10)) != dataset_fingerprint(ds)


def test_prepare_splits_the_training_data_and_refuses_too_large_a_validation():
    cfg = TrainConfig(dataset="mnist-mini", latent_dim=2, hidden=(4,), validation=2000,
                      threads=1, device="cpu")  # fmt: skip
    full = load_dataset("mnist-mini")
    prepared = prepare(cfg, dataset=full)
    assert prepared.dataset.train_x.shape[0] == 6000
    assert torch.equal(prepared.dataset.valid_x, full.train_x[6000:])
    with pytest.raises(BadInput, match="validation must hold 0 to 7999"):
        prepare(dataclasses.replace(cfg, validation=8000), dataset=full)


@pytest.mark.skipif(not (DATASETS / "fashion-mnist").is_dir(), reason="shared datasets absent")
def test_fashion_mnist_splits_50000_and_the_last_10000():
    full = load_dataset("fashion-mnist", data_dir=DATASETS, download=False)
    split = with_validation(full, 10_000)
    assert split.train_x.shape[0] == 50_000 and split.valid_x.shape[0] == 10_000
    assert torch.equal(split.valid_x, full.train_x[-10_000:])
    assert torch.equal(split.valid_y, full.train_y[-10_000:])


# ----------------------------------------------------------------------------- 5: the sample
def _independent_model(family: str, replicas: int, extra: dict | None = None, **fields):
    """test_estimators' enumerable 3-bit model, built with decoder_sample 'independent'."""
    torch.manual_seed(1)
    cfg = TrainConfig(family=family, latent_dim=N_BITS, hidden=(16,), extra=extra or {},
                      decoder_sample="independent", **fields)  # fmt: skip
    model = build_model(cfg, 10, None, "image").double()
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.mul_(3.0)
        if isinstance(model.prior_module.param, torch.nn.Parameter):
            model.prior_module.param.copy_(torch.tensor([0.4, -0.7, 1.1]))
    x, logits = _data()
    model.encoder = FixedParams(logits.repeat(replicas, 1))
    return model, x.repeat(replicas, 1), x, logits


@pytest.mark.parametrize("family", INDEPENDENT)
@pytest.mark.parametrize("extra", [{}, {"learning_signal": "elbo"}])
def test_independent_sample_keeps_the_encoder_gradient_unbiased(family, extra):
    model, x_rep, x, logits = _independent_model(family, R, extra)
    model.eval()
    assert model.estimator.independent
    z = _z(_estimates(model, x_rep, seed=23), _exact_grad(model, x, logits))
    assert (z.abs() < Z_MAX).all(), z


@pytest.mark.parametrize("family", INDEPENDENT)
def test_independent_sample_gives_unbiased_decoder_and_prior_gradients(family):
    """Decoder weights and learned prior logits, learning signal = the whole ELBO (the
    reference's configuration): 150 estimates of 100 replicas each against the enumerated
    gradient, |t| < 5 per coordinate (P < 1e-3 for the test, Bonferroni)."""
    runs, reps = 150, 100
    model, x_rep, x, logits = _independent_model(family, reps, {"learning_signal": "elbo"},
                                                 prior="learned")  # fmt: skip
    model.eval()
    params = [*model.decoder.parameters(), model.prior_module.param]
    codes = torch.tensor(list(itertools.product([0.0, 1.0], repeat=N_BITS)), dtype=x.dtype)
    f = model.decoder.log_prob(x, model.decoder(codes.unsqueeze(1)))  # [C, B]
    q = bernoulli_log_mass(codes.unsqueeze(1), logits).exp()  # [C, B]
    elbo = (q * f).sum(0) - bernoulli_kl(logits, model.prior_module.param)  # [B]
    exact = torch.cat([g.flatten() for g in torch.autograd.grad(elbo.mean(), params)])
    est = []
    for run in range(runs):
        terms = model.loss(x_rep, generator=torch.Generator().manual_seed(5000 + run))
        est.append(torch.cat([g.flatten() for g in torch.autograd.grad(-terms.surrogate, params)]))
    est = torch.stack(est)
    t = (est.mean(0) - exact) / (est.std(0) / runs**0.5 + 1e-12)
    assert (t.abs() < 5.0).all(), t.abs().max()


def test_independent_sample_costs_one_more_decoder_pass_and_is_refused_where_it_means_nothing():
    model, *_ = _independent_model("bernoulli-disarm", 1)
    assert model.decoder_evaluations_per_step == 3
    with pytest.raises(BadInput, match="decoder_sample 'independent' applies to"):
        build_model(TrainConfig(family="steplogistic", latent_dim=2, hidden=(4,),
                                decoder_sample="independent"), 12, (3, 4))  # fmt: skip


# ----------------------------------------------------------------------------- 9: the EMA
def test_param_gradient_ema_is_the_reference_recursion():
    """m1 <- 0.999 m1 + 0.001 g, m2 <- 0.999 m2 + 0.001 g^2 from zero; the quantity is the mean
    over components of m2 - m1^2 (numpy, by hand), updated once per optimizer step."""
    w = torch.nn.Parameter(torch.zeros(2, 3))
    b = torch.nn.Parameter(torch.zeros(3))
    tracker = ParamGradientEMA([("w", w), ("b", b)])
    rng = np.random.default_rng(0)
    grads = [(rng.normal(size=(2, 3)), rng.normal(size=3)) for _ in range(5)]
    m1 = [np.zeros((2, 3)), np.zeros(3)]
    m2 = [np.zeros((2, 3)), np.zeros(3)]
    for gw, gb in grads:
        w.grad = torch.tensor(gw, dtype=torch.float32)
        b.grad = torch.tensor(gb, dtype=torch.float32)
        tracker.update()
        for i, g in enumerate((gw, gb)):
            m1[i] = 0.999 * m1[i] + 0.001 * g
            m2[i] = 0.999 * m2[i] + 0.001 * g * g
    want = np.concatenate([(m2[i] - m1[i] ** 2).ravel() for i in range(2)]).mean()
    assert tracker.variance() == pytest.approx(want, rel=1e-4)


def test_the_optimizer_folds_each_steps_encoder_gradient_into_the_ema():
    cfg = TrainConfig(family="bernoulli-disarm", latent_dim=3, hidden=(4,), grad_var_param_ema=True)
    torch.manual_seed(0)
    model = build_model(cfg, 12, (3, 4), "image")
    opt = make_optimizer(model, 1e-3)
    x = (torch.rand(6, 12) < 0.5).float()
    w = model.encoder.net[0].weight
    seen = []
    for step in range(3):
        opt.zero_grad()
        model.loss(x, generator=torch.Generator().manual_seed(step)).surrogate.backward()
        seen.append(w.grad.detach().clone())
        opt.step()
    mean = model.grad_ema.moments()[0][0]
    want = sum(0.001 * 0.999 ** (2 - i) * g for i, g in enumerate(seen))
    torch.testing.assert_close(mean, want, rtol=1e-5, atol=1e-9)
    # only the encoder's parameters are tracked
    assert model.grad_ema.param_names == [n for n, _ in model.encoder.named_parameters()]


def test_gradient_diagnostics_report_both_variances_under_their_own_keys():
    from binaryvae.diagnostics import gradient_diagnostics

    cfg = TrainConfig(family="bernoulli-disarm", latent_dim=3, hidden=(4,), grad_var_param_ema=True)
    model = build_model(cfg, 12, (3, 4), "image")
    x = (torch.rand(4, 12) < 0.5).float()
    record = gradient_diagnostics(model, x, samples=3, generator=torch.Generator().manual_seed(0))
    assert record["grad_var_param_ema"] == model.grad_ema.variance() == 0.0  # no step yet
    assert record["grad_var"] > 0


# ----------------------------------------------------------------------------- the preset
def _args(*argv: str):
    from binaryvae.cli import build_parser

    return build_parser().parse_args(["train", "--out", "unused", *argv])


def test_the_preset_sets_every_option_and_records_none_overridden():
    from binaryvae.cli.train import config_from_args

    c = config_from_args(_args("--protocol", "disarm-nonlinear", "--family", "bernoulli-disarm"))
    values = protocol_values("disarm-nonlinear", "bernoulli-disarm")
    assert set(values) == set(PROTOCOL_FIELDS)
    d = c.to_dict()
    for name, want in values.items():
        got = c.extra["learning_signal"] if name == "extra.learning_signal" else d[name]
        assert got == (list(want) if isinstance(want, tuple) else want), name
    assert d["protocol"] == "disarm-nonlinear" and d["protocol_overrides"] == []
    assert (d["dataset"], d["binarize"], d["validation"], d["batch_size"], d["lr"],
            d["adam_eps"], d["latent_dim"], d["hidden"], d["prior"], d["prior_sgd_lr"],
            d["decoder_sample"]) == ("fashion-mnist", "dynamic", 10_000, 50, 1e-4, 1e-7, 200,
                                     [200, 200], "learned", 1e-2, "independent")  # fmt: skip
    linear = config_from_args(_args("--protocol", "disarm-linear", "--family", "bernoulli-disarm"))
    assert linear.hidden == () and linear.changed_fields(c) == ["hidden", "protocol"]


@pytest.mark.parametrize("net", ["nonlinear", "linear"])
def test_the_mnist_presets_are_the_fashion_presets_on_mnist(net):
    """--protocol disarm-<net>-mnist: the reference's dynamic_mnist run, every other option of
    disarm-<net> unchanged; the run records the preset and no override."""
    from binaryvae.cli.train import config_from_args

    fashion = config_from_args(_args("--protocol", f"disarm-{net}", "--family", "bernoulli-arm"))
    mnist = config_from_args(_args("--protocol", f"disarm-{net}-mnist", "--family",
                                   "bernoulli-arm"))  # fmt: skip
    assert mnist.dataset == "mnist" and fashion.dataset == "fashion-mnist"
    assert mnist.changed_fields(fashion) == ["dataset", "protocol"]
    assert mnist.protocol == f"disarm-{net}-mnist" and mnist.protocol_overrides == []
    # an option beside it overrides it as with the Fashion-MNIST preset
    other = config_from_args(_args("--protocol", f"disarm-{net}-mnist", "--family",
                                   "bernoulli-arm", "--dataset", "fashion-mnist"))  # fmt: skip
    assert other.changed_fields(fashion) == ["protocol", "protocol_overrides"]
    assert other.protocol_overrides == ["dataset"]


def test_an_option_beside_the_preset_overrides_it_and_is_recorded():
    from binaryvae.cli.train import config_from_args

    c = config_from_args(_args("--protocol", "disarm-nonlinear", "--family", "bernoulli-disarm",
                               "--lr", "1e-3", "--decoder-sample", "shared",
                               "--prior-sgd-lr", "none"))  # fmt: skip
    assert (c.lr, c.decoder_sample, c.prior_sgd_lr) == (1e-3, "shared", None)
    assert c.protocol_overrides == ["decoder_sample", "lr", "prior_sgd_lr"]
    assert c.adam_eps == 1e-7  # the rest still the preset's
    # a family without an independent sample or a learning signal gets the preset's others
    s = config_from_args(_args("--protocol", "disarm-linear", "--family", "steplogistic"))
    assert s.decoder_sample == "shared" and "learning_signal" not in s.extra
    assert s.protocol_overrides == []
    # the recorded config round-trips: same values, same overrides
    assert TrainConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c


def test_a_sweep_grid_takes_the_preset_and_follows_it_per_family():
    grid = grid_from_values({"protocol": "disarm-linear", "lr": 1e-3, "epochs": 1,
                             "families": "bernoulli-disarm,steplogistic"})  # fmt: skip
    cells = {c.config.family: c.config for c in grid.cells()}
    disarm, step = cells["bernoulli-disarm"], cells["steplogistic"]
    assert (disarm.dataset, disarm.latent_dim, disarm.hidden) == ("fashion-mnist", 200, ())
    assert disarm.decoder_sample == "independent" and disarm.extra == {"learning_signal": "elbo"}
    assert step.decoder_sample == "shared" and step.extra == {}
    assert disarm.protocol_overrides == step.protocol_overrides == ["lr"]
    # sweep.json's recorded grid gives the same cells back
    recorded = Grid.from_dict(json.loads(json.dumps(grid.to_dict())), "sweep.json")
    assert [c.config for c in recorded.cells()] == [c.config for c in grid.cells()]


def test_the_sweep_command_takes_the_preset_and_its_options():
    from binaryvae.cli import build_parser
    from binaryvae.cli.sweep import _given

    args = build_parser().parse_args(["sweep", "--out", "unused", "--protocol", "disarm-linear",
                                      "--families", "bernoulli-disarm", "--prior-sgd-lr", "none",
                                      "--grad-var-param-ema", "off"])  # fmt: skip
    values = _given(args)
    assert values["protocol"] == "disarm-linear"
    assert values["prior_sgd_lr"] is None and values["grad_var_param_ema"] is False
    (cell,) = grid_from_values(values).cells()
    assert (cell.config.prior_sgd_lr, cell.config.grad_var_param_ema) == (None, False)
    assert cell.config.protocol_overrides == ["grad_var_param_ema", "prior_sgd_lr"]
    assert cell.config.adam_eps == 1e-7 and cell.config.decoder_sample == "independent"


def test_protocol_errors_are_one_line_and_exit_2(tmp_path, capsys):
    code = main(["train", "--out", str(tmp_path / "r"), "--protocol", "disarm-linear",
                 "--family", "steplogistic", "--decoder-sample", "independent",
                 "--dataset", "mnist-mini", "--validation", "100", "--quiet"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "decoder_sample" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_the_preset_trains_replicas_through_the_engine(tmp_path):
    """`binaryvae train --protocol disarm-nonlinear --family bernoulli-disarm --seeds 0-1` on a
    stand-in (mnist-mini, 10 bits, a smaller network: recorded as overrides); each seed's
    summary holds test_iwae_k100 (the preset's k, where 10 bits would default to 1,000) and
    test_discrete_elbo, its metrics the reference's gradient variance; seed 1 equals a single
    run with seed 1. (About 15 s: the summary's feature classifier and sample FD.)"""
    common = ["--protocol", "disarm-nonlinear", "--family", "bernoulli-disarm", "--epochs", "1",
              "--dataset", "mnist-mini", "--validation", "6000", "--hidden", "8",
              "--latent-dim", "10", "--threads", "1", "--device", "cpu", "--quiet", "--no-report"]
    assert main(["train", *common, "--seeds", "0-1", "--out", str(tmp_path / "g")]) == 0
    assert main(["train", *common, "--seed", "1", "--out", str(tmp_path / "one")]) == 0
    for seed in (0, 1):
        run = tmp_path / "g" / f"seed-{seed}"
        summary = json.loads((run / "summary.json").read_text())
        config = json.loads((run / "config.json").read_text())
        assert isinstance(summary["test_iwae_k100"], float) and summary["iwae_k"] == 100
        assert isinstance(summary["test_discrete_elbo"], float)
        assert config["protocol"] == "disarm-nonlinear"
        assert config["protocol_overrides"] == ["dataset", "hidden", "latent_dim", "validation"]
        assert set(PROTOCOLS["disarm-nonlinear"]) <= set(config)
    row = json.loads((tmp_path / "g" / "seed-1" / "metrics.jsonl").read_text().splitlines()[0])
    single = json.loads((tmp_path / "one" / "metrics.jsonl").read_text().splitlines()[0])
    assert row["grad_var_param_ema"] > 0
    for key in ("test_discrete_elbo", "train_elbo", "grad_var_param_ema"):
        assert row[key] == pytest.approx(single[key], rel=1e-3), key


def test_replicas_with_every_option_equal_single_runs():
    """Every option on (centred input and signed decoder input stacked as InputAffine, the
    EMA moments laid out as their parameters, the prior's SGD group, the independent sample):
    after 10 steps of batch 40, replica r's parameters, buffers and Adam moments equal the
    single run's with seed r to float32 round-off."""
    from binaryvae.data import EpochBatches
    from binaryvae.models.replicas import (
        ReplicaGenerator,
        replica_layouts,
        stack_models,
        unstack_optimizer_state,
        unstack_state,
    )
    from binaryvae.training import fit_epoch

    seeds = [2, 0]
    x = load_dataset("mnist-mini").train_x[:400]
    mean = train_mean(x, "dynamic")
    fields = dict(family="bernoulli-disarm", latent_dim=6, hidden=(32,), batch_size=40,
                  binarize="dynamic", prior="learned", prior_sgd_lr=1e-2, adam_eps=1e-7,
                  encoder_input="centred", decoder_input="signed", decoder_bias="data-mean",
                  init="glorot", decoder_sample="independent", grad_var_param_ema=True,
                  extra={"learning_signal": "elbo"})  # fmt: skip

    def model(seed):
        torch.manual_seed(seed)
        return build_model(TrainConfig(seed=seed, **fields), 784, (28, 28), "image", mean)

    singles = []
    for seed in seeds:
        m = model(seed)
        opt = make_optimizer(m, 1e-3)
        batches = EpochBatches(x, batch_size=40, binarize="dynamic", seed=seed)
        fit_epoch(m, opt, batches.epoch(1), epoch=1, objective="elbo",
                  generator=torch.Generator().manual_seed(100 + seed))  # fmt: skip
        singles.append((m, opt))
    stacked = stack_models([model(s) for s in seeds])
    opt = make_optimizer(stacked, 1e-3)
    assert type(opt).__name__ == "AdamWithSGDGroups" and opt.trackers == [stacked.grad_ema]
    loaders = [EpochBatches(x, batch_size=40, binarize="dynamic", seed=s) for s in seeds]
    batches = (torch.stack(xs) for xs in zip(*[b.epoch(1) for b in loaders], strict=True))
    g = ReplicaGenerator([torch.Generator().manual_seed(100 + s) for s in seeds])
    fit_epoch(stacked, opt, batches, epoch=1, objective="elbo", generator=g, replicas=2)
    layouts = replica_layouts(stacked)
    for r, (single, single_opt) in enumerate(singles):
        state = unstack_state(stacked.state_dict(), r, layouts, len(seeds))
        assert set(state) == set(single.state_dict())
        for key, value in single.state_dict().items():
            scale = value.double().abs().max().clamp_min(1e-12)
            err = ((state[key].double() - value.double()).abs().max() / scale).item()
            assert err < 1e-4, (key, err)
        moments = unstack_optimizer_state(opt.state_dict(), r, stacked)["state"]
        assert set(moments) == set(single_opt.state_dict()["state"])
        for index, per_param in single_opt.state_dict()["state"].items():
            torch.testing.assert_close(moments[index]["exp_avg"], per_param["exp_avg"],
                                       rtol=1e-4, atol=1e-7)  # fmt: skip


def test_summary_iwae_k_sets_the_summarys_k():
    """10 bits would default to k = 1,000; summary_iwae_k = 100 gives test_iwae_k100."""
    from binaryvae.evaluation import evaluate_summary

    cfg = TrainConfig(family="bernoulli-disarm", latent_dim=10, hidden=(8,), summary_iwae_k=100)
    torch.manual_seed(0)
    model = build_model(cfg, 12, (3, 4), "image")
    x = (torch.rand(6, 12) < 0.5).float()
    out = evaluate_summary(model, x, seed=0, samples=1, recon_repeats=1)
    assert out["iwae_k"] == 100 and "test_iwae_k100" in out and "test_iwae_k1000" not in out
    plain = build_model(dataclasses.replace(cfg, summary_iwae_k=None), 12, (3, 4), "image")
    assert evaluate_summary(plain, x, seed=0, samples=1, recon_repeats=1)["iwae_k"] == 1000


def test_the_presets_family_lists_are_the_registrys():
    from binaryvae.config import INDEPENDENT_SAMPLE_FAMILIES, LEARNING_SIGNAL_FAMILIES
    from binaryvae.models.families import FAMILY_CLASSES

    independent = [n for n, c in FAMILY_CLASSES.items()
                   if getattr(c, "independent_decoder_sample", False)]  # fmt: skip
    assert sorted(INDEPENDENT_SAMPLE_FAMILIES) == sorted(independent) == sorted(INDEPENDENT)
    signal = [n for n, c in FAMILY_CLASSES.items() if c.takes_learning_signal]
    assert sorted(LEARNING_SIGNAL_FAMILIES) == sorted(signal)


# ----------------------------------------------------------------------------- defaults
def test_the_defaults_build_todays_model():
    model = build_model(TrainConfig(family="bernoulli-disarm", latent_dim=3, hidden=(4,)), 12)
    assert not isinstance(model.encoder, InputAffine)
    assert not isinstance(model.decoder.net, InputAffine)
    assert getattr(model, "grad_ema", None) is None and not model.estimator.independent
    assert sorted(model.state_dict()) == sorted(
        ["encoder.net.0.weight", "encoder.net.0.bias", "encoder.net.2.weight",
         "encoder.net.2.bias", "decoder.net.net.0.weight", "decoder.net.net.0.bias",
         "decoder.net.net.2.weight", "decoder.net.net.2.bias", "prior_module.param"]
    )  # fmt: skip
    d = TrainConfig().to_dict()
    assert (d["protocol"], d["protocol_overrides"], d["encoder_input"], d["decoder_input"],
            d["decoder_bias"], d["init"], d["prior_sgd_lr"], d["decoder_sample"], d["adam_eps"],
            d["validation"], d["summary_iwae_k"], d["grad_var_param_ema"]) == (
        None, None, "raw", "bits", "default", "torch", None, "shared", 1e-8, 0, None, False
    )  # fmt: skip
