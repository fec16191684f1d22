"""The estimator registry and `check_estimator`, from inside and from an installed package.

- Every registered estimator passes `binaryvae.testing.check_estimator` (enumeration z-test with
  a learned prior and each learning signal it takes, or its bias measured; the contract; replica
  and resume equality).
- `register_estimator` adds ``bernoulli-<name>`` to the family registry that the CLI, the sweep
  grid and compare read; bad registrations are refused with one line.
- A package built in a temporary folder, visible only through its ``.dist-info`` entry point
  (group ``binaryvae.estimators``) on PYTHONPATH, trains with ``binaryvae train --family
  bernoulli-<its name>`` in a fresh process; its estimator passes `check_estimator`, and a
  planted biased one (DisARM with its encoder gradient scaled by 1.3, claiming unbiasedness)
  fails it. A package whose entry point fails to load is named in one line, exit code 2.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

import binaryvae
from binaryvae.config import TrainConfig
from binaryvae.distributions import bernoulli_log_mass
from binaryvae.errors import BadInput
from binaryvae.models.estimators import ESTIMATORS, DisARM, EstimatorOutput
from binaryvae.models.families import FAMILIES, FAMILY_CLASSES, make_family
from binaryvae.testing import (
    EstimatorCheckFailed,
    check_estimator,
    enumerable_model,
    exact_gradient,
    logit_estimates,
    z_scores,
)

SRC = Path(binaryvae.__file__).resolve().parent.parent

# (estimator name, extra options): every registered estimator, the K-sample ones at K = 4 too
CASES = [(name, {}) for name in ESTIMATORS] + [
    ("reinforce-loo", {"loo_samples": 4}),
    ("reinforce-loo", {"samples": 3}),
    ("disarm", {"samples": 4}),
    ("relax", {"relax_hidden": 0, "learning_signal": "elbo"}),
    ("rodeo", {"samples": 4, "rodeo_hidden": 8}),
    ("vimco", {"samples": 4}),
    ("arms", {"samples": 4}),
    ("arms-normal", {"samples": 4}),
    ("gumbel-rao", {"inner_samples": 1, "st_temperature": 0.5}),
    ("reinmax", {"st_temperature": 2.0}),
]


@pytest.mark.parametrize("name,extra", CASES, ids=[f"{n}{e or ''}" for n, e in CASES])
def test_every_registered_estimator_passes_check_estimator(name, extra):
    cls = ESTIMATORS[name]
    report = check_estimator(cls, extra)
    print(name, extra, [(c.signal, round(c.z_max, 2), round(c.relative_bias, 4))
                        for c in report.cases])  # fmt: skip
    assert report.checks == ["contract", "unbiased" if cls.unbiased else "bias measured",
                             "replicas", "resume"]  # fmt: skip
    if not cls.unbiased:  # a biased estimator's bias is resolved above the noise
        assert max(c.bias_norm / c.noise_norm for c in report.cases) > 10


def test_check_estimator_measures_the_bias_of_straight_through():
    """The measured bias is mean - exact, with the noise yardstick sqrt(tr Var / R): for
    straight-through (biased by design) tens of noise units, z far beyond 4.5."""
    report = check_estimator(ESTIMATORS["straight-through"])
    (case,) = report.cases
    assert case.signal == "reconstruction"
    assert case.z_max > 10 * 4.5
    assert case.bias_norm > 20 * case.noise_norm
    assert case.relative_bias == pytest.approx(
        sum(b * b for b in case.bias) ** 0.5 / sum(e * e for e in case.exact) ** 0.5
    )


class _Scaled(DisARM):
    """A planted bug: DisARM whose encoder gradient is 1.3 times too large."""

    def forward(self, logits, f, generator=None):
        out = super().forward(logits, f, generator)
        lifted = 0.3 * (out.surrogate - out.surrogate.detach())
        return out._replace(surrogate=out.surrogate + lifted)


def test_check_estimator_fails_a_planted_biased_estimator():
    with pytest.raises(EstimatorCheckFailed, match="claims unbiased = True"):
        check_estimator(_Scaled)


def test_check_estimator_sees_vimco_without_its_weight_term():
    """The IWAE-K enumeration has power: VIMCO without the -w~_j grad log q(b_j) term (the part
    of grad l_j that the detached log q leaves out) misses the exact gradient."""
    from binaryvae.models.published import VIMCO

    class Truncated(VIMCO):
        def forward(self, logits, f, generator=None):
            from binaryvae.models.published.vimco import leave_one_out_bounds

            k = self.samples
            u = torch.rand((k, *logits.shape), generator=generator, dtype=logits.dtype)
            b = (u < torch.sigmoid(logits.detach())).to(logits.dtype)
            lw = f(b)
            bound = torch.logsumexp(lw, 0) - math.log(k)
            signal = bound.detach() - leave_one_out_bounds(lw.detach())
            log_q = bernoulli_log_mass(b, logits)
            surrogate = bound + (signal * (log_q - log_q.detach())).sum(0)
            return EstimatorOutput(surrogate, bound.detach())

    model, x_rep, x, logits = enumerable_model(Truncated, 20000, {"samples": 4}, "learned")
    exact = exact_gradient(model, x, logits)
    z = z_scores(logit_estimates(model, x_rep, 3, 20000), exact)
    print("vimco without its weight term: max |z| =", float(z.abs().max()))
    assert z.abs().max() > 10


def test_check_estimator_fails_a_broken_contract():
    class Detached(DisARM):
        def forward(self, logits, f, generator=None):
            out = super().forward(logits, f, generator)
            return out._replace(value=out.value + 1.0)  # value no longer the surrogate's

    with pytest.raises(EstimatorCheckFailed, match="contract"):
        check_estimator(Detached)
    with pytest.raises(EstimatorCheckFailed, match="not an estimator class"):
        check_estimator(type("NoProps", (nn.Module,), {}))


class _Mine(DisARM):
    """DisARM under another name: a registered estimator of the test's own."""


