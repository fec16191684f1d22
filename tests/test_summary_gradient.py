"""summary.json's ``final_grad_*`` (``--summary-grad-samples K``, issue 27): the trained
objective's gradient bias after training, equal to a direct call of
`binaryvae.diagnostics.gradient_diagnostics` on the same test images with the same generator
seed (what the removed bench/beta_sweep.py computed); off by default (no key, the old
fingerprint); a resume adds it to a finished run without retraining; bad values are refused."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from _runs_helpers import TINY, metric_rows, one_line_error
from binaryvae.cli import main

TIMING = ("seconds_per_epoch", "eval_seconds_per_epoch", "summary_seconds",
          "summary_eval_seconds")  # fmt: skip
K, N = 6, 20  # estimates, test images measured
BASE = ["--dataset", "mnist-mini", "--family", "steplogistic", "--beta", "5", "--latent-dim",
        "4", "--epochs", "1", *TINY, "--quiet", "--no-report"]  # fmt: skip
OPTION = ["--summary-grad-samples", str(K), "--summary-grad-images", str(N)]


def _summary(run: Path) -> dict:
    data = json.loads((run / "summary.json").read_text())
    return {k: v for k, v in data.items() if k not in TIMING}


def _direct(run: Path, samples: int, images: int) -> dict:
    """`gradient_diagnostics` of the stored model on the first ``images`` images of the run's
    test split, noise from ``torch.Generator().manual_seed(7)``: bench/beta_sweep.py's
    ``collect``."""
    from binaryvae.diagnostics import gradient_diagnostics
    from binaryvae.runs import load_run, test_data

    prepared = load_run(run, device="cpu")
    x = test_data(prepared)[:images]
    g = torch.Generator().manual_seed(7)
    return gradient_diagnostics(prepared.model, x, objective=prepared.config.objective,
                                samples=samples, generator=g)  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Seeds 0 and 1 trained at once (one stacked model) with the measurement; seed 1 alone
    without it."""
    root = tmp_path_factory.mktemp("summary-gradient")
    both, alone = root / "both", root / "alone"
    assert main(["train", *BASE, "--seeds", "0,1", *OPTION, "--out", str(both)]) == 0
    assert main(["train", *BASE, "--seed", "1", "--out", str(alone)]) == 0
    return both, alone


def test_the_summary_keys_equal_a_direct_call_of_the_gradient_diagnostics(runs):
    """Every key of the direct call on the stored model, prefixed final_, equal to the last
    digit, for each replica of a stacked group (measured on the model in memory at the end of
    training); the two derived ratios equal the quotients of those numbers; the labels name
    the measures."""
    both, _ = runs
    for run in (both / "seed-0", both / "seed-1"):
        summary = _summary(run)
        direct = _direct(run, K, N)
        assert direct["grad_samples"] == K and direct["grad_batch"] == N
        assert "grad_bias_z" in direct and "grad_exact_norm" in direct
        assert {k: summary[f"final_{k}"] for k in direct} == direct
        assert summary["final_grad_bias_over_noise"] == (
            direct["grad_bias_norm"] / direct["grad_bias_noise"]
        )
        assert math.isclose(summary["final_grad_bias_over_noise"] ** 2,
                            direct["grad_bias_sq_ratio"], rel_tol=1e-9)  # fmt: skip
        assert summary["final_grad_bias_debiased_ratio"] == (
            direct["grad_bias_debiased"] / direct["grad_exact_norm"]
        )
        for key in ("final_grad_bias_ratio", "final_grad_bias_z", "final_grad_noise_dims"):
            assert key in summary["labels"]
    values = [_summary(both / f"seed-{s}")["final_grad_bias_norm"] for s in (0, 1)]
    assert values[0] != values[1]  # two models, two measurements


def test_off_by_default_and_a_resume_adds_it_changing_nothing_else(runs):
    """Without the option: no final_* key or label, config.json's fingerprint that of a config
    with no such fields (checkpoints written before them still match). ``train --resume
    --summary-grad-samples K`` on the finished run then adds only the final_* keys and labels,
    trains nothing (metrics rows and parameters unchanged), and its keys equal the direct
    call's on that model."""
    from binaryvae.config import TrainConfig
    from binaryvae.training.checkpoint import config_fingerprint

    _, alone = runs
    before = _summary(alone)
    assert not [k for k in before if k.startswith("final_")]
    assert not [k for k in before["labels"] if k.startswith("final_")]
    stored = json.loads((alone / "config.json").read_text())
    assert stored["summary_grad_samples"] == 0 and stored["summary_grad_images"] == 128
    new = ("summary_grad_samples", "summary_grad_images")
    older = {k: v for k, v in stored.items() if k not in new}
    assert config_fingerprint(TrainConfig.from_dict(stored)) == config_fingerprint(
        TrainConfig.from_dict(older)
    )
    rows = metric_rows(alone)
    params = torch.load(alone / "checkpoints" / "last.pt", weights_only=False)["model"]

    assert main(["train", *BASE, "--seed", "1", "--out", str(alone), "--resume", *OPTION]) == 0
    after = _summary(alone)
    added = sorted(k for k in after if k not in before)
    assert added and all(k.startswith("final_grad_") for k in added)
    labels, old_labels = after.pop("labels"), before.pop("labels")
    assert {k: v for k, v in labels.items() if not k.startswith("final_")} == old_labels
    assert {k: v for k, v in after.items() if k not in added} == before
    assert metric_rows(alone) == rows
    resumed = torch.load(alone / "checkpoints" / "last.pt", weights_only=False)["model"]
    assert all(params[k].equal(resumed[k]) for k in params)
    direct = _direct(alone, K, N)
    assert {k: after[f"final_{k}"] for k in direct} == direct


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--summary-grad-samples", "2"], "summary_grad_samples"),
        (["--summary-grad-samples", "-1"], "summary_grad_samples"),
        (["--summary-grad-samples", "5", "--summary-grad-images", "0"], "summary_grad_images"),
        (["--summary-grad-samples", "5", "--family", "gaussian"], "binary latent"),
        (["--summary-grad-samples", "5", "--family", "autoencoder-gmm"], "binary latent"),
        (["--summary-grad-samples", "5", "--latent-dim", "13"], "latent_dim <= 12"),
    ],
)
def test_bad_values_are_one_line_exit_2_and_write_nothing(extra, words, tmp_path, capsys):
    out = tmp_path / "bad"
    assert main(["train", *BASE, *extra, "--out", str(out)]) == 2
    assert words in one_line_error(capsys)
    assert not out.exists()
