"""binaryvae.evaluation on real `build_model` models: every family is scored, the enumeration
matches a brute-force loop through the real decoders, and a real VAE given the toy model's true
decoder reproduces the analytic marginal of diss. 5.1 (`binaryvae.data.toy_log_px`)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from binaryvae.config import TrainConfig
from binaryvae.data import sample_toy, toy_log_px
from binaryvae.errors import BadInput
from binaryvae.evaluation import (
    evaluate_epoch,
    evaluate_summary,
    exact_evaluation,
    exact_log_px,
    iwae_bound,
)
from binaryvae.models import FAMILIES, build_model

DIM = 64  # small "images" keep these tests fast; the maths does not depend on D


def model_for(family: str, n: int = 4, decoder: str = "auto", kind: str = "image", **extra):
    torch.manual_seed(0)
    config = TrainConfig(family=family, latent_dim=n, hidden=(32,), decoder=decoder, extra=extra)
    return build_model(config, data_dim=DIM if kind == "image" else n, data_kind=kind)


def images(batch: int = 40) -> torch.Tensor:
    return torch.rand(batch, DIM, generator=torch.Generator().manual_seed(0))


def brute_force_log_px(model, x: torch.Tensor) -> torch.Tensor:
    """logsumexp over codes of log p(x|b) + log p(b), decoding every (image, code) pair."""
    n = model.latent_dim
    prior = model.prior_bit_logits()
    rows = []
    for i in range(x.shape[0]):
        terms = []
        for c in range(1 << n):
            b = torch.tensor([float((c >> j) & 1) for j in range(n)])
            log_pb = (b * prior - torch.nn.functional.softplus(prior)).sum()
            terms.append(model.decoder.log_prob(x[i : i + 1], model.decode(b[None]))[0] + log_pb)
        rows.append(torch.logsumexp(torch.stack(terms), 0))
    return torch.stack(rows)


@pytest.mark.parametrize("decoder", ["bernoulli", "gaussian"])
@torch.no_grad()
def test_exact_log_px_of_a_real_model_equals_the_brute_force_loop(decoder):
    model = model_for("steplogistic", decoder=decoder)
    if decoder == "gaussian":
        model.decoder.log_scale.data.uniform_(-1.0, 0.5)  # per-pixel scales, not all equal
    x = images(6)
    torch.testing.assert_close(
        exact_log_px(model, x), brute_force_log_px(model, x), atol=2e-4, rtol=0
    )


@torch.no_grad()
def test_real_vae_with_the_true_toy_decoder_gives_the_analytic_marginal():
    d = 5
    model = model_for("steplogistic", n=d, decoder="gaussian", kind="real", decoder_scale=0.5)
    first, last = [m for m in model.decoder.net.modules() if isinstance(m, torch.nn.Linear)]
    first.weight.zero_(), last.weight.zero_(), first.bias.zero_(), last.bias.zero_()
    first.weight[:d].copy_(torch.eye(d))  # hidden units 0..d-1 = ReLU(b) = b for bits
    last.weight[:, :d].copy_(torch.eye(d))  # mean = b: the true decoder x | b ~ N(b, 0.5^2)
    x = sample_toy(300, dim=d, generator=torch.Generator().manual_seed(1)).x
    assert float(model.decoder.log_prob(x[:1], model.decode(torch.ones(1, d)))) == pytest.approx(
        float(torch.distributions.Normal(1.0, 0.5).log_prob(x[0]).sum()), abs=1e-5
    )
    torch.testing.assert_close(exact_log_px(model, x), toy_log_px(x), atol=1e-4, rtol=0)


def _build_or_skip(family: str):
    try:
        return model_for(family)
    except BadInput as e:  # a family whose distribution has not landed yet
        pytest.skip(str(e))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_is_scored(family):
    model = _build_or_skip(family)
    x = images()
    if family == "autoencoder-gmm":
        model.finalize(images(200))
    epoch = evaluate_epoch(model, x, seed=0)
    summary = evaluate_summary(model, x, iwae_k=20, seed=0)
    json.dumps(summary)
    binary = model.family.binary
    assert ("test_discrete_elbo" in epoch) == binary
    assert ("test_log_px_exact" in epoch) == binary  # n = 4 <= 16
    # the family's own ELBO: "relaxed" only where the family has a relaxation
    own = "test_relaxed_elbo" if model.family.relaxed else "test_elbo"
    other = "test_elbo" if own == "test_relaxed_elbo" else "test_relaxed_elbo"
    assert (own in epoch) == model.family.has_likelihood and other not in epoch
    assert ("test_bernoulli_elbo" in epoch) == (binary and not model.family.exact)
    assert ("test_iwae" in summary) == (family != "autoencoder-gmm")
    assert all(math.isfinite(v) for v in epoch.values())
    if binary:
        assert epoch["test_discrete_elbo"] <= epoch["test_log_px_exact"] + 0.05
        assert summary["test_iwae"] <= summary["test_log_px_exact"] + 0.05
        assert summary["iwae_proposal"] == "discrete"
    elif family == "gaussian":
        assert summary["iwae_proposal"] == "relaxed"
        assert summary["test_iwae"] >= summary["test_elbo"] - 0.05


@torch.no_grad()
def test_gap_of_a_real_model_is_positive_and_iwae_closes_it():
    model = model_for("logistic", n=5)
    x = images(60)
    exact = exact_evaluation(model, x)
    assert (exact.gap > -1e-4).all()
    iw = iwae_bound(model, x, 2000, generator=torch.Generator().manual_seed(0))
    assert float((exact.log_px - iw).mean()) < 0.05 * float(exact.gap.mean()) + 0.01


@pytest.mark.slow
def test_evaluation_never_imports_the_estimators():
    """binaryvae.models/__init__ imports its estimators, so no binaryvae.models module at all may
    be loaded by importing the evaluation package (it uses the model's public methods only).

    Slow (a fresh interpreter imports torch): the default suite checks the same in
    tests/test_layers.py (`test_importing_a_module_loads_only_what_the_rules_allow`: every
    evaluation module, imported alone in a fresh interpreter, loads no models module)."""
    code = (
        "import sys, binaryvae.evaluation; "
        "bad = [m for m in sys.modules if m.startswith('binaryvae.models')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("family", ["bernoulli-sfe", "steplogistic"])
def test_evaluation_leaves_the_model_untouched(family):
    """Evaluating mid-training changes no parameter or buffer (the SFE control variate's running
    mean included) and restores training mode, so a resumed run matches an uninterrupted one."""
    model = _build_or_skip(family)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    evaluate_summary(model, images(), iwae_k=10, seed=0)
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.slow
@torch.no_grad()
def test_enumeration_reaches_twenty_bits_with_bounded_memory():
    """n = 20: 2^20 codes in chunks of 4,096; the result does not depend on the chunking and
    IWAE (decoding its samples) stays below it."""
    model = model_for("steplogistic", n=20)
    x = images(8)
    a = exact_evaluation(model, x)
    b = exact_evaluation(model, x, code_chunk=1 << 15, cells=1 << 18)
    for u, v in zip(a, b, strict=True):
        torch.testing.assert_close(u, v, atol=1e-3, rtol=0)
    assert (a.gap > -1e-3).all()
    iw = iwae_bound(model, x, 200, generator=torch.Generator().manual_seed(0))
    assert float((iw - a.log_px).mean()) < 0.01
