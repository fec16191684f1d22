"""Replicas: S seeds of one configuration trained at once, stacked, each equal to its single run.

The reference for a replica is always the plain single-model path (nn.Linear, one generator):
replica r after N steps must hold the parameters of a single run with r's seed, its data order
and its noise, to float32 round-off."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch

from _runs_helpers import metric_rows, tiny_config
from binaryvae.cli import main
from binaryvae.config import TrainConfig
from binaryvae.data import EpochBatches, load_dataset
from binaryvae.models import build_model
from binaryvae.models.replicas import (
    ReplicaGenerator,
    replica_layouts,
    stack_models,
    stack_optimizer_state,
    stack_state,
    unstack_optimizer_state,
    unstack_state,
)
from binaryvae.runs import train_replicas, train_run
from binaryvae.training import fit_epoch, load_checkpoint, make_optimizer

DATA = load_dataset("mnist-mini")
SEEDS = [3, 0, 7]  # not in order: replica r is the r-th seed, whatever its value
# the 13 trained cases stack two replicas (still out of order): what a third adds is the
# stacking's layout, which the one-step and round-trip tests below check with SEEDS
TRAINED_SEEDS = [3, 0]


def _model(seed: int, **fields) -> torch.nn.Module:
    torch.manual_seed(seed)
    cfg = TrainConfig(seed=seed, **fields)
    return build_model(cfg, 784, (28, 28), "image")


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|: the error relative to the tensor's scale."""
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-12)).item()


# (family, config fields, tolerance). 1e-5 relative is float32 round-off after 50 Adam steps
# (measured 2e-7 .. 4e-6). Three cases reach 1.6e-5 in encoder weights whose gradients are
# nearly zero (pixels that are almost never on): Adam divides such gradients by their own
# magnitude, which amplifies their round-off; they get 5e-5. Convolutions are checked with
# pathwise families: a grouped convolution rounds differently from a plain one, and with a
# discrete family a logit that moves by round-off across a uniform draw flips a sampled bit,
# after which the two runs are different (equally valid) trajectories. Likewise the whole-ELBO
# learning signal with a learned prior: the prior logits' gradient through log p(b) is
# mean(b) - sigmoid(prior), exactly 0 where half the batch's bits are 1; round-off leaves 0 or
# 6e-8 there, and Adam's first step turns 6e-8 into a full step of lr (measured: equal
# gradients to 6e-8, prior logits 0.86 apart in relative terms after one step), so that
# combination is checked by the one-step gradient test below instead.
CASES = [
    ("steplogistic", {}, 1e-5),  # pathwise
    ("bernoulli-sfe", {}, 1e-5),  # score function with its running-average baseline
    ("bernoulli-disarm", {}, 1e-5),  # two decoder evaluations, batched with the replicas
    ("bernoulli-reinforce-loo", {"extra": {"loo_samples": 3}}, 1e-5),
    ("bernoulli-st", {}, 1e-5),
    ("bernoulli-arm", {"extra": {"learning_signal": "elbo"}}, 1e-5),  # the papers' signal
    ("bernoulli-disarm", {"extra": {"samples": 4}}, 1e-5),  # two pairs
    # relax and rodeo: in float64, tests/test_published_estimators.py (their learned control
    # variates amplify float32 round-off beyond these tolerances within 50 steps)
    ("concrete", {"binarize": "dynamic", "extra": {"concrete_prior_beta": 5.0}}, 5e-5),
    ("gaussian", {}, 1e-5),
    ("gaussian-sigmoid", {"decoder": "gaussian"}, 1e-5),
    ("smoothsteplogistic", {"prior": "learned"}, 1e-5),
    ("steplogistic", {"network": "conv", "extra": {"conv_channels": 4}}, 1e-5),
    ("logistic", {"objective": "bernoulli-elbo", "prior": "learned"}, 5e-5),
    ("autoencoder-gmm", {}, 5e-5),
]


@pytest.mark.parametrize("family, fields, tol", CASES, ids=[f"{f}-{i}" for i, (f, _, _) in
                                                            enumerate(CASES)])  # fmt: skip
