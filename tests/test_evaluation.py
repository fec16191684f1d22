"""Tests of binaryvae.evaluation against references: brute-force loops over codes, the analytic
toy marginal of diss. 5.1, KL(q || p(b|x)) computed directly, and the IWAE ordering of Burda et
al. (2016). The models are small stand-ins built from nn.Linear that honour the models contract
(docs/internals.md); tests with real `build_model` models live in test_evaluation_models.py."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from binaryvae.evaluation import (
    bit_statistics,
    discrete_elbo,
    discrete_terms,
    enumerate_codes,
    evaluate_epoch,
    evaluate_summary,
    exact_evaluation,
    exact_log_posterior,
    exact_log_px,
    exact_posterior,
    iwae_bound,
    reconstruction_loss,
)
from binaryvae.evaluation.exact import code_index


class StandInDecoder:
    """Bernoulli (logits) or Gaussian ((mean, log_scale)) likelihood, as in the contract."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def log_prob(self, x, out):
        if self.kind == "bernoulli":
            return -F.binary_cross_entropy_with_logits(out, x.expand_as(out), reduction="none").sum(
                -1
            )
        mean, log_scale = out
        return torch.distributions.Normal(mean, log_scale.exp()).log_prob(x).sum(-1)

    def mean(self, out):
        return torch.sigmoid(out) if self.kind == "bernoulli" else out[0]


