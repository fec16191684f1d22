"""The training interventions (issue 28): the logit clamp, SGD with momentum, a one-time
learning-rate decay -- each against a hand-computed value, resumable exactly, and refused with
one line (exit 2) where it does not apply."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from _runs_helpers import file_bytes, metric_rows, one_line_error, tiny_config, train_argv
from binaryvae.cli import main
from binaryvae.config import RECORDED_FIELDS, RESUMABLE_FIELDS, TrainConfig
from binaryvae.errors import BadInput
from binaryvae.models import build_model
from binaryvae.models.families import StepLogisticFamily
from binaryvae.models.replicas import stack_models
from binaryvae.models.vae import VAE
from binaryvae.runs import train_replicas, train_run
from binaryvae.training import lr_factor, make_optimizer, set_epoch_lr
from binaryvae.training.checkpoint import CheckpointError, config_fingerprint, load_checkpoint

PER_EPOCH = math.ceil(8000 / 500)  # the toy data's 8,000 training points, batch 500


def _cfg(**changes) -> TrainConfig:
    """A tiny steplogistic run on the toy data (the fastest to prepare and evaluate)."""
    return tiny_config(**{"family": "steplogistic", "epochs": None, "dataset": "toy", **changes})


def _ckpt(run: Path) -> dict:
    return load_checkpoint(run / "checkpoints" / "last.pt")


def _assert_same_run(got: Path, want: Path) -> None:
    """Parameters, optimizer state and metrics rows (timing aside) equal, bit for bit."""
    a, b = _ckpt(got), _ckpt(want)
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    for i, state in b["optimizer"]["state"].items():
        for key, value in state.items():
            assert torch.equal(a["optimizer"]["state"][i][key], value), (i, key)
    assert [g["lr"] for g in a["optimizer"]["param_groups"]] == [
        g["lr"] for g in b["optimizer"]["param_groups"]
    ]
    assert metric_rows(got) == metric_rows(want)


# ----------------------------------------------------------------------------- logit clamp
def _identity_vae(clamp: float | None) -> VAE:
    """A steplogistic VAE whose encoder is the identity: its input is its logits."""
    return VAE(StepLogisticFamily(), nn.Identity(), nn.Identity(), 7,
               nn.Module(), logit_clamp=clamp)  # fmt: skip


def test_logit_clamp_on_a_hand_made_logit_tensor_and_its_gradient():
    """C = 2: logits (-5, -2.5, -1.5, 0, 1.5, 2.5, 5) become (-2, -2, -1.5, 0, 1.5, 2, 2); the
    gradient of sum(w * clamped) is w inside (-2, 2) and exactly 0 outside."""
    h = torch.tensor([[-5.0, -2.5, -1.5, 0.0, 1.5, 2.5, 5.0]], requires_grad=True)
    (logits,) = _identity_vae(2.0).encoder_params(h)
    assert logits.tolist() == [[-2.0, -2.0, -1.5, 0.0, 1.5, 2.0, 2.0]]
    w = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]])
    (logits * w).sum().backward()
    assert h.grad.tolist() == [[0.0, 0.0, 3.0, 4.0, 5.0, 0.0, 0.0]]
    # without the option nothing changes: the identity, gradient w everywhere
    h.grad = None
    (plain,) = _identity_vae(None).encoder_params(h)
    (plain * w).sum().backward()
    assert torch.equal(plain, h) and torch.equal(h.grad, w)


def test_logit_clamp_bounds_the_posterior_of_a_built_model_and_its_replicas():
    """An encoder whose last bias is 1,000 gives logits 1,000 unclamped; with logit_clamp 30
    every bit logit and the posterior's logits are 30 (sigmoid(30) < 1 in float32), in the
    stacked replicas too."""
    cfg = dict(latent_dim=3, hidden=(4,), family="steplogistic")
    models = []
    for clamp in (None, 30.0, 30.0):
        torch.manual_seed(0)
        m = build_model(TrainConfig(logit_clamp=clamp, **cfg), 12, (3, 4))
        with torch.no_grad():
            m.encoder.net[-1].weight.zero_()
            m.encoder.net[-1].bias.fill_(1000.0)
        models.append(m)
    x = torch.rand(5, 12)
    assert torch.equal(models[0].bit_logits(x), torch.full((5, 3), 1000.0))
    assert torch.equal(models[1].bit_logits(x), torch.full((5, 3), 30.0))
    assert torch.equal(models[1].posterior(x).logits, torch.full((5, 3), 30.0))
    stacked = stack_models(models[1:])
    assert torch.equal(stacked.bit_logits(torch.stack([x, x])), torch.full((2, 5, 3), 30.0))


@pytest.mark.parametrize("family", ["gaussian", "gaussian-sigmoid", "autoencoder-gmm"])
def test_logit_clamp_is_refused_for_families_without_logits(family):
    with pytest.raises(BadInput, match=f"logit_clamp.*{family}"):
        build_model(TrainConfig(family=family, latent_dim=3, hidden=(4,), logit_clamp=5.0),
                    12, (3, 4))  # fmt: skip


# ----------------------------------------------------------------------------- SGD
class _Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.p = nn.Parameter(torch.tensor([1.0, -2.0]))


def test_one_sgd_momentum_step_and_the_next_against_the_formula():
    """lr 0.1, momentum 0.9, gradients g1 = (0.5, -1) then g2 = (0.25, 2): the buffer starts
    at g1, p1 = p0 - 0.1 g1 = (0.95, -1.9); then buf = 0.9 g1 + g2 = (0.7, 1.1) and
    p2 = p1 - 0.1 buf = (0.88, -2.01)."""
    model = _Two()
    opt = make_optimizer(model, 0.1, kind="sgd", momentum=0.9)
    assert isinstance(opt, torch.optim.SGD)
    for grad, want in (((0.5, -1.0), (0.95, -1.9)), ((0.25, 2.0), (0.88, -2.01))):
        model.p.grad = torch.tensor(grad)
        opt.step()
        assert torch.allclose(model.p.detach(), torch.tensor(want), rtol=0, atol=1e-6)
    buf = opt.state[model.p]["momentum_buffer"]
    assert torch.allclose(buf, torch.tensor([0.7, 1.1]), rtol=0, atol=1e-6)


def test_the_config_chooses_sgd_and_the_prior_logits_keep_plain_sgd():
    """optimizer sgd, momentum 0.9 (the config's, through the model): every group SGD at the
    config's rate with momentum 0.9, except the learned prior's logits under prior_sgd_lr
    (momentum 0, rate 0.01); Adam stays the default."""
    c = TrainConfig(latent_dim=3, hidden=(4,), optimizer="sgd", momentum=0.9, prior="learned",
                    prior_sgd_lr=1e-2, lr=1e-3)  # fmt: skip
    model = build_model(c, 12, (3, 4))
    opt = make_optimizer(model, c.lr)
    assert isinstance(opt, torch.optim.SGD)
    by_prior = {any(p is model.prior_module.param for p in g["params"]): g
                for g in opt.param_groups}  # fmt: skip
    assert (by_prior[True]["lr"], by_prior[True]["momentum"]) == (1e-2, 0.0)
    assert (by_prior[False]["lr"], by_prior[False]["momentum"]) == (1e-3, 0.9)
    default = make_optimizer(build_model(TrainConfig(latent_dim=3, hidden=(4,)), 12, (3, 4)), 1e-3)
    assert isinstance(default, torch.optim.Adam)


# ----------------------------------------------------------------------------- lr decay
def test_the_lr_factor_of_each_epoch():
    """Decay 0.1 after epoch 15: epochs 1-15 at 1, 16 on at 0.1; no decay: 1 always."""
    assert [lr_factor(e, 15, 0.1) for e in (1, 15, 16, 125)] == [1.0, 1.0, 0.1, 0.1]
    assert lr_factor(200, None, None) == 1.0
    model = _Two()
    opt = make_optimizer(model, 1e-3)
    set_epoch_lr(opt, lr_factor(16, 15, 0.1))
    assert opt.param_groups[0]["lr"] == 1e-3 * 0.1
    set_epoch_lr(opt, lr_factor(3, 15, 0.1))
    assert opt.param_groups[0]["lr"] == 1e-3


def test_a_run_trains_at_lr_up_to_the_decay_epoch_and_at_lr_times_f_after(tmp_path):
    """Decay 0.1 after epoch 1: the checkpoint at the end of epoch 1 holds lr 1e-3, one
    inside epoch 2 holds 1e-4 (1e-3 * 0.1); the first epoch's parameters equal a run without
    the decay's and the second's differ from them."""
    lrs = {}
    for steps, same in ((PER_EPOCH, True), (PER_EPOCH + 3, False)):
        a, b = tmp_path / f"a{steps}", tmp_path / f"b{steps}"
        train_run(_cfg(steps=steps, lr=1e-3, lr_decay_epoch=1, lr_decay=0.1), a, progress=False)
        train_run(_cfg(steps=steps, lr=1e-3), b, progress=False)
        equal = all(torch.equal(v, _ckpt(b)["model"][k]) for k, v in _ckpt(a)["model"].items())
        assert equal is same, steps
        lrs[steps] = [g["lr"] for g in _ckpt(a)["optimizer"]["param_groups"]]
    assert lrs == {PER_EPOCH: [1e-3], PER_EPOCH + 3: [1e-3 * 0.1]}


@pytest.mark.parametrize("optimizer", [{}, {"optimizer": "sgd", "momentum": 0.9, "lr": 1e-2}])
def test_resume_across_the_decay_epoch_equals_an_uninterrupted_run(tmp_path, optimizer):
    """Decay 0.1 after epoch 1, Adam or SGD with momentum: cut inside epoch 1, resumed to a
    cut inside epoch 2 (past the decay), to the end of epoch 2, then into epoch 3: parameters,
    the optimizer's state and lr, and every metrics row equal a run trained straight through."""
    cfg = dict(lr_decay_epoch=1, lr_decay=0.1, logit_clamp=8.0, **optimizer)
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    total = 2 * PER_EPOCH + 3
    train_run(_cfg(steps=total, **cfg), straight, progress=False)
    for steps in (7, PER_EPOCH + 3, 2 * PER_EPOCH, total):
        train_run(_cfg(steps=steps, **cfg), cut, resume=steps != 7, progress=False)
    _assert_same_run(cut, straight)
    lrs = [g["lr"] for g in _ckpt(straight)["optimizer"]["param_groups"]]
    base = optimizer.get("lr", 1e-3)
    assert lrs == [base * 0.1]


def test_replicas_resume_across_the_decay_epoch_like_an_uninterrupted_group(tmp_path):
    """``--seeds`` with SGD momentum and the decay: every replica's momentum buffer and lr go
    through the stacked optimizer and back; cut inside epoch 2, resumed, equals straight."""
    cfg = dict(lr_decay_epoch=1, lr_decay=0.5, optimizer="sgd", momentum=0.9, lr=1e-2)
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    train_replicas(_cfg(steps=PER_EPOCH + 4, **cfg), [0, 1], straight, progress=False)
    train_replicas(_cfg(steps=PER_EPOCH + 2, **cfg), [0, 1], cut, progress=False)
    train_replicas(_cfg(steps=PER_EPOCH + 4, **cfg), [0, 1], cut, resume=True, progress=False)
    for seed in (0, 1):
        _assert_same_run(cut / f"seed-{seed}", straight / f"seed-{seed}")


@pytest.mark.parametrize(
    ("cfg", "key", "value", "message"),
    [
        ({}, "lr", 1e-3, r"param_groups\[0\]\.lr is 0\.001.*0\.0001"),
        ({"optimizer": "sgd", "momentum": 0.9}, "momentum", 0.5,
         r"param_groups\[0\]\.momentum is 0\.5.*0\.9"),
    ],
)  # fmt: skip
def test_a_checkpoint_whose_lr_or_momentum_is_not_the_configs_is_refused(
    tmp_path, cfg, key, value, message
):
    """A checkpoint inside epoch 2 (after the decay to 1e-4) hand-edited back to the undecayed
    lr 1e-3, or an SGD run's checkpoint edited to momentum 0.5, is refused on resume, naming
    the entry; nothing of the run changes."""
    run = tmp_path / "run"
    cfg = dict(lr_decay_epoch=1, lr_decay=0.1, lr=1e-3, **cfg)
    train_run(_cfg(steps=PER_EPOCH + 2, **cfg), run, progress=False)
    path = run / "checkpoints" / "last.pt"
    payload = torch.load(path, weights_only=True)
    assert set(payload["optimizer"]["state"][0]) == (
        {"momentum_buffer"} if "optimizer" in cfg else {"step", "exp_avg", "exp_avg_sq"}
    )
    payload["optimizer"]["param_groups"][0][key] = value
    torch.save(payload, path)
    before = file_bytes(run)
    with pytest.raises(CheckpointError, match=message):
        train_run(_cfg(steps=PER_EPOCH + 6, **cfg), run, resume=True, progress=False)
    assert file_bytes(run) == before


def test_checkpoints_of_runs_without_the_interventions_keep_their_fingerprint():
    """The new fields at their defaults take no part in the fingerprint: it is the sha256 of
    the canonical JSON of the fields as they were before (computed here by hand)."""
    c = TrainConfig()
    new = {"optimizer", "momentum", "lr_decay_epoch", "lr_decay", "logit_clamp"}
    # the fields before them: also without the trackers' (issue 27), left at their defaults
    skip = {*RESUMABLE_FIELDS, *RECORDED_FIELDS, "eval_every_steps", "track", "track_images",
            *new}  # fmt: skip
    fields = {k: v for k, v in c.to_dict().items() if k not in skip}
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), allow_nan=False)
    assert config_fingerprint(c) == hashlib.sha256(text.encode()).hexdigest()
    assert config_fingerprint(TrainConfig(logit_clamp=30.0)) != config_fingerprint(c)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("extra", "names"),
    [
        (["--momentum", "0.9"], "momentum"),
        (["--optimizer", "sgd", "--momentum", "1"], "momentum"),
        (["--optimizer", "sgd", "--momentum", "-0.1"], "momentum"),
        (["--lr-decay", "0.1"], "lr_decay_epoch"),
        (["--lr-decay-epoch", "5"], "lr_decay"),
        (["--lr-decay-epoch", "0", "--lr-decay", "0.1"], "lr_decay_epoch"),
        (["--lr-decay-epoch", "5", "--lr-decay", "0"], "lr_decay"),
        (["--lr-decay-epoch", "5", "--lr-decay", "1.5"], "lr_decay"),
        (["--logit-clamp", "0"], "logit_clamp"),
        (["--logit-clamp", "nan"], "logit_clamp"),
        (["--family", "gaussian", "--logit-clamp", "5"], "logit_clamp"),
        (["--optimizer", "rmsprop"], "--optimizer"),
    ],
)
def test_bad_intervention_values_exit_2_with_one_line_and_write_nothing(
    tmp_path, capsys, extra, names
):
    out = tmp_path / "run"
    try:
        code = main(train_argv(out, *extra))
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    assert code == 2
    assert names in one_line_error(capsys)
    assert not out.exists()
