"""The bench scripts' long runs resume after a stop (bench/_common.py): a run continued from its
per-epoch checkpoint ends with the same parameters, optimizer state and counters as the run that
was never stopped, and the driver removes the checkpoint only once the result is written."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import _common  # noqa: E402
from binaryvae.config import TrainConfig  # noqa: E402
from binaryvae.data import load_dataset  # noqa: E402


def _train(epochs: int, checkpoint: Path | None, on_epoch=None, family="bernoulli-disarm"):
    config = TrainConfig(dataset="mnist-mini", family=family, latent_dim=8,
                         epochs=epochs, seed=3, binarize="dynamic")  # fmt: skip
    return _common.train_steps(config, load_dataset("mnist-mini"), steps_per_epoch=4,
                               checkpoint=checkpoint, on_epoch=on_epoch)  # fmt: skip


def test_a_resumed_run_equals_the_uninterrupted_one(tmp_path):
    whole, whole_done = _train(3, None)
    ckpt = tmp_path / ".resume" / "run.pt"
    _train(1, ckpt)  # "stopped" after epoch 1: only its checkpoint survives
    assert ckpt.exists()
    torch.manual_seed(999)  # a new process starts from other RNG states
    resumed, resumed_done = _train(3, ckpt)
    whole_state, resumed_state = whole.state_dict(), resumed.state_dict()
    assert whole_state.keys() == resumed_state.keys()
    for name, value in whole_state.items():
        assert torch.equal(value, resumed_state[name]), name
    assert resumed_done["steps"] == whole_done["steps"] == 12
    assert resumed_done["epochs"] == 3
    assert resumed_done["last_train_elbo"] == whole_done["last_train_elbo"]
    assert resumed_done["train_elbo_by_epoch"] == whole_done["train_elbo_by_epoch"]
    assert len(whole_done["train_elbo_by_epoch"]) == 3
    # a stop without the checkpoint would have restarted: epoch 1 alone differs from the whole
    first, _ = _train(1, None)
    pairs = zip(first.parameters(), whole.parameters(), strict=True)
    assert not all(torch.equal(a, b) for a, b in pairs)


def test_run_children_hands_each_child_its_checkpoint_and_removes_it_after_the_result(tmp_path):
    child = tmp_path / "child.py"
    child.write_text(
        "import json, os, sys\n"
        "from pathlib import Path\n"
        f"sys.path.insert(0, {str(Path(_common.__file__).parent)!r})\n"
        "import _common\n"
        "p = _common.resume_file()\n"
        "p.parent.mkdir(parents=True, exist_ok=True)\n"
        "p.write_text('state')\n"
        "print(json.dumps({'checkpoint': str(p), 'existed': p.exists()}))\n"
    )
    result_path = tmp_path / "runs" / "r1.json"
    (result_path.parent).mkdir()
    [result] = _common.run_children(child, [({"k": 1}, result_path)], 1, lambda r: "ok")
    assert Path(result["checkpoint"]) == _common.resume_path(result_path)
    assert result["existed"]
    assert json.loads(result_path.read_text()) == result
    assert not _common.resume_path(result_path).exists()
    assert _common.resume_file() is None  # outside a child: no checkpoint


def test_the_epoch_hook_cannot_change_training_and_its_records_survive_a_resume(tmp_path):
    plain, plain_done = _train(3, None)

    def draws(model, epoch):  # a hook that consumes the RNG the training draws from
        torch.rand(1000)
        return {"epoch": epoch, "first": next(model.parameters()).flatten()[0].item()}

    hooked, hooked_done = _train(3, None, on_epoch=draws)
    for (name, a), b in zip(plain.state_dict().items(), hooked.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert hooked_done["train_elbo_by_epoch"] == plain_done["train_elbo_by_epoch"]
    assert [r["epoch"] for r in hooked_done["by_epoch"]] == [1, 2, 3]
    ckpt = tmp_path / ".resume" / "run.pt"
    _train(1, ckpt, on_epoch=draws)
    _, resumed_done = _train(3, ckpt, on_epoch=draws)
    assert resumed_done["by_epoch"] == hooked_done["by_epoch"]


def test_epoch_tracker_counts_flipped_and_saturated_bits_like_a_loop():
    import dissertation
    from binaryvae.data import test_tensor
    from binaryvae.evaluation import exact_evaluation
    from binaryvae.models import build_model

    ds = load_dataset("mnist-mini")
    config = TrainConfig(dataset="mnist-mini", family="steplogistic", latent_dim=8, seed=0)
    model = build_model(config, data_dim=ds.train_x.shape[1], image_shape=ds.image_shape,
                        data_kind=ds.kind)  # fmt: skip
    x = test_tensor(ds.test_x[:50], binarize=config.binarize, seed=0)
    tracker = dissertation.EpochTracker(x)
    last = next(m for m in reversed(list(model.encoder.modules())) if hasattr(m, "bias"))
    # logits = bias + a little of each image: bits 0 and 1 saturated, the rest not
    codes = torch.tensor([20.0, -15.0, 3.0, -3.0, 0.5, -0.5, 2.0, 30.0])
    with torch.no_grad():
        last.weight.mul_(0.5)
        last.bias.copy_(codes)
        first = tracker(model, 1)
        before = model.bit_logits(x)
        last.bias.copy_(codes * torch.tensor([-1.0, 1.0, -1.0, 1.0, -1.0, -1.0, 1.0, 1.0]))
        second = tracker(model, 2)
        after = model.bit_logits(x)
        exact = exact_evaluation(model, x)
    assert first["bits_flipped"] is None and first["saturated_bits_flipped"] is None
    flips = saturated = 0
    for i in range(x.shape[0]):
        for j in range(8):
            if (before[i, j] > 0) != (after[i, j] > 0):
                flips += 1
                saturated += abs(before[i, j].item()) > dissertation.SATURATED
    assert 0 < saturated < flips  # the case exercises both counts
    assert second["bits_flipped"] == flips / (x.shape[0] * 8)
    assert second["saturated_bits_flipped"] == saturated / (x.shape[0] * 8)
    assert second["discrete_elbo"] == round(exact.elbo.mean().item(), 4)
    middle = after.abs().flatten().sort().values[199:201]  # 400 values: the median's two
    assert abs(second["logit_abs_median"] - middle.mean().item()) < 1e-5