def test_replica_r_equals_the_single_run_with_seed_r(family, fields, tol):
    """50 steps of batch 40: every parameter and every Adam moment of both replicas within
    ``tol`` (relative to the tensor's scale) of the single run's."""
    fields = dict(family=family, latent_dim=6, hidden=(32,), batch_size=40, **fields)
    binarize = fields.get("binarize", "none")
    objective = fields.get("objective", "elbo")
    x = DATA.train_x[:2000]  # 50 batches of 40

    singles = []
    for seed in TRAINED_SEEDS:
        model = _model(seed, **fields)
        opt = make_optimizer(model, 1e-3)
        batches = EpochBatches(x, batch_size=40, binarize=binarize, seed=seed)
        g = torch.Generator().manual_seed(100 + seed)
        fit_epoch(model, opt, batches.epoch(1), epoch=1, objective=objective, generator=g)
        singles.append((model, opt))

    stacked = stack_models([_model(seed, **fields) for seed in TRAINED_SEEDS])
    opt = make_optimizer(stacked, 1e-3)
    loaders = [EpochBatches(x, batch_size=40, binarize=binarize, seed=s) for s in TRAINED_SEEDS]
    batches = (torch.stack(xs) for xs in zip(*[b.epoch(1) for b in loaders], strict=True))
    g = ReplicaGenerator([torch.Generator().manual_seed(100 + s) for s in TRAINED_SEEDS])
    stats = fit_epoch(stacked, opt, batches, epoch=1, objective=objective, generator=g,
                      replicas=len(TRAINED_SEEDS))  # fmt: skip
    assert [s.batches for s in stats] == [50, 50]

    layouts = replica_layouts(stacked)
    for r, (model, single_opt) in enumerate(singles):
        state = unstack_state(stacked.state_dict(), r, layouts, len(TRAINED_SEEDS))
        for key, value in model.state_dict().items():
            assert state[key].shape == value.shape, key
            assert _relative(state[key], value) < tol, (key, _relative(state[key], value))
        moments = unstack_optimizer_state(opt.state_dict(), r, stacked)["state"]
        for index, per_param in single_opt.state_dict()["state"].items():
            for name in ("exp_avg", "exp_avg_sq"):
                assert _relative(moments[index][name], per_param[name]) < tol, (index, name)


@pytest.mark.parametrize("family", ["bernoulli-arm", "bernoulli-disarm"])
def test_one_step_gradients_equal_with_the_whole_elbo_signal_and_a_learned_prior(family):
    """The estimator study's configuration (whole-ELBO learning signal, learned prior logits):
    one step's gradient of every parameter of replica r equals the single run's to round-off,
    each replica on its own batch and noise."""
    fields = dict(family=family, latent_dim=6, hidden=(32,), batch_size=40, prior="learned",
                  extra={"learning_signal": "elbo"})  # fmt: skip
    x = DATA.train_x[:40]
    xs = [next(iter(EpochBatches(x, batch_size=40, seed=s).epoch(1))) for s in SEEDS]
    singles = []
    for seed, xb in zip(SEEDS, xs, strict=True):
        model = _model(seed, **fields)
        g = torch.Generator().manual_seed(100 + seed)
        model.loss(xb, objective="elbo", generator=g).surrogate.backward()
        singles.append(model)
    stacked = stack_models([_model(seed, **fields) for seed in SEEDS])
    g = ReplicaGenerator([torch.Generator().manual_seed(100 + s) for s in SEEDS])
    stacked.loss(torch.stack(xs), objective="elbo", generator=g).surrogate.backward()
    grads = {name: p.grad for name, p in stacked.named_parameters()}
    layouts = replica_layouts(stacked)
    for r, model in enumerate(singles):
        mine = unstack_state(grads, r, layouts, len(SEEDS))
        for name, p in model.named_parameters():
            scale = p.grad.abs().max().clamp_min(1e-6)
            assert (mine[name] - p.grad).abs().max() <= 1e-5 * scale, (r, name)


