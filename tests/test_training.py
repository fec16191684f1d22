"""binaryvae.training: the epoch loop, its NaN guard, checkpoints, optimizer, progress, setup."""

from __future__ import annotations

import io
import math

import pytest
import torch

from _runs_helpers import tiny_config
from binaryvae.training import (
    EpochProgress,
    NonFiniteLoss,
    epoch_seed,
    fit_epoch,
    kl_weight_at,
    load_checkpoint,
    make_optimizer,
    resolve_device,
    save_checkpoint,
    seed_everything,
    set_threads,
)


def _model(**changes):
    from binaryvae.models import build_model

    seed_everything(0)
    return build_model(tiny_config(**changes), data_dim=784, image_shape=(28, 28))


def _batches(n_batches=4, b=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(b, 784, generator=g) for _ in range(n_batches)]


def test_fit_epoch_reduces_loss_and_reports_averages():
    model = _model(family="gaussian-sigmoid")
    opt = make_optimizer(model, 1e-2)
    data = _batches()
    first = fit_epoch(model, opt, data, epoch=1, objective="elbo")
    for e in range(2, 6):
        last = fit_epoch(model, opt, data, epoch=e, objective="elbo")
    assert first.images == 128 and first.batches == 4
    assert last.train_loss < first.train_loss
    # the loss is -(recon - kl) with kl weight 1, i.e. minus the ELBO
    assert math.isclose(last.train_loss, -last.train_elbo, rel_tol=1e-5)
    assert math.isclose(last.train_elbo, last.train_recon - last.train_kl, rel_tol=1e-5)


def test_fit_epoch_stops_on_nan_before_the_step(monkeypatch):
    model = _model(family="gaussian-sigmoid")
    opt = make_optimizer(model, 1e-3)
    original = model.loss
    calls = {"n": 0}

    def poisoned(x, **kw):
        calls["n"] += 1
        terms = original(x, **kw)
        if calls["n"] == 3:
            return terms._replace(surrogate=terms.surrogate * float("nan"))
        return terms

    monkeypatch.setattr(model, "loss", poisoned)
    fit_epoch(model, opt, _batches(2), epoch=1, objective="elbo")  # 2 good batches
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(NonFiniteLoss, match=r"epoch 2, batch 1") as info:
        fit_epoch(model, opt, _batches(2), epoch=2, objective="elbo")
    assert (info.value.epoch, info.value.batch) == (2, 1)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the bad step was not taken


def test_fit_epoch_catches_a_non_finite_gradient(monkeypatch):
    model = _model(family="gaussian-sigmoid")
    opt = make_optimizer(model, 1e-3)
    p = next(model.parameters())
    p.register_hook(lambda g: g * float("inf"))
    with pytest.raises(NonFiniteLoss, match="non-finite gradient at epoch 1, batch 1"):
        fit_epoch(model, opt, _batches(1), epoch=1, objective="elbo")


def test_kl_weight_warmup_is_linear_then_constant():
    assert kl_weight_at(1.0, 0, 1) == 1.0
    assert [kl_weight_at(0.5, 4, e) for e in (1, 2, 4, 9)] == [0.125, 0.25, 0.5, 0.5]


def test_make_optimizer_is_adam_fused_on_cpu_when_supported():
    opt = make_optimizer(_model(), 1e-3)
    assert isinstance(opt, torch.optim.Adam)
    assert opt.defaults["lr"] == 1e-3
    assert opt.defaults.get("fused") in (True, None, False)


def test_checkpoint_round_trip_restores_model_optimizer_and_rng(tmp_path):
    model = _model(family="gaussian-sigmoid")
    opt = make_optimizer(model, 1e-3)
    fit_epoch(model, opt, _batches(2), epoch=1, objective="elbo")
    path = tmp_path / "ck" / "last.pt"
    torch.manual_seed(5)
    save_checkpoint(path, model=model, optimizer=opt, epoch=1, extra={"k": 1})
    expected = torch.rand(3)
    state = load_checkpoint(path)
    assert state["epoch"] == 1 and state["extra"] == {"k": 1}
    torch.set_rng_state(state["rng"]["torch"])
    assert torch.equal(torch.rand(3), expected)
    clone = _model(family="gaussian-sigmoid")
    clone.load_state_dict(state["model"])
    assert all(
        torch.equal(a, b)
        for a, b in zip(clone.state_dict().values(), model.state_dict().values(), strict=True)
    )
    opt2 = make_optimizer(clone, 1e-3)
    opt2.load_state_dict(state["optimizer"])
    assert [p.name for p in tmp_path.joinpath("ck").iterdir()] == ["last.pt"]  # no temp left


