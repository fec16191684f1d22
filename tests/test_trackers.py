"""The per-row trackers (issue 27; `binaryvae.evaluation.trackers`): their numbers against an
independent computation, training with them equal to training without, a resumed or replica
run writing the rows of an uninterrupted single run, and bad values refused."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from _runs_helpers import (
    TINY,
    assert_same_weights,
    checkpoint_of,
    metric_rows,
    summary_of,
    tiny_config,
)
from binaryvae.cli import main
from binaryvae.config import TRACK_EXACT_BITS, TrainConfig
from binaryvae.errors import BadInput
from binaryvae.evaluation.trackers import (
    SATURATED,
    TRACK_KEYS,
    Tracker,
    flip_fractions,
    logit_quantiles,
    track_subset,
)
from binaryvae.runs import train_replicas, train_run
from binaryvae.training.checkpoint import config_fingerprint

ALL = ("exact", "logits", "flips")
TRACK_ALL = [k for keys in TRACK_KEYS.values() for k in keys]


def _cfg(**changes) -> TrainConfig:
    """A tiny steplogistic run on the toy data (fast), its budget in steps."""
    return tiny_config(**{"family": "steplogistic", "epochs": None, "dataset": "toy", **changes})


def _untracked(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("track_")} for r in rows]


# ----------------------------------------------------------------------------- the numbers
@pytest.fixture(scope="module")
def mnist():
    """mnist-mini, loaded once for the module's tests."""
    from binaryvae.data import load_dataset

    return load_dataset("mnist-mini")


def _tiny_model(dataset, latent_dim: int = 3):
    """A tiny steplogistic model of mnist-mini (Bernoulli decoder) and its dataset."""
    from binaryvae.runs.build import prepare

    config = tiny_config(latent_dim=latent_dim, family="steplogistic")
    prepared = prepare(config, dataset=dataset)
    return prepared.model, prepared.dataset


def test_exact_keys_equal_a_brute_force_enumeration(mnist):
    """track_discrete_elbo / track_log_px_exact / track_exact_gap against a loop over all 2^3
    codes in float64: log p(x, b) from the decoder's Bernoulli logits and the prior's, the
    posterior q(b|x) from the encoder's bit logits."""
    model, ds = _tiny_model(mnist, 3)
    torch.manual_seed(1)
    with torch.no_grad():  # move the weights off their init so the numbers are not symmetric
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = track_subset(ds.test_x, "none", 7)  # [7, 784]
    row = Tracker(x, ("exact",)).measure(model)
    assert set(row) == set(TRACK_KEYS["exact"])
    model.eval()
    xd = x.double()
    with torch.no_grad():
        q_logits = model.bit_logits(x).double()  # [7, 3]
        prior = model.prior_bit_logits().double().expand(3)
    elbo, log_px = [], []
    for i in range(x.shape[0]):
        joint, q = [], []
        for bits in itertools.product((0.0, 1.0), repeat=3):
            b = torch.tensor(bits, dtype=torch.float64)
            with torch.no_grad():
                dec = model.decode(b.float()[None])[0].double()  # [784] Bernoulli logits
            log_lik = (xd[i] * dec - F.softplus(dec)).sum()
            log_prior = (b * prior - F.softplus(prior)).sum()
            joint.append(float(log_lik + log_prior))
            log_q = (b * q_logits[i] - F.softplus(q_logits[i])).sum()
            q.append((math.exp(float(log_q)), float(log_q)))
        log_px.append(float(torch.logsumexp(torch.tensor(joint), 0)))
        elbo.append(sum(p * (j - lq) for (p, lq), j in zip(q, joint, strict=True)))
    want_elbo, want_px = float(np.mean(elbo)), float(np.mean(log_px))
    assert row["track_discrete_elbo"] == pytest.approx(want_elbo, rel=1e-5)
    assert row["track_log_px_exact"] == pytest.approx(want_px, rel=1e-5)
    assert row["track_exact_gap"] == pytest.approx(want_px - want_elbo, rel=1e-3, abs=1e-3)
    assert row["track_exact_gap"] >= 0


