"""One typed schema for family options (issue 27): a run's ``extra`` may hold only options its
model reads -- its family's and its estimator's, the conv network's width with the conv network,
the gaussian decoder's scale with the gaussian decoder; anything else is refused (exit 2, one
line naming the option, the family and what it takes), and each class's declared options are
exactly what its code reads."""

from __future__ import annotations

import pytest

from _runs_helpers import TINY
from binaryvae.cli import main
from binaryvae.config import ModelOptions, TrainConfig
from binaryvae.errors import BadInput
from binaryvae.models import build_model
from binaryvae.models.estimators import ESTIMATORS
from binaryvae.models.families import FAMILY_CLASSES


def _build(family: str, extra: dict, **fields):
    config = TrainConfig(family=family, latent_dim=4, hidden=(8,), extra=extra, **fields)
    return build_model(config, 784, (28, 28))


@pytest.mark.parametrize(
    "family, extra, fields, words",
    [
        ("logistic", {"loo_samples": 4}, {},
         "extra.loo_samples is not an option of family 'logistic' (its options: none); "
         "loo_samples applies to bernoulli-reinforce-loo"),
        ("concrete", {"sfe_decay": 0.5}, {},
         "extra.sfe_decay is not an option of family 'concrete' (its options: "
         "concrete_prior_beta); sfe_decay applies to bernoulli-sfe"),
        ("bernoulli-disarm", {"loo_samples": 3}, {},
         "family 'bernoulli-disarm' (its options: samples, learning_signal)"),
        ("bernoulli-reinforce-loo", {"concrete_prior_beta": 2.0}, {},
         "concrete_prior_beta applies to concrete"),
        ("steplogistic", {"conv_channels": 4}, {},
         "extra.conv_channels sets the conv network's width, but this run's network is mlp"),
        ("steplogistic", {"decoder_scale": 0.5}, {},
         "extra.decoder_scale sets the gaussian decoder's standard deviation, but this run's "
         "decoder is bernoulli (--decoder gaussian takes it)"),
    ],
)  # fmt: skip
def test_an_option_the_model_does_not_read_is_refused(family, extra, fields, words):
    with pytest.raises(BadInput) as caught:
        _build(family, extra, **fields)
    assert words in str(caught.value)


def test_each_family_takes_its_own_options():
    """The options are used, not just accepted: the estimator and prior carry the values."""
    loo = _build("bernoulli-reinforce-loo", {"loo_samples": 5, "learning_signal": "elbo"})
    assert loo.estimator.samples == 5
    sfe = _build("bernoulli-sfe", {"sfe_decay": 0.5, "sfe_baseline": False})
    assert (sfe.estimator.decay, sfe.estimator.baseline) == (0.5, False)
    assert _build("concrete", {"concrete_prior_beta": 2.0}).family.options.concrete_prior_beta == 2
    conv = _build("steplogistic", {"conv_channels": 3}, network="conv")
    assert any(getattr(m, "out_channels", None) == 3 for m in conv.encoder.modules())
    scaled = _build("gaussian-sigmoid", {"decoder_scale": 0.5}, decoder="gaussian")
    assert float(scaled.decoder.log_scale.exp()[0]) == pytest.approx(0.5)


class _Recorder:
    """A ModelOptions stand-in that records which fields are read."""

    def __init__(self):
        self.read: set[str] = set()

    def __getattr__(self, name):
        self.read.add(name)
        return getattr(ModelOptions(), name)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_an_estimator_declares_exactly_the_options_it_reads(name):
    cls = ESTIMATORS[name]
    options = _Recorder()
    cls.from_options(options)
    assert options.read == set(getattr(cls, "takes_options", ()))


@pytest.mark.parametrize("name", list(FAMILY_CLASSES))
def test_a_family_declares_the_options_it_reads(name):
    """What building the family and its estimator reads is declared; learning_signal is
    declared exactly by the families whose estimator takes one (it is read by the loss)."""
    cls = FAMILY_CLASSES[name]
    options = _Recorder()
    family = cls(10.0, options)
    family.make_estimator()
    assert options.read <= set(cls.takes_options), options.read - set(cls.takes_options)
    assert ("learning_signal" in cls.takes_options) == cls.takes_learning_signal


def test_the_command_line_refuses_another_familys_option(tmp_path, capsys):
    import json

    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"family": "logistic", "extra": {"loo_samples": 4}}))
    out = tmp_path / "run"
    argv = ["train", "--out", str(out), "--config", str(cfg), "--epochs", "1", *TINY, "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "extra.loo_samples is not an option of family 'logistic'" in err[0]
    assert not out.exists()
