"""The main job's numbers, pinned: a tiny seeded compare of the seven families of the first
release's default, against the numbers that release printed for the same command.

The refactorings since (one engine for single runs and replicas, explicit generators,
evaluation through `model.score`, the feature classifier moved out of evaluation, ...) were
each meant to leave every number unchanged; this test fails if one did not. Tolerance: 0.01
nats (the README prints two decimals), far above float32 round-off between CPUs (1e-5 here)
and far below any change of behaviour.

Recorded with binaryvae 0.1 (2026-12-03) by
``binaryvae compare --out DIR --epochs 2 --latent-dim 4 --hidden 16 --batch-size 500
--threads 1 --device cpu`` (its defaults then were the seven families below).
"""

from __future__ import annotations

import dataclasses

import pytest

from _runs_helpers import tiny_config
from binaryvae.evaluation import own_elbo
from binaryvae.runs import compare, parse_families

FAMILIES = ("logistic:elbo,logistic:bernoulli-elbo,concrete:bernoulli-elbo,steplogistic:elbo,"
            "gaussian-sigmoid:elbo,bernoulli-sfe:elbo,autoencoder-gmm:elbo")  # fmt: skip
PINNED = {
    "logistic-elbo": (-503.0808, -502.7666, -498.3588, 969.0767),
    "logistic-bernoulli-elbo": (-503.6618, -503.3479, -498.5933, 968.9491),
    "concrete": (-503.6618, -503.3479, -498.5933, 968.9491),
    "steplogistic": (-503.4176, -503.0319, -498.5491, 969.1160),
    "gaussian-sigmoid": (-507.0763, -506.3815, -500.0745, 968.6715),
    "bernoulli-sfe": (-506.6599, -506.7111, -499.2539, 971.1724),
    "autoencoder-gmm": (None, None, None, 852.5996),
}
# the first value is the family's own ELBO: test_relaxed_elbo for the relaxed families,
# test_elbo for bernoulli-sfe (no relaxation); read with binaryvae.evaluation.own_elbo
KEYS = ("own_elbo", "test_discrete_elbo", "test_log_px_exact", "sample_fd")


def test_the_tiny_compare_gives_the_first_releases_numbers(tmp_path):
    base = dataclasses.replace(tiny_config(epochs=2, latent_dim=4), family="steplogistic")
    summaries = compare(parse_families(FAMILIES), base, tmp_path / "cmp", progress=False)
    assert set(summaries) == set(PINNED)
    for name, values in PINNED.items():
        for key, want in zip(KEYS, values, strict=True):
            got = own_elbo(summaries[name]) if key == "own_elbo" else summaries[name].get(key)
            if want is None:
                assert got is None, (name, key)
            else:
                assert got == pytest.approx(want, abs=0.01), (name, key)
