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


def _train(epochs: int, checkpoint: Path | None):
    config = TrainConfig(dataset="mnist-mini", family="bernoulli-disarm", latent_dim=8,
                         epochs=epochs, seed=3, binarize="dynamic")  # fmt: skip
    return _common.train_steps(config, load_dataset("mnist-mini"), steps_per_epoch=4,
                               checkpoint=checkpoint)  # fmt: skip


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