def test_state_and_optimizer_state_round_trip_through_the_stack():
    fields = dict(family="bernoulli-sfe", latent_dim=4, hidden=(8,), network="conv",
                  extra={"conv_channels": 2})  # fmt: skip
    models = [_model(s, **fields) for s in SEEDS]
    stacked = stack_models(models)
    layouts = replica_layouts(stacked)
    again = stack_state([m.state_dict() for m in models], layouts)
    for key, value in stacked.state_dict().items():
        assert torch.equal(again[key], value), key
    opt = make_optimizer(stacked, 1e-3)
    x = torch.rand(len(SEEDS), 5, 784)
    stacked.loss(x).surrogate.backward()
    opt.step()
    plain = [unstack_optimizer_state(opt.state_dict(), r, stacked) for r in range(len(SEEDS))]
    rebuilt = stack_optimizer_state(plain, stacked)
    for index, per_param in opt.state_dict()["state"].items():
        for name, value in per_param.items():
            assert torch.equal(rebuilt["state"][index][name], value)


def test_replica_runs_write_the_single_runs_directories(tmp_path):
    """Through the run layer: each OUT/seed-<s>/ holds the metrics, checkpoint and summary a
    single run with that seed writes (to round-off), and is an ordinary run directory."""
    cfg = tiny_config(family="bernoulli-disarm", epochs=2, latent_dim=4, dataset="toy")
    summaries = train_replicas(cfg, [0, 5], tmp_path / "group", progress=False)
    assert sorted(summaries) == [0, 5]
    listing = json.loads((tmp_path / "group" / "replicas.json").read_text())
    assert listing["seeds"] == [0, 5]
    for seed in (0, 5):
        single = tmp_path / f"single-{seed}"
        alone = train_run(dataclasses.replace(cfg, seed=seed), single, progress=False)
        replica = tmp_path / "group" / f"seed-{seed}"
        assert json.loads((replica / "config.json").read_text())["seed"] == seed
        _assert_rows_close(metric_rows(replica), metric_rows(single))
        for key in ("test_discrete_elbo", "test_log_px_exact", "test_iwae"):
            assert summaries[seed][key] == pytest.approx(alone[key], rel=1e-5), key
        a = load_checkpoint(replica / "checkpoints" / "last.pt")
        b = load_checkpoint(single / "checkpoints" / "last.pt")
        for key, value in b["model"].items():
            assert _relative(a["model"][key], value) < 1e-5, key
    # ordinary run directories: evaluate and report treat them as runs
    assert main(["evaluate", str(tmp_path / "group"), "--iwae", "5"]) == 0


def test_a_nan_in_one_replica_stops_it_alone(tmp_path, monkeypatch, capsys):
    """Seed 1 is poisoned in epoch 2: it stops with its epoch-1 checkpoint and metrics; seeds 0
    and 2 finish with the metrics of a group that was never poisoned."""
    from binaryvae.models import VAE

    cfg = tiny_config(family="steplogistic", epochs=3, latent_dim=4, dataset="toy")
    clean = train_replicas(cfg, [0, 1, 2], tmp_path / "clean", progress=False)
    original = VAE.loss
    calls = {"n": 0}

    def poisoned(self, x, *args, **kwargs):
        terms = original(self, x, *args, **kwargs)
        if getattr(self, "replicas", 0) == 3 and self.training:
            calls["n"] += 1
            if calls["n"] == 16 + 5:  # epoch 2 (16 batches of 500 toy points per epoch), batch 5
                recon = terms.recon.clone()
                recon[1, 0] = float("nan")  # replica of seed 1
                terms = terms._replace(recon=recon)
        return terms

    monkeypatch.setattr(VAE, "loss", poisoned)
    hit = train_replicas(cfg, [0, 1, 2], tmp_path / "hit", progress=False, stream=None)
    assert hit[1]["status"] == "diverged"
    assert "epoch 2, batch 5" in hit[1]["message"]
    stopped = tmp_path / "hit" / "seed-1"
    assert [r["epoch"] for r in metric_rows(stopped)] == [1]
    assert load_checkpoint(stopped / "checkpoints" / "last.pt")["epoch"] == 1
    assert not (stopped / "summary.json").exists()
    for seed in (0, 2):
        got = metric_rows(tmp_path / "hit" / f"seed-{seed}")
        assert [r["epoch"] for r in got] == [1, 2, 3]
        _assert_rows_close(got, metric_rows(tmp_path / "clean" / f"seed-{seed}"))
        assert hit[seed]["test_discrete_elbo"] == pytest.approx(
            clean[seed]["test_discrete_elbo"], rel=1e-5
        )