class StandInBinary(nn.Module):
    """A binary-latent model p(b) p(x|b) with a factorized Bernoulli posterior q(b|x)."""

    def __init__(self, n: int, dim: int, kind: str = "bernoulli", seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.family = SimpleNamespace(name="stand-in", binary=True, has_likelihood=True)
        self.latent_dim = n
        self.encoder = nn.Linear(dim, n)
        self.net = nn.Sequential(nn.Linear(n, 16), nn.Tanh(), nn.Linear(16, dim))
        self.log_scale = nn.Parameter(torch.full((dim,), -0.5) + 0.1 * torch.randn(dim))
        self.prior_logits = nn.Parameter(0.5 * torch.randn(n))
        self.decoder = StandInDecoder(kind)
        self.kind = kind

    def bit_logits(self, x):
        return 2.0 * self.encoder(x)

    def bit_probs(self, x):
        return torch.sigmoid(self.bit_logits(x))

    def prior_bit_logits(self):
        return self.prior_logits

    def decode(self, codes):
        h = self.net(codes)
        if self.kind == "bernoulli":
            return h
        return h, self.log_scale.expand_as(h)

    def encode_mean(self, x):
        return self.bit_probs(x)

    def sample_codes(self, num, generator=None):
        probs = torch.sigmoid(self.prior_logits).expand(num, -1)
        return torch.bernoulli(probs, generator=generator)

    def score(self, x, objective="elbo", generator=None):
        """A relaxed stand-in: sigmoid(10 z) of Logistic(l, 1) noise decoded; Bernoulli KL."""
        logits = self.bit_logits(x)
        u = torch.rand_like(logits).clamp(1e-6, 1 - 1e-6)
        soft = torch.sigmoid(10 * (logits + u.log() - (-u).log1p()))  # [B, n]
        recon = self.decoder.log_prob(x, self.decode(soft))
        lam, prior = torch.sigmoid(logits), self.prior_logits
        kl = (
            lam * (F.softplus(-prior) - F.softplus(-logits))
            + (1 - lam) * (F.softplus(prior) - F.softplus(logits))
        ).sum(-1)
        if objective == "bernoulli-elbo":
            kl = kl + 0.01  # a distinguishable stand-in value
        elbo = (recon - kl).detach()
        return SimpleNamespace(
            surrogate=-elbo.mean(),
            elbo=elbo,
            recon=recon.detach(),
            kl=kl.detach(),
            objective=objective,
        )


class ToyTrueModel(nn.Module):
    """Diss. 5.1 toy model in d dims: b ~ Bernoulli(1/2)^d, x | b ~ N(b, 0.5^2) per dim."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.family = SimpleNamespace(name="toy-true", binary=True, has_likelihood=True)
        self.latent_dim = d
        self.decoder = StandInDecoder("gaussian")
        self.scale = nn.Parameter(torch.tensor(0.5), requires_grad=False)

    def bit_logits(self, x):
        return 4.0 * (x - 0.5)  # the exact posterior logit is (x - 1/2) / 0.5^2 = 4 (x - 1/2)

    def prior_bit_logits(self):
        return torch.zeros(self.latent_dim)

    def decode(self, codes):
        return codes, self.scale.log().expand_as(codes)


def brute_force_joint(model, x):
    """log p(x_i | b_c) + log p(b_c) decoding every (image, code) pair in a loop: [B, 2^n]."""
    n = model.latent_dim
    prior = model.prior_bit_logits()
    cols = []
    for c in range(1 << n):
        bits = torch.tensor([(c >> i) & 1 for i in range(n)], dtype=torch.float32)
        log_prior = (bits * prior - F.softplus(prior)).sum()
        col = []
        for i in range(x.shape[0]):
            out = model.decode(bits[None])  # one (image, code) pair per decode
            col.append(model.decoder.log_prob(x[i : i + 1], out)[0] + log_prior)
        cols.append(torch.stack(col))
    return torch.stack(cols, dim=1).double()


def images(batch: int, dim: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, dim, generator=g)


@pytest.mark.parametrize("kind", ["bernoulli", "gaussian"])
@torch.no_grad()
def test_exact_log_px_equals_brute_force_loop(kind):
    model = StandInBinary(n=5, dim=12, kind=kind)
    x = images(6, 12)
    reference = torch.logsumexp(brute_force_joint(model, x), dim=1)  # [B]
    got = exact_log_px(model, x)
    torch.testing.assert_close(got.double(), reference, atol=1e-4, rtol=0)
    got64 = exact_log_px(model, x, dtype=torch.float64)
    torch.testing.assert_close(got64.double(), reference, atol=2e-5, rtol=0)


@torch.no_grad()
def test_exact_log_px_toy_true_decoder_equals_analytic_marginal():
    d = 6
    model = ToyTrueModel(d)
    x = torch.cat([images(50, d) * 2 - 0.5, torch.tensor([[0.0] * d, [1.0] * d])])  # [52, d]
    normal0 = torch.distributions.Normal(0.0, 0.5).log_prob(x.double())
    normal1 = torch.distributions.Normal(1.0, 0.5).log_prob(x.double())
    analytic = torch.logaddexp(normal0, normal1).add(math.log(0.5)).sum(-1)  # diss. 5.1
    torch.testing.assert_close(exact_log_px(model, x).double(), analytic, atol=1e-5, rtol=0)
    # the toy encoder is the exact posterior, so the exact gap vanishes
    torch.testing.assert_close(exact_evaluation(model, x).gap, torch.zeros(52), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["bernoulli", "gaussian"])
@torch.no_grad()
def test_unknown_decoder_kind_falls_back_to_pairwise_scoring(kind):
    model = StandInBinary(n=4, dim=12, kind=kind, seed=20)
    x = images(7, 12)
    fast = exact_evaluation(model, x, code_chunk=5)
    model.decoder.kind, real = "unknown", model.decoder.kind
    model.decoder.log_prob = StandInDecoder(real).log_prob  # same likelihood, unknown kind
    slow = exact_evaluation(model, x, code_chunk=5)
    for a, b in zip(fast, slow, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


@pytest.mark.parametrize("kind", ["bernoulli", "gaussian"])
@torch.no_grad()
def test_chunking_gives_the_unchunked_result(kind):
    model = StandInBinary(n=6, dim=10, kind=kind, seed=3)
    x = images(37, 10)
    whole = exact_evaluation(model, x, code_chunk=1 << 6, cells=1 << 20)
    chunked = exact_evaluation(model, x, code_chunk=5, cells=23)  # odd sizes on purpose
    for a, b in zip(whole, chunked, strict=True):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=0)


@torch.no_grad()
def test_exact_gap_equals_kl_to_the_exact_posterior():
    model = StandInBinary(n=5, dim=12, seed=2)
    x = images(8, 12, seed=4)
    joint = brute_force_joint(model, x)  # [B, 32]
    log_post = joint - torch.logsumexp(joint, dim=1, keepdim=True)  # log p(b|x)
    codes = enumerate_codes(5).double()  # [32, 5]
    logits = model.bit_logits(x).double()  # [B, 5]
    log_q = logits @ codes.T - F.softplus(logits).sum(-1, keepdim=True)  # [B, 32]
    kl = (log_q.exp() * (log_q - log_post)).sum(1)  # KL(q || p(b|x)) directly
    result = exact_evaluation(model, x, dtype=torch.float64)
    torch.testing.assert_close(result.gap.double(), kl, atol=1e-5, rtol=0)
    assert (result.gap > -1e-5).all()
    # elbo by enumeration: E_q[log p(x,b) - log q(b|x)]
    elbo = (log_q.exp() * (joint - log_q)).sum(1)
    torch.testing.assert_close(result.elbo.double(), elbo, atol=1e-4, rtol=0)
    # the exact posterior itself
    torch.testing.assert_close(exact_log_posterior(model, x).double(), log_post, atol=1e-4, rtol=0)
    torch.testing.assert_close(exact_posterior(model, x).sum(1), torch.ones(8))


def test_code_index_inverts_enumerate_codes():
    codes = enumerate_codes(7)
    assert torch.equal(code_index(codes), torch.arange(128))
    assert codes.shape == (128, 7) and set(codes.unique().tolist()) == {0.0, 1.0}


@pytest.mark.parametrize("kl", ["analytic", "sampled"])
@torch.no_grad()
def test_discrete_elbo_is_unbiased_for_the_enumerated_elbo(kl):
    """The Monte Carlo discrete ELBO (diss. 4.5) matches its exact expectation: with K = 4,000
    samples per image the standard error is below 0.02 nats; tolerance 0.1 (5 sigma)."""
    model = StandInBinary(n=4, dim=12, seed=5)
    x = images(5, 12, seed=6)
    g = torch.Generator().manual_seed(0)
    terms = discrete_terms(model, x, samples=4000, kl=kl, generator=g)
    exact = exact_evaluation(model, x, dtype=torch.float64)
    torch.testing.assert_close(terms.elbo, exact.elbo, atol=0.1, rtol=0)
    torch.testing.assert_close(terms.elbo, terms.recon - terms.kl)


@pytest.mark.parametrize("enumerate_bits", [0, 12])
@torch.no_grad()
def test_iwae_ordering_discrete(enumerate_bits):
    """Averaged over 200 images and repeated draws: ELBO <= IWAE-k <= IWAE-2k <= log p(x).

    Burda et al. 2016, Theorem 1. Each comparison allows 3 standard errors of the difference."""
    model = StandInBinary(n=5, dim=20, seed=7)
    x = images(200, 20, seed=8)
    g = torch.Generator().manual_seed(1)
    exact = exact_evaluation(model, x)
    elbo = discrete_elbo(model, x, samples=8, kl="sampled", generator=g)
    iw = {
        k: torch.stack(
            [iwae_bound(model, x, k, generator=g, enumerate_bits=enumerate_bits) for _ in range(4)]
        ).mean(0)
        for k in (1, 4, 8)
    }
    chain = [exact.elbo, elbo, iw[1], iw[4], iw[8], exact.log_px]
    for lower, upper in zip(chain[1:-1], chain[2:], strict=False):
        diff = upper - lower  # [B]
        se = diff.std() / math.sqrt(len(diff))
        assert diff.mean() > -3 * se - 1e-4, (lower.mean(), upper.mean())
    # and the bounds move: IWAE-8 is visibly above the ELBO, below log p(x)
    assert iw[8].mean() > elbo.mean() + 0.01
    assert exact.gap.mean() > 0.01
    torch.testing.assert_close(iw[1].mean(), exact.elbo.mean(), atol=0.15, rtol=0)


@torch.no_grad()
def test_iwae_converges_to_exact_log_px_and_enumeration_changes_nothing():
    """With k = 5,000 proposals over only 2^3 codes, IWAE-k is within 0.1 nats of log p(x) per
    image (observed spread 0.03) and 0.03 on average; the shortcut that decodes the 2^n codes
    once gives the same numbers as decoding every sample, draw for draw."""
    model = StandInBinary(n=3, dim=10, seed=9)
    x = images(10, 10, seed=10)
    iw = {
        bits: iwae_bound(
            model,
            x,
            5000,
            generator=torch.Generator().manual_seed(2),
            enumerate_bits=bits,
            cells=1 << 16,
        )
        for bits in (0, 12)
    }
    torch.testing.assert_close(iw[0], iw[12], atol=1e-4, rtol=0)
    exact = exact_log_px(model, x)
    torch.testing.assert_close(iw[0], exact, atol=0.1, rtol=0)
    assert abs((iw[0] - exact).mean()) < 0.03


class LinearGaussianVAE(nn.Module):
    """Gaussian family stand-in: z ~ N(0, I_2), x = W z + c + N(0, 0.3^2 I_3); q(z|x) diagonal.

    The marginal is N(c, W W^T + 0.09 I) in closed form."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(11)
        self.family = SimpleNamespace(name="gaussian", binary=False, has_likelihood=True)
        self.latent_dim = 2
        self.W = torch.randn(3, 2)
        self.c = torch.randn(3)
        self.enc = nn.Linear(3, 4)
        self.decoder = StandInDecoder("gaussian")
        self.dummy = nn.Parameter(torch.zeros(()))

    def posterior(self, x):
        # the exact posterior's mean and marginal scales (diagonal), a good proposal
        cov_post = torch.linalg.inv(torch.eye(2) + self.W.T @ self.W / 0.09)
        mean = (x - self.c) @ self.W / 0.09 @ cov_post
        return torch.distributions.Normal(mean, cov_post.diagonal().sqrt().expand_as(mean))

    def prior(self):
        return torch.distributions.Normal(torch.zeros(2), torch.ones(2))

    def relax(self, z):
        return z

    def decode(self, z):
        mean = z @ self.W.T + self.c
        return mean, torch.full_like(mean, math.log(0.3))


@torch.no_grad()
def test_iwae_gaussian_family_bounds_and_converges():
    model = LinearGaussianVAE()
    x = torch.randn(50, 3) + model.c
    marginal = torch.distributions.MultivariateNormal(
        model.c, model.W @ model.W.T + 0.09 * torch.eye(3)
    ).log_prob(x)
    torch.manual_seed(3)
    iw1 = torch.stack([iwae_bound(model, x, 1) for _ in range(20)]).mean(0)
    iw5000 = iwae_bound(model, x, 5000)
    assert iw1.mean() < iw5000.mean() - 0.01
    assert iw5000.mean() <= marginal.mean() + 0.005
    # the diagonal proposal misses the posterior correlation: observed per-image error <= 0.07
    torch.testing.assert_close(iw5000, marginal, atol=0.15, rtol=0)
    assert abs((iw5000 - marginal).mean()) < 0.03


# ---------------------------------------------------------------- summary, recon, bit statistics

EPOCH_KEYS = {
    "test_relaxed_elbo",
    "test_recon",
    "test_kl",
    "test_bernoulli_elbo",
    "test_discrete_elbo",
    "test_discrete_recon",
    "test_discrete_kl",
    "test_log_px_exact",
    "test_exact_gap",
}


def test_evaluate_epoch_columns_are_consistent_and_leave_the_rng_alone():
    model = StandInBinary(n=5, dim=20, seed=12)
    x = images(300, 20, seed=13)
    torch.manual_seed(123)
    first = evaluate_epoch(model, x, samples=2, seed=4)
    after = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(3), after)  # evaluation forked the global RNG
    assert set(first) == EPOCH_KEYS
    assert all(math.isfinite(v) for v in first.values())
    assert first == evaluate_epoch(model, x, samples=2, seed=4)  # same seed, same numbers
    rebatched = evaluate_epoch(model, x, samples=2, seed=4, batch_size=77)  # other draws
    for key in ("test_kl", "test_discrete_kl", "test_log_px_exact", "test_exact_gap"):
        assert rebatched[key] == pytest.approx(first[key], abs=1e-5)  # no sampling in these
    assert rebatched["test_discrete_elbo"] == pytest.approx(first["test_discrete_elbo"], abs=0.1)
    assert first["test_discrete_elbo"] <= first["test_log_px_exact"]
    assert first["test_exact_gap"] > 0
    torch.testing.assert_close(first["test_relaxed_elbo"], first["test_recon"] - first["test_kl"])
    torch.testing.assert_close(
        first["test_bernoulli_elbo"], first["test_relaxed_elbo"] - 0.01, atol=1.0, rtol=0
    )
    assert model.training  # mode restored
    small = evaluate_epoch(model, x, exact_max_bits=4)
    assert "test_log_px_exact" not in small and "test_discrete_elbo" in small


