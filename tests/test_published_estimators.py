"""The K-sample options and the estimators added by issue 26: multi-sample DisARM
(``--samples K``, K/2 pairs), ``samples`` as reinforce-loo's K, RELAX and RODEO.

Each estimator also runs through `binaryvae.testing.check_estimator` in tests/test_registry.py
(every registered name, and the K-sample ones at K = 4); the exact toy moments are in
tests/test_toy_benchmark.py. Here: the options' parsing and refusals, the CLI's ``--samples``,
and each estimator against a hand-written reference on the same noise.
"""

from __future__ import annotations

import json

import pytest
import torch

from _runs_helpers import one_line_error, train_argv
from binaryvae.cli import main
from binaryvae.config import ModelOptions, TrainConfig
from binaryvae.errors import BadInput
from binaryvae.models.estimators import DisARM, make_estimator


def _f(bits: torch.Tensor) -> torch.Tensor:
    w = torch.linspace(-2.0, 3.0, bits.shape[-1], dtype=bits.dtype)
    return torch.sin(bits @ w) + (bits * w).square().sum(-1)


# ------------------------------------------------------------------ options
def test_samples_sets_k_of_disarm_and_reinforce_loo():
    est = make_estimator("disarm", ModelOptions.from_extra({"samples": 6}))
    assert (est.samples, est.samples_per_step) == (6, 6)
    assert make_estimator("disarm").samples_per_step == 2
    assert make_estimator("reinforce-loo", ModelOptions.from_extra({"samples": 3})).samples == 3
    assert make_estimator("reinforce-loo", ModelOptions.from_extra({"loo_samples": 5})).samples == 5
    both = ModelOptions.from_extra({"samples": 4, "loo_samples": 4})
    assert make_estimator("reinforce-loo", both).samples == 4


def test_contradicting_or_odd_sample_counts_are_refused():
    with pytest.raises(BadInput, match=r"extra.samples \(4\) and extra.loo_samples \(3\)"):
        ModelOptions.from_extra({"samples": 4, "loo_samples": 3})
    with pytest.raises(BadInput, match="extra.samples must be an even K >= 2, got 3"):
        make_estimator("disarm", ModelOptions.from_extra({"samples": 3}))
    with pytest.raises(BadInput, match="extra.samples"):
        ModelOptions.from_extra({"samples": 1})


def test_multi_sample_disarm_is_the_mean_of_its_pairs_estimates():
    """K = 6: three pairs from u [3, B, n] (the generator's first draw); the logits' gradient
    is the mean of the three DisARM estimates (Dong et al. 2020, section 3) written out here,
    the value the mean of f over the six codes."""
    torch.manual_seed(0)
    logits = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    est = DisARM(samples=6)
    out = est(logits, _f, torch.Generator().manual_seed(3))
    (grad,) = torch.autograd.grad(out.surrogate.sum(), logits)
    u = torch.rand((3, 5, 4), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    p = torch.sigmoid(logits.detach())
    want = torch.zeros(5, 4, dtype=torch.float64)
    values = []
    for m in range(3):
        b = (u[m] < p).double()
        bt = (1 - u[m] < p).double()
        fb, fbt = _f(b), _f(bt)
        values += [fb, fbt]
        for i in range(4):
            sign = torch.where(bt[:, i] > 0, -1.0, 1.0)
            differ = (b[:, i] != bt[:, i]).double()
            want[:, i] += 0.5 * (fb - fbt) * sign * differ * torch.sigmoid(logits[:, i].abs())
    torch.testing.assert_close(grad, want.detach() / 3, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.value, torch.stack(values).mean(0), rtol=1e-12, atol=1e-12)


def test_disarm_with_two_samples_is_the_single_pair_bit_for_bit():
    logits = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    outs = []
    for est in (DisARM(), DisARM(samples=2)):
        out = est(logits, _f, torch.Generator().manual_seed(11))
        outs.append((out.value, torch.autograd.grad(out.surrogate.sum(), logits)[0]))
    assert all(torch.equal(a, b) for a, b in zip(outs[0], outs[1], strict=True))


# ------------------------------------------------------------------ the command line
def test_train_samples_option_reaches_the_estimator(tmp_path):
    from binaryvae.cli import build_parser
    from binaryvae.cli.train import config_from_args
    from binaryvae.models import build_model

    args = build_parser().parse_args(train_argv(tmp_path / "r", "--family", "bernoulli-disarm",
                                                "--samples", "4"))  # fmt: skip
    config = config_from_args(args)
    assert config.extra == {"samples": 4}
    model = build_model(config, 784, None, "image")
    assert model.decoder_evaluations_per_step == 4


def test_train_samples_replaces_loo_samples_of_a_config(tmp_path):
    from binaryvae.cli import build_parser
    from binaryvae.cli.train import config_from_args

    path = tmp_path / "config.json"
    path.write_text(json.dumps(TrainConfig(family="bernoulli-reinforce-loo",
                                           extra={"loo_samples": 3}).to_dict()))  # fmt: skip
    args = build_parser().parse_args(["train", "--out", str(tmp_path / "r"), "--config",
                                      str(path), "--samples", "5"])  # fmt: skip
    assert config_from_args(args).extra == {"samples": 5}


def test_train_samples_for_a_family_without_it_is_one_line_exit_2(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_argv(out, "--family", "bernoulli-arm", "--samples", "4")) == 2
    err = one_line_error(capsys)
    assert "extra.samples" in err and "bernoulli-arm" in err
    assert not out.exists()
    assert main(train_argv(out, "--family", "bernoulli-disarm", "--samples", "3")) == 2
    assert "even" in one_line_error(capsys)
    assert not out.exists()
