"""summary.json's ``train_discrete_elbo`` (``--summary-train-images N``, issue 27): the discrete
ELBO of the first N training images, against a plain loop over the same images; off by default
(no key, the old fingerprint); a resume may add it to a finished run, and a replica's value
equals a single run's, all its other numbers unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from _runs_helpers import TINY, metric_rows, one_line_error
from binaryvae.cli import main

TIMING = ("seconds_per_epoch", "eval_seconds_per_epoch", "summary_seconds",
          "summary_eval_seconds")  # fmt: skip
N = 300  # training images measured (mnist-mini's training split has 8,000)
BASE = ["--dataset", "mnist-mini", "--family", "bernoulli-disarm", "--latent-dim", "8",
        "--epochs", "1", "--prior", "learned", "--binarize", "dynamic", *TINY, "--quiet",
        "--no-report"]  # fmt: skip


def _summary(run: Path) -> dict:
    data = json.loads((run / "summary.json").read_text())
    return {k: v for k, v in data.items() if k not in TIMING}


def _by_hand(run: Path, images: int, seed: int) -> float:
    """The discrete ELBO of ``run``'s model on its first ``images`` training images by a plain
    loop: the images binarized once (`binaryvae.data.test_tensor`, seed 1), the codes drawn
    from a generator seeded 1234 + seed, then per image log p(x|b) as the Bernoulli
    log-likelihood of the decoder's logits and the Bernoulli KL to the prior, summed bit by
    bit."""
    from binaryvae.data import test_tensor
    from binaryvae.runs import load_run

    prepared = load_run(run, device="cpu")
    model = prepared.model.eval()
    x = test_tensor(prepared.dataset.train_x[:images], binarize="dynamic", seed=1)
    g = torch.Generator().manual_seed(1234 + seed)
    total = 0.0
    with torch.no_grad():
        lam = torch.sigmoid(model.bit_logits(x).float())  # [M, n]
        b = torch.bernoulli(lam.expand(1, -1, -1), generator=g)[0]  # the draw of one chunk
        prior = torch.sigmoid(model.prior_bit_logits().float()).tolist()
        for i in range(x.shape[0]):
            logits = model.decode(b[i : i + 1])[0]
            recon = -F.binary_cross_entropy_with_logits(logits, x[i], reduction="sum").item()
            kl = 0.0
            for q, p in zip(lam[i].tolist(), prior, strict=True):
                kl += q * (torch.tensor(q / p).log().item() if q > 0 else 0.0)
                kl += (1 - q) * (torch.tensor((1 - q) / (1 - p)).log().item() if q < 1 else 0.0)
            total += recon - kl
    return total / x.shape[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Seeds 0 and 1 trained at once with the train ELBO; seed 1 alone with it, and without."""
    root = tmp_path_factory.mktemp("train-elbo")
    both, fresh, alone = root / "both", root / "fresh", root / "alone"
    option = ["--summary-train-images", str(N)]
    assert main(["train", *BASE, "--seeds", "0,1", *option, "--out", str(both)]) == 0
    assert main(["train", *BASE, "--seed", "1", *option, "--out", str(fresh)]) == 0
    assert main(["train", *BASE, "--seed", "1", "--out", str(alone)]) == 0
    return both, fresh, alone


def test_the_train_elbo_equals_a_plain_loop_over_the_same_images(runs):
    """Each replica's value and a single run's against `_by_hand` on its own model."""
    both, fresh, _ = runs
    single = json.loads((fresh / "summary.json").read_text())
    assert single["train_discrete_elbo"] == pytest.approx(_by_hand(fresh, N, 1), rel=1e-5)
    for seed in (0, 1):
        summary = json.loads((both / f"seed-{seed}" / "summary.json").read_text())
        assert summary["train_elbo_images"] == N
        assert "train_discrete_elbo" in summary["labels"]
        expected = _by_hand(both / f"seed-{seed}", N, seed)
        assert summary["train_discrete_elbo"] == pytest.approx(expected, rel=1e-5)
    values = [json.loads((both / f"seed-{s}" / "summary.json").read_text())
              ["train_discrete_elbo"] for s in (0, 1)]  # fmt: skip
    assert values[0] != values[1]


def test_off_by_default_and_a_resume_adds_it_changing_nothing_else(runs):
    """Without the option: no key, no label, config.json's fingerprint that of a config with
    no such field (checkpoints written before it still match). ``train --resume
    --summary-train-images N`` on the finished run then adds the two keys and the label,
    every other number unchanged, and equals the run that had it from the start: its
    summary, every metrics row, every parameter."""
    from binaryvae.config import TrainConfig
    from binaryvae.training.checkpoint import config_fingerprint

    _, fresh, alone = runs
    before = _summary(alone)
    assert "train_discrete_elbo" not in before and "train_elbo_images" not in before
    assert "train_discrete_elbo" not in before["labels"]
    stored = json.loads((alone / "config.json").read_text())
    assert stored["summary_train_images"] == 0
    older = {k: v for k, v in stored.items() if k != "summary_train_images"}
    assert config_fingerprint(TrainConfig.from_dict(stored)) == config_fingerprint(
        TrainConfig.from_dict(older)
    )
    with_it = TrainConfig.from_dict({**stored, "summary_train_images": N})
    assert config_fingerprint(with_it) == config_fingerprint(TrainConfig.from_dict(stored))
    rows = metric_rows(alone)

    assert main(["train", *BASE, "--seed", "1", "--out", str(alone), "--resume",
                 "--summary-train-images", str(N)]) == 0  # fmt: skip
    after = _summary(alone)
    added = {k: after[k] for k in after if k not in before}
    assert sorted(added) == ["train_discrete_elbo", "train_elbo_images"]
    labels = after.pop("labels")
    assert labels.pop("train_discrete_elbo") and labels == before.pop("labels")
    assert {k: v for k, v in after.items() if k not in added} == before
    assert metric_rows(alone) == rows
    assert _summary(alone) == _summary(fresh)
    assert metric_rows(alone) == metric_rows(fresh)
    a = torch.load(alone / "checkpoints" / "last.pt", weights_only=False)["model"]
    b = torch.load(fresh / "checkpoints" / "last.pt", weights_only=False)["model"]
    assert all(a[k].equal(b[k]) for k in a)


def test_the_training_split_caps_it_and_bad_values_are_refused(tmp_path, capsys):
    """N above the training split measures all of it (with --validation: its train part);
    a negative N is one line naming the option's field, exit 2, nothing written."""
    out = tmp_path / "cap"
    assert main(["train", *BASE, "--validation", "7500", "--summary-train-images", "100000",
                 "--out", str(out)]) == 0  # fmt: skip
    assert json.loads((out / "summary.json").read_text())["train_elbo_images"] == 500
    bad = tmp_path / "bad"
    assert main(["train", *BASE, "--summary-train-images", "-1", "--out", str(bad)]) == 2
    assert "summary_train_images" in one_line_error(capsys)
    assert not bad.exists()