def test_logit_quantiles_equal_numpy_and_torch(mnist):
    """Quantiles of |logit| over all images x bits, linear interpolation: numpy's and
    torch.quantile's; on a model, of its bit logits of the tracked images."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(301, 7, generator=g) * 6  # [M, n], some beyond SATURATED
    got = logit_quantiles(logits)
    want = np.quantile(np.abs(logits.numpy()).astype(np.float64), [0.5, 0.9, 0.99])
    assert list(got) == list(TRACK_KEYS["logits"])
    assert list(got.values()) == pytest.approx(want.tolist(), rel=1e-12)
    torch_q = torch.quantile(logits.abs().double().flatten(), torch.tensor([0.5, 0.9, 0.99],
                             dtype=torch.float64))  # fmt: skip
    assert list(got.values()) == pytest.approx(torch_q.tolist(), rel=1e-12)
    model, ds = _tiny_model(mnist, 5)
    x = track_subset(ds.test_x, "none", 40)
    row = Tracker(x, ("logits",)).measure(model)
    with torch.no_grad():
        model.eval()
        expected = np.quantile(np.abs(model.bit_logits(x).numpy()), [0.5, 0.9, 0.99])
    assert [row[k] for k in TRACK_KEYS["logits"]] == pytest.approx(expected.tolist(), rel=1e-6)


def test_flip_fractions_of_hand_built_logits():
    """6 bits; 3 change sign (one from 12, one from -20: saturated; one from -0.5), one sits
    at exactly SATURATED (not above it) and flips, a logit of exactly 0 counts as bit 0."""
    previous = torch.tensor([[12.0, -1.0, 3.0, SATURATED], [-0.5, -20.0, 11.0, 0.0]])
    now = torch.tensor([[-1.0, -2.0, 4.0, -1.0], [0.5, 5.0, 11.0, -3.0]])
    got = flip_fractions(now, previous)
    assert got == {"track_bits_flipped": 4 / 8, "track_saturated_flipped": 2 / 8}
    assert flip_fractions(now, None) == {"track_bits_flipped": None,
                                         "track_saturated_flipped": None}  # fmt: skip
    # a Tracker counts against the previous measure, and starts with none
    tracker = Tracker(torch.zeros(2, 4), ("flips",))
    seq = iter([previous, now])
    tracker.bit_logits = lambda model: next(seq)  # type: ignore[method-assign]
    first = tracker.measure(torch.nn.Linear(1, 1))
    second = tracker.measure(torch.nn.Linear(1, 1))
    assert first == {"track_bits_flipped": None, "track_saturated_flipped": None}
    assert second == got and torch.equal(tracker.previous, now)


def test_a_tracker_leaves_the_rng_and_the_models_mode_as_they_were(mnist):
    model, ds = _tiny_model(mnist, 3)
    model.train()
    x = track_subset(ds.test_x, "none", 20)
    torch.manual_seed(5)
    state = torch.get_rng_state()
    Tracker(x, ALL).measure(model)
    assert model.training
    assert torch.equal(torch.get_rng_state(), state)


def test_the_tracked_images_are_the_first_n_binarized_once_with_a_fixed_seed(mnist):
    """The same images whatever the run's seed; capped by the test split's size."""
    from binaryvae.data import test_tensor

    ds = mnist
    a = track_subset(ds.test_x, "dynamic", 30)
    assert torch.equal(a, track_subset(ds.test_x, "dynamic", 30))
    assert torch.equal(a, test_tensor(ds.test_x[:30], binarize="dynamic", seed=0))
    assert set(a.unique().tolist()) == {0.0, 1.0}
    assert track_subset(ds.test_x[:12], "none", 1000).shape[0] == 12


def test_the_exact_limit_is_the_per_epoch_evaluations():
    from binaryvae.evaluation.summary import EPOCH_EXACT_BITS

    assert TRACK_EXACT_BITS == EPOCH_EXACT_BITS


# ----------------------------------------------------------------------------- in training
def test_training_with_trackers_is_training_without_them(tmp_path):
    """Parameters, Adam state, every training and test number and the summary equal bit for
    bit; only the track_* keys are added, at every row (epoch ends and --eval-every-steps)."""
    plain, tracked = tmp_path / "plain", tmp_path / "tracked"
    train_run(_cfg(steps=20, eval_every_steps=7), plain, progress=False)
    train_run(_cfg(steps=20, eval_every_steps=7, track=ALL, track_images=64), tracked,
              progress=False)  # fmt: skip
    assert_same_weights(tracked, plain)
    rows, base = metric_rows(tracked), metric_rows(plain)
    assert _untracked(rows) == base
    assert [r["step"] for r in rows] == [7, 14, 16, 20]
    for i, r in enumerate(rows):
        assert set(TRACK_ALL) <= set(r)
        assert (r["track_bits_flipped"] is None) == (i == 0)
        assert all(isinstance(r[k], float) for k in TRACK_ALL if i or "flip" not in k)
    assert summary_of(tracked) == summary_of(plain)


@pytest.mark.parametrize("cut", ["budget", "interrupt"])
def test_a_resumed_run_writes_the_rows_of_an_uninterrupted_one(tmp_path, monkeypatch, cut):
    """Rows, flips included, equal: cut by a step budget at 13 (a row the longer run does not
    have: flips at 16 count from the row at 10) and resumed to 27; or interrupted while
    writing the row at 24 and resumed from the checkpoint at 20."""
    import binaryvae.runs.engine as engine

    cfg = dict(eval_every_steps=10, track=ALL, track_images=50)
    straight, run = tmp_path / "straight", tmp_path / "run"
    train_run(_cfg(steps=27, **cfg), straight, progress=False)
    if cut == "budget":
        train_run(_cfg(steps=13, **cfg), run, progress=False)
        assert "track_logits_before" in checkpoint_of(run)["extra"]
    else:
        original = engine.end_epoch

        def interrupt(m, stats, point, kl_weight):
            if point.step == 27:
                raise KeyboardInterrupt
            return original(m, stats, point, kl_weight)

        monkeypatch.setattr(engine, "end_epoch", interrupt)
        with pytest.raises(KeyboardInterrupt):
            train_run(_cfg(steps=27, **cfg), run, progress=False)
        monkeypatch.undo()
        assert [r["step"] for r in metric_rows(run)] == [10, 16, 20]
    train_run(_cfg(steps=27, **cfg), run, resume=True, progress=False)
    assert_same_weights(run, straight)
    rows = metric_rows(run)
    assert rows == metric_rows(straight)
    assert [r["step"] for r in rows] == [10, 16, 20, 27]
    assert all(isinstance(r["track_bits_flipped"], float) for r in rows[1:])
    stored = checkpoint_of(run)["extra"]["track_logits"]
    want = checkpoint_of(straight)["extra"]["track_logits"]
    assert stored.shape == (50, 4) and torch.equal(stored, want)


def test_replicas_write_the_tracker_rows_of_single_runs(tmp_path):
    """``--seeds``: each member's own rows, as the single run with its seed writes them (to
    float32 round-off; a flip fraction to one bit in 200)."""
    group = tmp_path / "group"
    cfg = _cfg(steps=20, eval_every_steps=8, track=ALL, track_images=50)
    train_replicas(cfg, [0, 1], group, progress=False)
    for seed in (0, 1):
        alone = tmp_path / f"alone-{seed}"
        train_run(dataclasses.replace(cfg, seed=seed), alone, progress=False)
        got, want = metric_rows(group / f"seed-{seed}"), metric_rows(alone)
        assert [r["step"] for r in got] == [r["step"] for r in want] == [8, 16, 20]
        for g, w in zip(got, want, strict=True):
            for key in TRACK_ALL:
                if w[key] is None:
                    assert g[key] is None, key
                elif "flip" in key:
                    assert g[key] == pytest.approx(w[key], abs=1.01 / 200), key
                else:
                    assert g[key] == pytest.approx(w[key], rel=1e-4, abs=1e-4), key
    a, b = metric_rows(group / "seed-0"), metric_rows(group / "seed-1")
    assert a[-1]["track_discrete_elbo"] != b[-1]["track_discrete_elbo"]  # each its own model


# ----------------------------------------------------------------------------- the options
def test_track_is_normalized_and_recorded():
    c = TrainConfig(track=["flips", "exact"])
    assert c.track == ("exact", "flips")
    assert TrainConfig(track="logits, flips").track == ("logits", "flips")
    assert TrainConfig(track="none").track == ()
    d = c.to_dict()
    assert d["track"] == ["exact", "flips"] and d["track_images"] == 1000
    assert TrainConfig.from_dict(json.loads(json.dumps(d))) == c


def test_a_default_config_keeps_the_fingerprint_of_checkpoints_written_before_trackers():
    """Checkpoints of runs written before these fields still resume: the fingerprint of a
    config with no trackers is computed without them."""
    from binaryvae.config import RECORDED_FIELDS, RESUMABLE_FIELDS

    c = TrainConfig()
    # the training interventions' fields (later still) are left out at their defaults too
    later = ("optimizer", "momentum", "lr_decay_epoch", "lr_decay", "logit_clamp")
    fields = {k: v for k, v in c.to_dict().items()
              if k not in (*RESUMABLE_FIELDS, *RECORDED_FIELDS, "track", "track_images",
                           "eval_every_steps", *later)}  # fmt: skip
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), allow_nan=False)
    assert config_fingerprint(c) == hashlib.sha256(text.encode()).hexdigest()
    assert config_fingerprint(TrainConfig(track=("logits",))) != config_fingerprint(c)


@pytest.mark.parametrize(
    "options, words",
    [
        (["--track", "exact,bogus"], "unknown tracker 'bogus' in track"),
        (["--track", "exact,exact"], "track lists 'exact' twice"),
        (["--track", "exact,"], "track has an empty element"),
        (["--track", "exact", "--latent-dim", "17"], "latent_dim <= 16 bits, got latent_dim 17"),
        (["--track-images", "0"], "track_images must be in [1, "),
        (["--track", "logits", "--family", "gaussian"], "family 'gaussian' has none"),
    ],
)
def test_bad_tracker_options_are_refused_with_one_line(tmp_path, capsys, options, words):
    out = tmp_path / "run"
    argv = ["train", "--out", str(out), "--dataset", "toy", "--latent-dim", "4", *TINY,
            "--quiet", "--no-report", "--steps", "2", *options]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert not out.exists()


def test_the_library_refuses_bad_trackers_naming_the_value():
    with pytest.raises(BadInput, match="unknown tracker 'bogus'"):
        TrainConfig(track=("exact", "bogus"))
    with pytest.raises(BadInput, match="limited to latent_dim <= 16 bits"):
        TrainConfig(track=("exact",), latent_dim=17)
    with pytest.raises(BadInput, match=r"track_images must be in \[1, "):
        TrainConfig(track_images=0)
    with pytest.raises(BadInput, match="track must be a list"):
        TrainConfig(track=3)
    assert TrainConfig(track=("logits", "flips"), latent_dim=200).track == ("logits", "flips")


def test_the_cli_and_the_sweep_grid_take_the_tracker_options(tmp_path):
    from binaryvae.runs.sweep_grid import grid_from_values

    out = tmp_path / "run"
    argv = ["train", "--out", str(out), "--dataset", "toy", "--latent-dim", "4", *TINY,
            "--quiet", "--no-report", "--steps", "3", "--track", "flips,logits",
            "--track-images", "40"]  # fmt: skip
    assert main(argv) == 0
    stored = json.loads((out / "config.json").read_text())
    assert stored["track"] == ["logits", "flips"] and stored["track_images"] == 40
    (row,) = metric_rows(out)
    assert {k for k in row if k.startswith("track_")} == set(
        TRACK_KEYS["logits"] + TRACK_KEYS["flips"]
    )
    assert checkpoint_of(out)["extra"]["track_logits"].shape == (40, 4)
    grid = grid_from_values({"families": ["steplogistic"], "track": "exact,flips",
                             "track-images": 30, "steps": 3})  # fmt: skip
    assert {c.config.track for c in grid.cells()} == {("exact", "flips")}
    assert grid.base.track_images == 30
    again = grid_from_values(json.loads(json.dumps(grid.to_dict()["fixed"])) | {
        "families": ["steplogistic"]})  # fmt: skip
    assert again.base.track == ("exact", "flips")
    # the sweep's command line takes train's options as fixed values of its grid
    from binaryvae.cli import build_parser
    from binaryvae.cli.sweep import _given

    args = build_parser().parse_args(["sweep", "--out", str(tmp_path / "s"), "--track",
                                      "logits", "--track-images", "9", "--tensorboard"])
    given = _given(args)
    assert (given["track"], given["track_images"], given["tensorboard"]) == ("logits", 9, True)


@pytest.mark.parametrize("change", ["drop", "shape"])
def test_a_checkpoint_without_the_logits_flips_need_is_refused(tmp_path, capsys, change):
    """A run that tracks flips resumes only from a checkpoint holding the logits of its tracked
    images (one line naming the file, exit 2)."""
    out = tmp_path / "run"
    train_run(_cfg(steps=3, track=("flips",), track_images=20), out, progress=False)
    path = out / "checkpoints" / "last.pt"
    payload = torch.load(path, weights_only=True)
    if change == "drop":
        del payload["extra"]["track_logits"]
    else:
        payload["extra"]["track_logits"] = torch.zeros(20, 5)
    torch.save(payload, path)
    argv = ["train", "--out", str(out), "--resume", "--steps", "5", "--quiet", "--no-report"]
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "last.pt" in line and "track_logits" in line