def test_evaluate_summary_is_json_ready_and_ordered():
    model = StandInBinary(n=5, dim=20, seed=14)
    x = images(200, 20, seed=15)
    out = evaluate_summary(model, x, samples=3, iwae_k=50, seed=1)  # recon_repeats 5 != samples
    json.dumps(out)  # summary.json material
    assert EPOCH_KEYS <= set(out)
    for key in (
        "test_iwae",
        "iwae_k",
        "iwae_proposal",
        "recon_loss_r5",
        "recon_loss_r5_discrete",
        "active_bits",
        "stuck_bits",
        "bit_statistics",
    ):
        assert key in out, key
    assert out["iwae_k"] == 50 and out["iwae_proposal"] == "discrete"
    assert out["test_discrete_elbo"] < out["test_iwae"] <= out["test_log_px_exact"] + 0.01
    assert out["recon_loss_r5"] > 0 and out["recon_loss_r5_discrete"] > 0
    assert "sample_fd" not in out  # no dataset given
    same = evaluate_summary(model, x, samples=5, seed=1)  # recon_loss_r5 from the epoch columns
    assert same["recon_loss_r5"] == -same["test_recon"]
    assert same["recon_loss_r5_discrete"] == -same["test_discrete_recon"]
    assert same["iwae_k"] == 1000  # n = 5: every code decoded once, samples are cheap
    assert out["recon_loss_r5"] == pytest.approx(same["recon_loss_r5"], abs=0.5)