def test_register_estimator_adds_a_family_everywhere():
    from binaryvae.runs.labels import family_facts
    from binaryvae.runs.sweep_grid import grid_from_values

    assert "bernoulli-mine" not in FAMILY_CLASSES
    binaryvae.register_estimator("mine", _Mine)
    try:
        assert ESTIMATORS["mine"] is _Mine and "bernoulli-mine" in FAMILIES
        cfg = TrainConfig(family="bernoulli-mine", extra={"learning_signal": "elbo"})
        family = make_family(cfg)
        assert family.estimator == "mine" and family.unbiased and family.takes_learning_signal
        assert isinstance(family.make_estimator(), _Mine)
        assert family_facts(cfg)["exact_latent"]
        grid = grid_from_values({"families": "bernoulli-mine,bernoulli-disarm"})
        assert [c.config.family for c in grid.cells()] == ["bernoulli-mine", "bernoulli-disarm"]
        # the same class again is a no-op; another class under the name is refused
        binaryvae.register_estimator("mine", _Mine)
        with pytest.raises(BadInput, match="already registered"):
            binaryvae.register_estimator("mine", DisARM)
    finally:
        ESTIMATORS.unregister("mine")
    assert "bernoulli-mine" not in FAMILY_CLASSES
    with pytest.raises(BadInput, match="unknown family 'bernoulli-mine'"):
        make_family(TrainConfig(family="bernoulli-mine"))


@pytest.mark.parametrize(
    "name,cls,message",
    [
        ("Bad Name", _Mine, "lower-case letters"),
        ("plain", nn.Linear, "must set the class attribute unbiased"),
        ("plain", int, "torch.nn.Module subclass"),
        ("disarm", _Mine, "already registered"),
    ],
)
def test_register_estimator_refuses_bad_registrations(name, cls, message):
    before = list(ESTIMATORS)
    with pytest.raises(BadInput, match=message):
        binaryvae.register_estimator(name, cls)
    assert list(ESTIMATORS) == before


# ------------------------------------------------------------------ an installed package
PACKAGE = '''
"""A tiny external estimator package: DisARM written out in its own code."""
import torch
from torch import nn
from binaryvae.distributions import draw
from binaryvae.models.estimators import EstimatorOutput


class Antithetic(nn.Module):
    unbiased, takes_learning_signal, samples_per_step = True, True, 2

    @classmethod
    def from_options(cls, options):
        return cls()

    def forward(self, logits, f, generator=None):
        p = torch.sigmoid(logits.detach())
        u = draw(torch.rand, logits.shape, logits, generator)  # replicas: per-replica noise
        pair = torch.stack([u < p, 1 - u < p]).to(logits.dtype)  # [2, ..., B, n]
        fb = f(pair)  # [2, ..., B]
        b, bt = pair
        g = 0.5 * (fb[0] - fb[1]).detach().unsqueeze(-1) * (1 - 2 * bt) * (b != bt) \\
            * torch.sigmoid(logits.detach().abs())
        surrogate = fb.mean(0) + (g * (logits - logits.detach())).sum(-1)
        return EstimatorOutput(surrogate, fb.detach().mean(0))


class Planted(Antithetic):
    """Biased on purpose: the encoder gradient 1.3 times too large, still called unbiased."""

    def forward(self, logits, f, generator=None):
        s, v = super().forward(logits, f, generator)
        return EstimatorOutput(s + 0.3 * (s - s.detach()), v)
'''