def test_checkpoint_write_is_atomic_when_saving_fails(tmp_path, monkeypatch):
    model = _model(family="gaussian-sigmoid")
    path = tmp_path / "last.pt"
    save_checkpoint(path, model=model, optimizer=None, epoch=1)
    good = path.read_bytes()

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError):
        save_checkpoint(path, model=model, optimizer=None, epoch=2)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_progress_off_a_terminal_prints_one_line_per_epoch():
    out = io.StringIO()
    for epoch in (1, 2):
        bar = EpochProgress(epoch, 2, 100, stream=out, tty=False)
        bar.update(50, loss=3.0, elbo=-3.0)
        bar.update(50, loss=2.5, elbo=-2.5)
        bar.close("test discrete -2.40")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[1].startswith("epoch 2/2") and "train loss 2.500" in lines[1]
    assert "test discrete -2.40" in lines[1]


def test_progress_on_a_terminal_uses_a_bar_and_can_be_silenced():
    out = io.StringIO()
    bar = EpochProgress(1, 3, 100, stream=out, tty=True)
    bar.update(100, loss=1.0, elbo=-1.0)
    bar.close("done")
    assert "epoch 1/3" in out.getvalue()
    quiet = io.StringIO()
    bar = EpochProgress(1, 3, 100, stream=quiet, enabled=False)
    bar.update(100, loss=1.0, elbo=-1.0)
    bar.close()
    assert quiet.getvalue() == ""


def test_default_threads_follow_the_wait_policy(monkeypatch):
    from binaryvae.training import default_threads

    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert default_threads() == 1
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    assert default_threads() >= 1
    monkeypatch.delenv("OMP_WAIT_POLICY")
    assert default_threads() == 1


def test_setup_helpers():
    assert set_threads(1) == 1 and torch.get_num_threads() == 1
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    assert epoch_seed(0, 1) == epoch_seed(0, 1) != epoch_seed(0, 2) != epoch_seed(1, 1)
    assert epoch_seed(0, 1, "train") != epoch_seed(0, 1, "eval")
    assert 0 <= epoch_seed(123, 45) < 2**63


def test_cuda_without_a_gpu_is_bad_input():
    from binaryvae.errors import BadInput

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(BadInput, match="cuda"):
        resolve_device("cuda")


@pytest.mark.parametrize("drawn", [False, True])
def test_fit_epoch_trains_the_protocol_preset_exactly_as_a_plain_loop(drawn):
    """The disarm-nonlinear preset (independent decoder sample, prior logits by SGD, the
    gradient-moment EMA; shrunk to 6 bits and 16-unit layers): fit_epoch's parameters, EMA
    buffers and averages equal, bit for bit, a plain loop's (zero_grad, loss, backward, step;
    each batch's float32 sums added in float64) -- with the running values reported per step
    to a drawn bar, or once at the end to an undrawn one, which then holds the same last
    values."""
    import copy

    from binaryvae.config import TrainConfig
    from binaryvae.models import build_model

    config = TrainConfig.from_protocol(
        "disarm-nonlinear", family="bernoulli-disarm", latent_dim=6, hidden=(16, 16),
        dataset="mnist-mini",
    )  # fmt: skip
    seed_everything(0)
    mean = torch.rand(784)
    model = build_model(config, data_dim=784, image_shape=(28, 28), data_mean=mean)
    plain = copy.deepcopy(model)
    batches = [(x > 0.5).float() for x in _batches(n_batches=5, b=config.batch_size)]
    opt, plain_opt = make_optimizer(model, config.lr), make_optimizer(plain, config.lr)
    bar = EpochProgress(1, 1, 250, stream=io.StringIO(), tty=drawn)
    stats = fit_epoch(model, opt, batches, epoch=1, objective="elbo",
                      generator=torch.Generator().manual_seed(3), progress=bar)  # fmt: skip
    g = torch.Generator().manual_seed(3)
    loss = elbo = 0.0
    for x in batches:
        plain_opt.zero_grad(set_to_none=True)
        terms = plain.loss(x, objective="elbo", kl_weight=1.0, generator=g)
        terms.surrogate.backward()
        plain_opt.step()
        # the batch's sums in float32 (the model's), added up in float64
        loss += (terms.kl.sum() - terms.recon.sum()).item()
        elbo += terms.elbo.sum().item()
    for (name, a), b in zip(model.state_dict().items(), plain.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    n = len(batches) * config.batch_size
    assert (stats.train_loss, stats.train_elbo) == (loss / n, elbo / n)
    assert (bar.loss, bar.elbo) == (loss / n, elbo / n)