@torch.no_grad()
def test_reconstruction_loss_averages_repeated_draws():
    """-(1/R) sum_r log p(x | c_r) against a hand loop over the R draws (the same noise), in
    both modes, and the discrete mode's average against its enumerated expectation."""
    model = StandInBinary(n=4, dim=12, seed=16)
    x = images(30, 12, seed=17)
    r5 = reconstruction_loss(
        model, x, repeats=5, mode="discrete", generator=torch.Generator().manual_seed(0)
    )
    lam = model.bit_probs(x)  # [B, 4]
    draws = torch.bernoulli(lam.expand(5, 30, 4), generator=torch.Generator().manual_seed(0))
    by_hand = -sum(model.decoder.log_prob(x, model.decode(draws[r])) for r in range(5)) / 5
    torch.testing.assert_close(r5, by_hand)
    # relaxed: the stand-in's own decoder input sigmoid(10 (l + logistic noise)), drawn by hand
    torch.manual_seed(3)
    relaxed = reconstruction_loss(model, x, repeats=5)
    torch.manual_seed(3)
    logits, total = model.bit_logits(x), torch.zeros(30)
    for _ in range(5):
        u = torch.rand_like(logits).clamp(1e-6, 1 - 1e-6)
        soft = torch.sigmoid(10 * (logits + u.log() - (-u).log1p()))  # [B, 4]
        total -= model.decoder.log_prob(x, model.decode(soft))
    torch.testing.assert_close(relaxed, total / 5)
    # the average over R draws equals its expectation, enumerated over the 2^4 codes
    codes = enumerate_codes(4)
    logits = model.bit_logits(x)
    log_q = logits @ codes.T - F.softplus(logits).sum(-1, keepdim=True)  # [B, 16]
    log_lik = torch.stack(
        [model.decoder.log_prob(x, model.decode(c.expand(30, 4))) for c in codes], dim=1
    )  # [B, 16]
    expected = -(log_q.exp() * log_lik).sum(1)
    many = reconstruction_loss(model, x, repeats=4000, mode="discrete")
    torch.testing.assert_close(many, expected, atol=0.1, rtol=0)


@torch.no_grad()
def test_bit_statistics_find_active_stuck_and_collapsed_bits():
    model = StandInBinary(n=4, dim=12, seed=18)
    model.encoder.weight.zero_()
    model.encoder.bias.copy_(torch.tensor([-50.0, 50.0, 0.0, 0.0]))  # stuck 0, stuck 1, prior
    model.encoder.weight[3, 0] = 20.0  # bit 3 follows pixel 0
    model.encoder.bias[3] = -10.0
    x = images(400, 12, seed=19)
    stats = bit_statistics(model, x, batch_size=64)
    assert stats.stuck_at_0 == [0] and stats.stuck_at_1 == [1]
    assert stats.active_bits == 1 and stats.activity[3] > 0.1 and stats.activity[2] == 0
    assert sum(stats.lambda_hist["counts"]) == 400 * 4
    assert sum(stats.posterior_mean_hist["counts"]) == 400 * 4
    assert len(stats.posterior_mean_hist["edges"]) == 46
    json.dumps(stats.to_dict())