def _install(site: Path, entry_points: str) -> None:
    """The package and a .dist-info with its entry points: what pip would leave in ``site``."""
    (site / "antithetic_est").mkdir(parents=True)
    (site / "antithetic_est" / "__init__.py").write_text(textwrap.dedent(PACKAGE))
    info = site / "antithetic_est-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: antithetic-est\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)


def _run(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(site)])}
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


@pytest.mark.e2e
def test_an_installed_package_trains_and_is_checked(tmp_path, monkeypatch):
    site = tmp_path / "site"
    _install(site, "[binaryvae.estimators]\nantithetic = antithetic_est:Antithetic\n")
    out = tmp_path / "run"
    argv = ["train", "--family", "bernoulli-antithetic", "--epochs", "1", "--dataset",
            "mnist-mini", "--latent-dim", "4", "--hidden", "16", "--threads", "1", "--batch-size",
            "500", "--device", "cpu", "--out", str(out), "--quiet", "--no-report"]  # fmt: skip
    # one fresh process (the package is found only through its entry point): the command,
    # then the families that process sees
    script = ("import sys; from binaryvae.cli import main; code = main(sys.argv[1:]); "
              "from binaryvae.models.families import FAMILIES; print(list(FAMILIES)); "
              "sys.exit(code)")  # fmt: skip
    done = _run(site, "-c", script, *argv)
    assert done.returncode == 0, done.stderr
    import json

    assert json.loads((out / "config.json").read_text())["family"] == "bernoulli-antithetic"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["family"] == "bernoulli-antithetic" and summary["exact_latent"]
    # the families the CLI sees in that process include the package's
    assert "'bernoulli-antithetic'" in done.stdout and "'bernoulli-disarm'" in done.stdout

    monkeypatch.syspath_prepend(str(site))
    import antithetic_est

    report = check_estimator(antithetic_est.Antithetic)
    assert report.checks == ["contract", "unbiased", "replicas", "resume"]
    with pytest.raises(EstimatorCheckFailed, match="Planted claims unbiased = True"):
        check_estimator(antithetic_est.Planted)


def test_a_package_that_fails_to_load_is_named_in_one_line(tmp_path, capsys):
    """In this process, the entry points read again with the package on the path: `train`
    exits 2 with one line naming the package, the entry point and the missing class, and
    writes nothing. `test_a_package_that_fails_to_load_in_a_fresh_process` (slow) runs the
    command in a fresh interpreter."""
    import importlib

    from binaryvae.cli import main

    site = tmp_path / "site"
    _install(site, "[binaryvae.estimators]\nbroken = antithetic_est:NoSuchClass\n")
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    ESTIMATORS._loaded = False
    try:
        code = main(["train", "--family", "bernoulli-disarm", "--epochs", "1", "--out",
                     str(tmp_path / "run"), "--quiet", "--no-report"])  # fmt: skip
    finally:
        sys.path.remove(str(site))
        importlib.invalidate_caches()
        ESTIMATORS._loaded = False  # read again without the package at the next use
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert "'antithetic-est'" in lines[0] and "'broken'" in lines[0] and "NoSuchClass" in lines[0]
    assert not (tmp_path / "run").exists()
    assert "bernoulli-disarm" in FAMILY_CLASSES and "broken" not in ESTIMATORS


@pytest.mark.slow
def test_a_package_that_fails_to_load_in_a_fresh_process(tmp_path):
    site = tmp_path / "site"
    _install(site, "[binaryvae.estimators]\nbroken = antithetic_est:NoSuchClass\n")
    done = _run(site, "-m", "binaryvae", "train", "--family", "bernoulli-disarm", "--epochs",
                "1", "--out", str(tmp_path / "run"), "--quiet", "--no-report")  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "'antithetic-est'" in lines[0] and "'broken'" in lines[0] and "NoSuchClass" in lines[0]
    assert not (tmp_path / "run").exists()


def test_entry_points_are_read_lazily_and_once(tmp_path, monkeypatch):
    """In this process: a registry read loads the group once; a new package appears after
    ``load_entry_points`` is asked again (as a fresh process would see it)."""
    site = tmp_path / "site"
    _install(site, "[binaryvae.estimators]\nantithetic = antithetic_est:Antithetic\n")
    monkeypatch.syspath_prepend(str(site))
    assert "antithetic" not in ESTIMATORS  # already loaded in this process: not re-read
    ESTIMATORS._loaded = False
    try:
        assert "bernoulli-antithetic" in FAMILY_CLASSES
        assert ESTIMATORS.source_of("antithetic") == "package antithetic-est"
        assert FAMILY_CLASSES["bernoulli-antithetic"].unbiased
    finally:
        ESTIMATORS.unregister("antithetic")
