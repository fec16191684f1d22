"""summary.json's sample FD (``--summary-fd-samples N``): N generated images (default: as many
as test images), 0 for none; computed last from the summary's own seed, so it changes no other
number of the summary; bad values are refused before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _runs_helpers import TINY, one_line_error
from binaryvae.cli import main

TIMING = ("seconds_per_epoch", "eval_seconds_per_epoch", "summary_seconds",
          "summary_eval_seconds")  # fmt: skip
FD_KEYS = ("sample_fd", "fd_samples", "fd_features", "fd_classifier_accuracy")
BASE = ["--dataset", "mnist-mini", "--family", "bernoulli-arm", "--latent-dim", "4",
        "--epochs", "1", "--seed", "2", *TINY[:-2], "--quiet", "--no-report"]  # fmt: skip


def _summary(run: Path) -> dict:
    data = json.loads((run / "summary.json").read_text())
    return {k: v for k, v in data.items() if k not in TIMING}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same run three times: the default FD, 300 images, and none."""
    root = tmp_path_factory.mktemp("summary-fd")
    out = {}
    assert TINY[-2:] == ["--summary-fd-samples", "0"]  # TINY without it: FD on by default
    for name, option in (("default", []), ("300", ["--summary-fd-samples", "300"]),
                         ("none", ["--summary-fd-samples", "0"])):  # fmt: skip
        out[name] = root / name
        assert main(["train", *BASE, *option, "--out", str(out[name])]) == 0
    return out


def test_zero_skips_the_sample_fd_and_changes_nothing_else(runs):
    full, none = _summary(runs["default"]), _summary(runs["none"])
    assert all(k in full for k in FD_KEYS) and full["fd_samples"] == 2000  # mnist-mini's test
    assert not any(k in none for k in FD_KEYS)
    assert none == {k: v for k, v in full.items() if k not in FD_KEYS}
    assert json.loads((runs["none"] / "config.json").read_text())["summary_fd_samples"] == 0


def test_n_images_is_a_direct_frechet_distance_of_n_samples(runs):
    """The summary's value equals `sample_frechet_distance` of the stored model with 300
    samples and the summary's seed, in the same feature network; the other numbers are the
    default run's."""
    from binaryvae.evaluation.fid import sample_frechet_distance
    from binaryvae.runs import load_run, test_data
    from binaryvae.training.classifier import feature_network
    from binaryvae.training.setup import epoch_seed

    s, full = _summary(runs["300"]), _summary(runs["default"])
    assert s["fd_samples"] == 300 and s["sample_fd"] != full["sample_fd"]
    assert {k: v for k, v in s.items() if k not in FD_KEYS} == {
        k: v for k, v in full.items() if k not in FD_KEYS
    }
    prepared = load_run(runs["300"], device="cpu")
    direct = sample_frechet_distance(
        prepared.model, test_data(prepared), feature_network(prepared.dataset),
        num_samples=300, seed=epoch_seed(2, 0, "summary"),
    )  # fmt: skip
    assert s["sample_fd"] == pytest.approx(direct.distance, rel=1e-12)


@pytest.mark.parametrize(
    "value, words",
    [("-1", "summary_fd_samples"), ("x", "--summary-fd-samples"), ("1.5", "--summary-fd-samples")],
)
def test_bad_values_exit_2_with_one_line_and_write_nothing(value, words, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", *BASE, "--summary-fd-samples", value, "--out", str(out)]
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's own refusal of a non-integer
        code = stop.code
    assert code == 2
    assert words in one_line_error(capsys)
    assert not out.exists()
