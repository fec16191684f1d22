"""Tests of binaryvae.evaluation against references: brute-force loops over codes, the analytic
toy marginal of diss. 5.1, KL(q || p(b|x)) computed directly, and the IWAE ordering of Burda et
al. (2016). The models are small stand-ins built from nn.Linear that honour the models contract
(docs/internals.md); tests with real `build_model` models live in test_evaluation_models.py."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from binaryvae.evaluation import (
    discrete_elbo,
    discrete_terms,
    enumerate_codes,
    exact_evaluation,
    exact_log_posterior,
    exact_log_px,
    exact_posterior,
    iwae_bound,
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
        self.family = SimpleNamespace(name="stand-in", binary=True)
        self.latent_dim = n
        self.encoder = nn.Linear(dim, n)
        self.net = nn.Sequential(nn.Linear(n, 16), nn.Tanh(), nn.Linear(16, dim))
        self.log_scale = nn.Parameter(torch.full((dim,), -0.5) + 0.1 * torch.randn(dim))
        self.prior_logits = nn.Parameter(0.5 * torch.randn(n))
        self.decoder = StandInDecoder(kind)

    def bit_logits(self, x):
        return 2.0 * self.encoder(x)

    def bit_probs(self, x):
        return torch.sigmoid(self.bit_logits(x))

    def prior_bit_logits(self):
        return self.prior_logits

    def decode(self, codes):
        h = self.net(codes)
        if self.decoder.kind == "bernoulli":
            return h
        return h, self.log_scale.expand_as(h)


class ToyTrueModel(nn.Module):
    """Diss. 5.1 toy model in d dims: b ~ Bernoulli(1/2)^d, x | b ~ N(b, 0.5^2) per dim."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.family = SimpleNamespace(name="toy-true", binary=True)
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
        self.family = SimpleNamespace(name="gaussian", binary=False)
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
