"""Models: every family trains (images and real-valued toy data), StepLogistic stays finite at
large latent sizes, objectives carry their labels, decoders/priors/generation/state round-trip."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Bernoulli, Normal, kl_divergence

from binaryvae.config import TrainConfig
from binaryvae.distributions import Logistic, StepLogistic, bernoulli_kl
from binaryvae.errors import BadInput
from binaryvae.models import FAMILIES, VAE, LossTerms, build_model
from binaryvae.models.decoders import BernoulliDecoder, GaussianDecoder
from binaryvae.models.families import FAMILY_CLASSES

ALL = list(FAMILIES)
BINARY = [f for f, c in FAMILY_CLASSES.items() if c.binary]


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """512 mnist-mini training images as float [512, 784] in [0, 1] (grey levels)."""
    from binaryvae.data import load_dataset

    return load_dataset("mnist-mini").train_x[:512].float() / 255.0


@pytest.fixture(scope="module")
def toy() -> torch.Tensor:
    """512 rows of the toy data (diss. 5.1: noisy bits), float [512, 8]."""
    from binaryvae.data import load_dataset

    return load_dataset("toy").train_x[:512].float()


def _config(family: str, **kw) -> TrainConfig:
    kw.setdefault("latent_dim", 8)
    kw.setdefault("hidden", (128,))
    return TrainConfig(family=family, **kw)


def _mean_elbo(model: VAE, x: torch.Tensor, objective: str, repeats: int = 4) -> float:
    gen = torch.Generator().manual_seed(123)
    model.eval()
    with torch.no_grad():
        vals = [model.loss(x, objective, generator=gen).elbo.mean() for _ in range(repeats)]
    model.train()
    return float(torch.stack(vals).mean())


def _train(
    model: VAE, x: torch.Tensor, objective: str, steps: int, lr: float = 3e-3
) -> list[float]:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    perm_gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (64,), generator=perm_gen)
        terms = model.loss(x[idx], objective)
        opt.zero_grad()
        terms.surrogate.backward()
        opt.step()
        losses.append(float(terms.surrogate.detach()))
    return losses


@pytest.mark.parametrize("family", ALL)
@pytest.mark.parametrize("data", ["images", "toy"])
def test_every_family_trains(family, data, images, toy):
    """A few dozen plain Adam steps raise the family's own ELBO on mnist-mini and on toy data.

    Margins: images start near -545 nats and gain > 50 nats in 60 steps for every family (the
    decoder bias alone is worth ~ 300); toy data (8 dims) must gain > 0.5 nats. One hidden
    layer of 32 (measured gains: >= 337 nats on images, >= 1.48 nats on toy data).
    """
    torch.manual_seed(0)
    x = images if data == "images" else toy
    kind = "image" if data == "images" else "real"
    model = build_model(_config(family, hidden=(32,)), x.shape[1],
                        (28, 28) if kind == "image" else None, kind)  # fmt: skip
    before = _mean_elbo(model, x, "elbo")
    losses = _train(model, x, "elbo", steps=60)
    after = _mean_elbo(model, x, "elbo")
    assert all(math.isfinite(v) for v in losses)
    assert after > before + (50.0 if kind == "image" else 0.5), (before, after)


@pytest.mark.parametrize("family", [f for f in BINARY if f.startswith(("logistic", "concrete"))])
def test_bernoulli_elbo_trains_and_is_labelled(family, images):
    torch.manual_seed(0)
    model = build_model(_config(family, objective="bernoulli-elbo"), 784, (28, 28), "image")
    before = _mean_elbo(model, images, "bernoulli-elbo")
    _train(model, images, "bernoulli-elbo", steps=40)
    assert _mean_elbo(model, images, "bernoulli-elbo") > before + 50.0
    assert model.loss(images[:8], "bernoulli-elbo").objective == "bernoulli-elbo"


@pytest.mark.parametrize("n", [8, 56, 96, 200])
def test_steplogistic_stays_finite_at_large_latent_sizes(n, images):
    """The dissertation could only train StepLogistic at n = 8 (section 5.3). Default network,
    lr 1e-3, 30 steps: every loss, gradient and parameter stays finite, and the ELBO rises."""
    torch.manual_seed(n)
    model = build_model(TrainConfig(family="steplogistic", latent_dim=n), 784, (28, 28), "image")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = _mean_elbo(model, images[:256], "elbo", repeats=1)
    for step in range(30):
        terms = model.loss(images[(step * 64) % 512 :][:64], "elbo")
        opt.zero_grad()
        terms.surrogate.backward()
        assert torch.isfinite(terms.surrogate)
        assert torch.isfinite(terms.elbo).all() and torch.isfinite(terms.kl).all()
        for p in model.parameters():
            assert torch.isfinite(p.grad).all()
        opt.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert _mean_elbo(model, images[:256], "elbo", repeats=1) > before


def test_loss_terms_shapes_labels_and_surrogate_is_not_elbo(images):
    x = images[:16]
    for family in ALL:
        model = build_model(_config(family), 784, (28, 28), "image")
        terms = model.loss(x, "elbo", kl_weight=0.5)
        assert isinstance(terms, LossTerms) and terms.objective == "elbo"
        assert terms.surrogate.dim() == 0 and terms.surrogate.requires_grad
        for t in (terms.elbo, terms.recon, terms.kl):
            assert t.shape == (16,) and not t.requires_grad
        # the reported ELBO is recon - KL with weight 1, never the (weighted) surrogate
        torch.testing.assert_close(terms.elbo, terms.recon - terms.kl)
        if family != "autoencoder-gmm":
            assert (terms.kl > 0).any() or family == "gaussian"


def test_pathwise_surrogate_weights_the_kl(images):
    torch.manual_seed(0)
    model = build_model(_config("steplogistic"), 784, (28, 28), "image")
    gen = torch.Generator().manual_seed(5)
    t1 = model.loss(images[:32], "elbo", kl_weight=0.25, generator=gen)
    torch.testing.assert_close(t1.surrogate.detach(), -(t1.recon - 0.25 * t1.kl).mean())


def test_bad_names_raise_badinput():
    with pytest.raises(BadInput, match="gaussian-sigmoid"):
        build_model(TrainConfig(family="nope"), 784, (28, 28), "image")
    # bernoulli-elbo: relaxed binary families only (exact families: it *is* their elbo)
    for family in ("gaussian", "autoencoder-gmm", "bernoulli-sfe", "bernoulli-disarm"):
        with pytest.raises(BadInput, match="bernoulli-elbo"):
            build_model(TrainConfig(family=family, objective="bernoulli-elbo"), 784, (28, 28))
        model = build_model(TrainConfig(family=family, hidden=(16,)), 784, (28, 28))
        with pytest.raises(BadInput):
            model.loss(torch.rand(2, 784), "bernoulli-elbo")
    with pytest.raises(BadInput, match="image"):
        build_model(TrainConfig(family="gaussian", network="conv"), 8, None, "real")


def test_decoders_match_their_formulas():
    torch.manual_seed(0)
    x = torch.rand(5, 7)  # grey levels
    logits = torch.randn(3, 5, 7) * 4
    dec = BernoulliDecoder(torch.nn.Identity())
    p = torch.sigmoid(logits.double())
    want = (x * p.log() + (1 - x) * (1 - p).log()).sum(-1)  # diss. eq. 3.3, grey levels
    torch.testing.assert_close(dec.log_prob(x, logits).double(), want, rtol=1e-5, atol=1e-4)
    assert dec.kind == "bernoulli"
    torch.testing.assert_close(dec.mean(logits), torch.sigmoid(logits))
    g = GaussianDecoder(torch.nn.Identity(), 7, learned=False, log_scale=math.log(0.5))
    mean = torch.randn(3, 5, 7)
    want = Normal(mean, 0.5).log_prob(x).sum(-1)
    torch.testing.assert_close(g.log_prob(x, g(mean)), want)
    assert g.kind == "gaussian" and not any(True for _ in g.parameters())


def test_auto_decoder_and_networks(toy):
    m = build_model(_config("gaussian"), 8, None, "real")
    assert m.decoder.kind == "gaussian"
    m = build_model(_config("bernoulli-st", network="conv"), 784, (28, 28), "image")
    assert m.decoder.kind == "bernoulli"
    out = m.decode(torch.zeros(3, 2, 8))
    assert out.shape == (3, 2, 784)
    m = build_model(
        _config("gaussian", decoder="bernoulli", activation="leaky_relu"), 8, None, "real"
    )
    assert m.decoder.kind == "bernoulli"
    assert (
        isinstance(m.encoder.net[1], torch.nn.LeakyReLU) and m.encoder.net[1].negative_slope == 0.3
    )
    default = build_model(TrainConfig(family="gaussian"), 784, (28, 28), "image")
    widths = [
        layer.out_features for layer in default.encoder.net if isinstance(layer, torch.nn.Linear)
    ]
    assert widths == [512, 256, 128, 2 * 8]  # (mu, log sigma^2) per latent dimension


def test_generation_and_codes(images):
    gen = torch.Generator().manual_seed(0)
    for family in ALL:
        model = build_model(_config(family), 784, (28, 28), "image")
        codes = model.sample_codes(10, generator=gen)
        assert codes.shape == (10, 8)
        if model.family.binary:
            assert set(codes.unique().tolist()) <= {0.0, 1.0}
            assert model.bit_probs(images[:4]).shape == (4, 8)
            assert ((model.bit_probs(images[:4]) >= 0) & (model.bit_probs(images[:4]) <= 1)).all()
            assert model.prior_bit_logits().shape == (8,)
        pix = model.decoder.mean(model.decode(codes))
        assert pix.shape == (10, 784) and ((pix >= 0) & (pix <= 1)).all()
        assert model.encode_mean(images[:4]).shape == (4, 8)
    assert not build_model(_config("gaussian"), 784, (28, 28)).family.binary
    assert not build_model(_config("autoencoder-gmm"), 784, (28, 28)).family.binary


def test_binary_prior_codes_follow_the_prior():
    model = build_model(_config("bernoulli-sfe", prior="learned"), 784, (28, 28))
    with torch.no_grad():
        model.prior_module.param.copy_(torch.linspace(-2, 2, 8))
    codes = model.sample_codes(20000, generator=torch.Generator().manual_seed(1))
    p = torch.sigmoid(torch.linspace(-2, 2, 8))
    se = (p * (1 - p) / 20000).sqrt()
    assert ((codes.mean(0) - p).abs() < 4.5 * se).all()


def test_posterior_and_prior_distributions(images):
    x = images[:4]
    expect = {
        "gaussian": (Normal, Normal),
        "logistic": (Logistic, Logistic),
        "steplogistic": (StepLogistic, Logistic),
        "bernoulli-disarm": (Bernoulli, Bernoulli),
    }
    for family, (q_cls, p_cls) in expect.items():
        model = build_model(_config(family), 784, (28, 28))
        q, p = model.posterior(x), model.prior()
        assert isinstance(q, q_cls) and isinstance(p, p_cls)
        assert q.batch_shape == (4, 8) and p.batch_shape == (8,)
    # lambda(x) of each relaxed family is P(z > 0) under its posterior
    for family in ("gaussian-sigmoid", "logistic", "steplogistic"):
        model = build_model(_config(family), 784, (28, 28))
        q = model.posterior(x)
        torch.testing.assert_close(
            model.bit_probs(x), 1 - q.cdf(torch.zeros(4, 8)), atol=1e-6, rtol=1e-5
        )


def test_gaussian_sigmoid_bit_logits_are_phi_mu_over_sigma(images):
    model = build_model(_config("gaussian-sigmoid"), 784, (28, 28))
    mu, logvar = model.encoder_params(images[:4])
    want = torch.special.ndtr(mu / torch.exp(0.5 * logvar))
    torch.testing.assert_close(model.bit_probs(images[:4]), want)


def test_concrete_lambda_and_temperature():
    model = build_model(_config("concrete"), 784, (28, 28))
    log_gamma = torch.tensor([[-1.0, 0.0, 2.0]])
    q = model.family.posterior((log_gamma,))
    y = q.rsample((20000,))  # [S, 1, 3]
    frac = (model.family.relax(y) > 0.5).float().mean(0)
    lam = torch.sigmoid(log_gamma)  # gamma / (1 + gamma), diss. 4.3
    assert ((frac - lam).abs() < 4.5 * (lam * (1 - lam) / 20000).sqrt()).all()


def test_learned_prior_kls():
    """Learned priors: steplogistic's KL(StepLogistic(a) || StepLogistic(a0)) = Bernoulli KL
    (derived in StepLogisticFamily), checked against a Monte Carlo estimate with 200k samples;
    at a0 = 0 it equals the registered KL to Logistic(0, 1)."""
    torch.manual_seed(0)
    a = torch.tensor([-3.0, -0.5, 0.0, 1.0, 4.0])
    a0 = torch.tensor([0.7, -1.0, 0.3, 0.0, 2.0])
    q, p = StepLogistic(logits=a), StepLogistic(logits=a0)
    z = q.sample((200000,))
    mc = (q.log_prob(z) - p.log_prob(z)).double()
    want = bernoulli_kl(a.unsqueeze(-1), a0.unsqueeze(-1)).double()
    assert ((mc.mean(0) - want).abs() < 4.5 * mc.std(0) / math.sqrt(200000) + 1e-6).all()
    model = build_model(_config("steplogistic", prior="learned"), 784, (28, 28))
    assert isinstance(model.prior_module.param, torch.nn.Parameter)
    qa = StepLogistic(logits=a.expand(2, 5))
    torch.testing.assert_close(
        model.family.kl(qa, StepLogistic(logits=torch.zeros(5)), None),
        kl_divergence(qa, Logistic(torch.zeros(5), torch.ones(5))).sum(-1),
    )
    # bernoulli families: KL against Bernoulli(sigmoid(a0)) in closed form
    torch.testing.assert_close(
        bernoulli_kl(a, a0),
        kl_divergence(Bernoulli(logits=a), Bernoulli(logits=a0)).sum(-1),
    )


def test_learned_prior_gets_gradients(images):
    for family in ("bernoulli-disarm", "logistic", "steplogistic", "gaussian-sigmoid"):
        model = build_model(_config(family, prior="learned"), 784, (28, 28))
        model.loss(images[:16]).surrogate.backward()
        g = model.prior_module.param.grad
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0


def test_autoencoder_gmm_finalize_and_state_dict_round_trip(images):
    torch.manual_seed(0)
    cfg = _config("autoencoder-gmm", latent_dim=4, gmm_components=5)
    model = build_model(cfg, 784, (28, 28))
    _train(model, images, "elbo", steps=20)
    model.finalize((images[:300] * 255).to(torch.uint8))  # raw pixels are accepted too
    assert bool(model.prior_module.fitted)
    with torch.no_grad():
        codes = model.encode_mean(images[:300])
    samples = model.sample_codes(5000, generator=torch.Generator().manual_seed(0))
    # the mixture reproduces the codes' first two moments (loose: 300 codes, 5 components)
    torch.testing.assert_close(
        samples.mean(0), codes.mean(0), atol=0.1 * float(codes.std(0).max()), rtol=0
    )
    clone = build_model(cfg, 784, (28, 28))
    clone.load_state_dict(model.state_dict())
    for a, b in zip(
        clone.sample_codes(7, torch.Generator().manual_seed(3)),
        model.sample_codes(7, torch.Generator().manual_seed(3)),
        strict=True,
    ):
        torch.testing.assert_close(a, b)


def test_sfe_running_average_is_a_buffer_and_updates_in_training_only(images):
    model = build_model(_config("bernoulli-sfe"), 784, (28, 28))
    assert "estimator.running_mean" in model.state_dict()
    model.eval()
    model.loss(images[:16])
    assert float(model.estimator.running_mean) == 0.0
    model.train()
    terms = model.loss(images[:16])
    torch.testing.assert_close(model.estimator.running_mean, terms.recon.mean())
    model.loss(images[16:32])
    assert int(model.estimator.steps) == 2


@pytest.mark.parametrize("family,extra", [(f, {}) for f in ALL]
                         + [("bernoulli-reinforce-loo", {"loo_samples": 5}),
                            ("bernoulli-reinforce-loo", {"samples": 5}),
                            ("bernoulli-vimco", {"samples": 5}),
                            ("bernoulli-arms", {"samples": 5}),
                            ("bernoulli-rodeo", {"samples": 5}),
                            ("bernoulli-disarm", {"samples": 6})])  # fmt: skip
def test_decoder_evaluations_per_step(family, extra, images):
    """The declared decoder passes per step (the estimator class's samples_per_step) against
    the codes the decoder actually receives in one training loss, counted per image."""
    model = build_model(_config(family, extra=extra), 784, (28, 28))
    seen = []
    model.decoder.register_forward_hook(lambda m, args, out: seen.append(args[0].shape))
    model.train()
    model.loss(images[:6])
    per_image = sum(math.prod(shape[:-1]) for shape in seen) // 6
    assert model.decoder_evaluations_per_step == per_image
    want = {"bernoulli-disarm": 2, "bernoulli-arm": 2, "bernoulli-reinforce-loo": 2,
            "bernoulli-vimco": 2, "bernoulli-arms": 2, "bernoulli-arms-normal": 2,
            "bernoulli-rodeo": 2, "bernoulli-relax": 3}  # fmt: skip
    assert per_image == (next(iter(extra.values())) if extra else want.get(family, 1))


@pytest.mark.parametrize("family", ALL)
def test_state_dict_round_trip_reproduces_the_loss(family, images):
    """Everything a run needs to resume is in state_dict (learned prior, SFE running average)."""
    cfg = _config(family, prior="learned")
    torch.manual_seed(0)
    model = build_model(cfg, 784, (28, 28))
    _train(model, images, "elbo", steps=3)
    torch.manual_seed(1)
    clone = build_model(cfg, 784, (28, 28))
    clone.load_state_dict(model.state_dict())
    a = model.loss(images[:16], generator=torch.Generator().manual_seed(4))
    b = clone.loss(images[:16], generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(a.elbo, b.elbo)
    torch.testing.assert_close(a.surrogate, b.surrogate)


def test_fixed_gaussian_decoder_scale(toy):
    cfg = _config("gaussian-sigmoid", extra={"decoder_scale": 0.5})
    model = build_model(cfg, 8, None, "real")
    assert "decoder.log_scale" in dict(model.named_buffers())
    torch.testing.assert_close(model.decoder.log_scale, torch.full((8,), math.log(0.5)))
    with pytest.raises(BadInput):
        build_model(_config("gaussian", extra={"decoder_scale": -1.0}), 8, None, "real")


def test_empty_hidden_gives_the_linear_network_of_the_estimator_benchmarks(images):
    """hidden=() is the 784-200 linear net of Dong, Mnih & Tucker (2020): one affine map each
    way."""
    config = _config("bernoulli-disarm", hidden=(), latent_dim=200)
    model = build_model(config, 784, (28, 28), "image")
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert sorted((m.in_features, m.out_features) for m in linears) == [(200, 784), (784, 200)]
    assert torch.isfinite(model.loss(images[:16], "elbo").surrogate)


def test_concrete_with_its_own_prior_temperature_is_not_logistic(images):
    """Maddison et al.'s temperatures (posterior 2/3, prior 1/2: beta 1.5, prior beta 2): the
    concrete family's KL is then no longer the Logistic KL (it is at equal temperatures); both
    against scipy quadrature of KL = int q log(q / p) over the logit y, q(y) = g(y / 1.5 - a)
    / 1.5, p(y) = g(y / beta_p) / beta_p (g the Logistic(0, 1) density). On the same weights and
    noise the decoder sees the same input as logistic's at beta 1.5, so the two relaxed ELBOs
    differ by exactly the difference of the two KLs."""
    from scipy import integrate, stats

    from binaryvae.distributions import binary_concrete_kl, logistic_kl_equal_scale

    def kl_by_quadrature(a: float, prior_beta: float) -> float:
        def integrand(y: float) -> float:
            log_q = stats.logistic.logpdf(y / 1.5 - a) - math.log(1.5)
            log_p = stats.logistic.logpdf(y / prior_beta) - math.log(prior_beta)
            return math.exp(log_q) * (log_q - log_p)

        return integrate.quad(integrand, -80, 80, points=[1.5 * a], limit=200)[0]

    log_gamma = torch.tensor([[-1.0, 0.0, 2.0]])
    same = build_model(_config("concrete", beta=1.5, latent_dim=3), 784, (28, 28))
    own = build_model(_config("concrete", beta=1.5, latent_dim=3,
                              extra={"concrete_prior_beta": 2.0}), 784, (28, 28))  # fmt: skip
    q_same, q_own = same.family.posterior((log_gamma,)), own.family.posterior((log_gamma,))
    kl_same = same.family.kl(q_same, same.prior(), None)
    kl_own = own.family.kl(q_own, own.prior(), None)
    torch.testing.assert_close(kl_same, logistic_kl_equal_scale(log_gamma).sum(-1))
    torch.testing.assert_close(kl_own, binary_concrete_kl(log_gamma, 1.5, torch.zeros(3),
                                                          2.0).sum(-1))  # fmt: skip
    logits = log_gamma[0].tolist()
    assert kl_same.item() == pytest.approx(sum(kl_by_quadrature(v, 1.5) for v in logits), rel=1e-6)
    assert kl_own.item() == pytest.approx(sum(kl_by_quadrature(v, 2.0) for v in logits), rel=1e-5)
    torch.manual_seed(0)
    logistic = build_model(_config("logistic", beta=1.5, latent_dim=3), 784, (28, 28))
    own.load_state_dict(logistic.state_dict())
    x = images[:16]
    a = logistic.loss(x, generator=torch.Generator().manual_seed(4)).elbo
    b = own.loss(x, generator=torch.Generator().manual_seed(4)).elbo
    with torch.no_grad():
        (lg,) = own.encoder_params(x)  # [16, 3] log gamma = logistic's mu
        want = (logistic_kl_equal_scale(lg) - binary_concrete_kl(lg, 1.5, torch.zeros(3), 2.0))
    torch.testing.assert_close(b - a, want.sum(-1), rtol=1e-4, atol=1e-4)