def test_a_resumed_group_equals_an_uninterrupted_one(tmp_path):
    """Stopped after 2 of 3 epochs (as a killed group leaves it) and resumed: bit-identical."""

    def cfg(epochs):
        return tiny_config(family="bernoulli-sfe", epochs=epochs, dataset="toy")

    full = tmp_path / "full"
    train_replicas(cfg(3), [0, 1], full, progress=False)
    part = tmp_path / "part"
    train_replicas(cfg(2), [0, 1], part, progress=False)
    for seed in (0, 1):  # as if killed before the last summary: drop it
        (part / f"seed-{seed}" / "summary.json").unlink()
    train_replicas(cfg(3), [0, 1], part, resume=True, progress=False)
    for seed in (0, 1):
        assert metric_rows(part / f"seed-{seed}") == metric_rows(full / f"seed-{seed}")


def test_a_group_resumes_replicas_that_stopped_at_different_epochs(tmp_path):
    """A group killed between two replicas' checkpoints: each continues from its own (seed 1
    from a single run's epoch-1 checkpoint: equal to round-off, not bit for bit)."""

    def cfg(epochs, seed=0):
        return tiny_config(epochs=epochs, seed=seed, dataset="toy")

    full = tmp_path / "full"
    train_replicas(cfg(3), [0, 1], full, progress=False)
    part = tmp_path / "part"
    train_replicas(cfg(3), [0, 1], part, progress=False)
    behind = part / "seed-1"  # put seed 1 back to its epoch-1 state
    train_run(cfg(1, seed=1), tmp_path / "one", progress=False)
    shutil.copy(tmp_path / "one" / "metrics.jsonl", behind / "metrics.jsonl")
    shutil.copy(tmp_path / "one" / "checkpoints" / "last.pt", behind / "checkpoints" / "last.pt")
    (behind / "summary.json").unlink()
    train_replicas(cfg(3), [0, 1], part, resume=True, progress=False)
    _assert_rows_close(metric_rows(behind), metric_rows(full / "seed-1"))
    assert metric_rows(part / "seed-0") == metric_rows(full / "seed-0")  # it was done already


def _assert_rows_close(got: list[dict], want: list[dict]) -> None:
    assert [r["epoch"] for r in got] == [r["epoch"] for r in want]
    for g, w in zip(got, want, strict=True):
        for key, value in w.items():
            if isinstance(value, float):
                assert g[key] == pytest.approx(value, rel=1e-5, abs=1e-4), key
            else:
                assert g[key] == value, key


def test_cli_trains_seeds_and_refuses_bad_seed_lists(tmp_path, capsys):
    out = tmp_path / "g"
    argv = ["train", "--out", str(out), "--seeds", "0-1", "--epochs", "1", "--latent-dim", "4",
            "--hidden", "16", "--batch-size", "500", "--threads", "1", "--device", "cpu",
            "--quiet", "--no-report"]  # fmt: skip
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["seed-0", "seed-1"]
    for bad in ("3-1", "0,0", "x", str(2**32)):
        assert main([*argv[:4], bad, *argv[5:]]) == 2
    assert main([*argv, "--seed", "3"]) == 2
    capsys.readouterr()


def test_bf16_is_refused_where_the_cpu_has_no_bf16_instructions(tmp_path, capsys):
    from binaryvae.training import bf16_support

    supported, what = bf16_support(torch.device("cpu"))
    code = main(["train", "--out", str(tmp_path / "r"), "--precision", "bf16", "--epochs", "1",
                 "--latent-dim", "4", "--hidden", "16", "--batch-size", "500", "--threads", "1",
                 "--device", "cpu", "--quiet", "--no-report"])  # fmt: skip
    if supported:
        assert code == 0
    else:
        assert code == 2
        assert "bf16" in capsys.readouterr().err
        assert not (tmp_path / "r").exists()
