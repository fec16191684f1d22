"""The typed configuration of one training run (what `config.json` of a run directory holds)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from binaryvae.errors import BadInput

__all__ = [
    "TrainConfig",
    "ModelOptions",
    "OBJECTIVES",
    "BINARIZE_MODES",
    "DEVICES",
    "ACTIVATIONS",
    "NETWORKS",
    "DECODERS",
    "PRIORS",
    "PRECISIONS",
    "LEARNING_SIGNALS",
    "COMPARE_FAMILIES",
    "COMPARE_EPOCHS",
    "COMPARE_GRADIENTS",
    "RESUMABLE_FIELDS",
    "RECORDED_FIELDS",
    "EXECUTORS",
    "DEFAULT_MAX_RETRIES",
    "MAX_LATENT_DIM",
    "MAX_SEED",
    "MAX_IWAE_K",
    "PROTOCOLS",
    "PROTOCOL_FIELDS",
    "INDEPENDENT_SAMPLE_FAMILIES",
    "LEARNING_SIGNAL_FAMILIES",
    "ENCODER_INPUTS",
    "DECODER_INPUTS",
    "DECODER_BIASES",
    "INITS",
    "DECODER_SAMPLES",
    "OPTIMIZERS",
    "INTERVENTION_DEFAULTS",
    "protocol_values",
    "check_float",
    "check_int",
    "split_list",
    "TRACKERS",
    "TRACK_EXACT_BITS",
]

OBJECTIVES = ("elbo", "bernoulli-elbo")
BINARIZE_MODES = ("none", "threshold", "dynamic")
DEVICES = ("auto", "cpu", "cuda")
ACTIVATIONS = ("relu", "leaky_relu", "tanh")
NETWORKS = ("mlp", "conv")
DECODERS = ("auto", "bernoulli", "gaussian")
PRIORS = ("fixed", "learned")
PRECISIONS = ("fp32", "bf16")
LEARNING_SIGNALS = ("reconstruction", "elbo")
# the reference protocol's options (issue 28), each with today's behaviour first (the default)
ENCODER_INPUTS = ("raw", "centred")  # x, or x - (training mean)
DECODER_INPUTS = ("bits", "signed")  # b in {0, 1}, or 2b - 1 in {-1, 1}
DECODER_BIASES = ("default", "data-mean")  # the init's, or logit(clip(training mean))
INITS = ("torch", "glorot")  # PyTorch's default init, or Keras glorot-uniform + zero biases
DECODER_SAMPLES = ("shared", "independent")  # the estimator's samples, or a third b ~ q
# the training interventions (issue 28: the StepLogistic degradation at Adam 1e-3, tested by
# changing one thing at a time): the optimizer, and each option's default (today's behaviour)
OPTIMIZERS = ("adam", "sgd")
INTERVENTION_DEFAULTS: dict[str, Any] = {
    "optimizer": "adam",
    "momentum": 0.0,
    "lr_decay_epoch": None,
    "lr_decay": None,
    "logit_clamp": None,
}

# `binaryvae compare` defaults (README command (1)): the dissertation's 8-bit comparison
# (section 5.3, Figure 5.5) -- Logistic with its own ELBO and with the Bernoulli ELBO (Figures
# 4.6-4.8), binary Concrete with the Bernoulli ELBO as the dissertation trains it, StepLogistic --
# plus Gaussian + sigmoid, the exact-Bernoulli score-function estimator, the autoencoder + GMM
# (the notes' Figures 6-9; it has no ELBO, so no objective), and the continuous Normal-latent
# gaussian, whose figures the dissertation (3.2, 3.6, A.2) and the notes (1-2, 10-11) show.
COMPARE_FAMILIES = (
    "logistic:elbo",
    "logistic:bernoulli-elbo",
    "concrete:bernoulli-elbo",
    "steplogistic:elbo",
    "gaussian-sigmoid:elbo",
    "bernoulli-sfe:elbo",
    "autoencoder-gmm",
    "gaussian:elbo",
)
# Epochs per model: enough to see the ordering of the bounds, while the eight runs, their final
# evaluation and the report finish in a few minutes on a 2-core CPU (measured in the README).
COMPARE_EPOCHS = 15
# compare measures each run's gradient variance (and, at 8 bits, its bias against the exact
# gradient) every 200 steps with 10 estimates: about 3% more training work on mnist-mini
COMPARE_GRADIENTS = {"grad_every": 200, "grad_samples": 10}


# Where `binaryvae sweep` / `compare` run their cells (binaryvae.runs.sweep_executors), and how
# many times Ray restarts a cell whose worker or node died (each restart resumes the cell).
EXECUTORS = ("local", "ray")
DEFAULT_MAX_RETRIES = 3

# Fields that `--resume` (of `train` and of `compare`) may change about a stored run: how long
# it trains and where/how it computes. Anything else would make the resumed run another run.
# ``tensorboard`` only says where the metrics are also written (no effect on training);
# ``summary_train_images``, ``summary_grad_samples`` and ``summary_grad_images`` what the
# summary also measures after training.
RESUMABLE_FIELDS = (
    "epochs", "steps", "threads", "device", "data_dir", "tensorboard", "summary_train_images",
    "summary_grad_samples", "summary_grad_images", "summary_fd_samples",
)  # fmt: skip
# Fields that record what training found rather than choose anything: the dataset's fingerprint
# and where it was (`binaryvae.data.datasets.fingerprint_of`). They take no part in
# comparing configurations (``==``, `TrainConfig.changed_fields`); the data they describe are
# compared by `binaryvae.runs.build.prepare` instead, which refuses other data.
RECORDED_FIELDS = ("data_fingerprint", "data_source")
# IWAE samples per image at most (every sample of every test image is a decoder pass; memory is
# bounded whatever k). Burda et al. (2016) use k = 5,000.
MAX_IWAE_K = 100_000

# The reference protocol's presets (issue 28): the DisARM/ARMS papers' public code
# (alekdimi/arms, experiment_launcher.py) as binaryvae's options. Fashion-MNIST, dynamically
# binarized, train = the first 50,000 training images and validation = the last 10,000, batch
# 50, Adam 1e-4 with epsilon 1e-7, 200 bits, learned prior logits by SGD at 1e-2, centred
# encoder input, +-1 decoder input, data-mean decoder bias, glorot init, summary IWAE k = 100;
# nonlinear: 784-200-200-200 with LeakyReLU(0.3) (its encoder_hidden_sizes [200, 200, 200])
# and the mirrored decoder; linear: one linear layer each way. Where the family takes them
# (`protocol_values`): decoder and prior gradients from an independent sample, and the whole
# single-sample ELBO as the learning signal (the reference's f = log p(x, b) - log q(b|x)).
_PROTOCOL_COMMON: dict[str, Any] = {
    "dataset": "fashion-mnist",
    "binarize": "dynamic",
    "validation": 10_000,
    "objective": "elbo",
    "kl_weight": 1.0,
    "kl_warmup_epochs": 0,
    "batch_size": 50,
    "lr": 1e-4,
    "adam_eps": 1e-7,
    "latent_dim": 200,
    "network": "mlp",
    "activation": "leaky_relu",
    "decoder": "bernoulli",
    "prior": "learned",
    "prior_sgd_lr": 1e-2,
    "encoder_input": "centred",
    "decoder_input": "signed",
    "decoder_bias": "data-mean",
    "init": "glorot",
    "summary_iwae_k": 100,
    "grad_var_param_ema": True,
}
PROTOCOLS: dict[str, dict[str, Any]] = {
    "disarm-nonlinear": {**_PROTOCOL_COMMON, "hidden": (200, 200)},
    "disarm-linear": {**_PROTOCOL_COMMON, "hidden": ()},
    # the same on MNIST: the reference's --dataset=dynamic_mnist, the same split (its
    # train[:50000] / train[50000:]) and every other flag unchanged. (Its omniglot variant reads
    # a chardata.mat of its own split; binaryvae has no Omniglot dataset.)
    "disarm-nonlinear-mnist": {**_PROTOCOL_COMMON, "hidden": (200, 200), "dataset": "mnist"},
    "disarm-linear-mnist": {**_PROTOCOL_COMMON, "hidden": (), "dataset": "mnist"},
}
# The families whose estimator offers decoder_sample "independent", and those that take a
# learning signal (ModelOptions.learning_signal): what the registry's classes say
# (binaryvae.models.FAMILY_CLASSES; config sits below models, so it names them here and
# tests/test_protocol.py checks the two lists against the registry).
INDEPENDENT_SAMPLE_FAMILIES = (
    "bernoulli-reinforce-loo",
    "bernoulli-arm",
    "bernoulli-disarm",
    "bernoulli-arms",
    "bernoulli-arms-normal",
)
LEARNING_SIGNAL_FAMILIES = (
    "bernoulli-sfe",
    "bernoulli-reinforce-loo",
    "bernoulli-arm",
    "bernoulli-disarm",
    "bernoulli-arms",
    "bernoulli-arms-normal",
    "bernoulli-relax",
    "bernoulli-rodeo",
)
# every field a preset may set (the family-dependent ones included); extra's learning signal
# is named "extra.learning_signal"
PROTOCOL_FIELDS = (*_PROTOCOL_COMMON, "hidden", "decoder_sample", "extra.learning_signal")


def protocol_values(name: str, family: str) -> dict[str, Any]:
    """The values preset ``name`` sets for a run of ``family``: `PROTOCOLS` [name], plus
    ``decoder_sample`` ("independent" where the family's estimator offers it, else "shared")
    and, for the families that take a learning signal, ``extra.learning_signal`` = "elbo".
    BadInput for an unknown preset."""
    try:
        values = dict(PROTOCOLS[name])
    except KeyError:
        raise BadInput(
            f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}"
        ) from None
    independent = family in INDEPENDENT_SAMPLE_FAMILIES
    values["decoder_sample"] = "independent" if independent else "shared"
    if family in LEARNING_SIGNAL_FAMILIES:
        values["extra.learning_signal"] = "elbo"
    return values


# The per-row trackers (`binaryvae.evaluation.trackers`): "exact" (the exact discrete ELBO,
# log p(x) and their gap on a fixed test subset, by enumerating the 2^n codes), "logits"
# (quantiles of |logit P(bit = 1 | x)|), "flips" (bits whose most probable value changed since
# the previous row). "exact" enumerates at most 2^TRACK_EXACT_BITS codes per row: the
# per-epoch evaluation's limit (`binaryvae.evaluation.summary.EPOCH_EXACT_BITS`; config sits
# below evaluation, so tests/test_trackers.py checks the two are equal).
TRACKERS = ("exact", "logits", "flips")
TRACK_EXACT_BITS = 16


# Ranges of the numeric fields. Upper limits bound the work one command can ask for (a latent
# size of 2^31 would exhaust memory before the first step); each is far above any published
# setting (the estimator literature uses 200 bits and batch 50-100, the dissertation 8-56 bits).
MAX_LATENT_DIM = 4096
MAX_SEED = 2**32 - 1  # numpy's legacy seeding and most tools take 32-bit seeds
_INT_RANGES: dict[str, tuple[int, int]] = {
    "latent_dim": (1, MAX_LATENT_DIM),
    "gmm_components": (1, 1000),
    "epochs": (1, 1_000_000),
    "batch_size": (1, 1_000_000),
    "kl_warmup_epochs": (0, 1_000_000),
    "seed": (0, MAX_SEED),
    "eval_samples": (1, 10_000),
    "eval_iwae_every": (0, 1_000_000),
    "eval_iwae_k": (1, MAX_IWAE_K),
    "grad_every": (0, 1_000_000_000),
    "grad_samples": (2, 10_000),
    "threads": (1, 4096),
    "validation": (0, 100_000_000),
    "track_images": (1, 100_000_000),
    "summary_train_images": (0, 100_000_000),
    "summary_grad_samples": (0, 10_000),
    "summary_grad_images": (1, 100_000_000),
}
_HEX = frozenset("0123456789abcdef")
_HIDDEN_MAX = (16, 65_536)  # at most 16 layers of at most 65,536 units
# (name, lower limit, lower limit included?): every float must also be finite
_FLOAT_RANGES: dict[str, tuple[float, bool]] = {
    "beta": (0.0, False),
    "lr": (0.0, False),
    "kl_weight": (0.0, True),
    "adam_eps": (0.0, False),
}
_CHOICES: dict[str, tuple[str, ...]] = {}  # filled below, after the tuples are defined
# how messages name a field where its name alone would be cryptic
_LABELS = {
    "latent_dim": "latent size (latent_dim)",
    "lr": "learning rate (lr)",
    "beta": "beta (inverse temperature)",
    "kl_weight": "KL weight (kl_weight)",
    "kl_warmup_epochs": "KL warm-up epochs (kl_warmup_epochs)",
    "batch_size": "batch size (batch_size)",
    "binarize": "binarization (binarize)",
    "adam_eps": "Adam epsilon (adam_eps)",
    "validation": "validation images (validation)",
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(name: str, value: Any, low: int, high: int) -> int:
    """``value`` as an int in [low, high]; BadInput naming ``name`` otherwise (bools refused)."""
    if not _is_int(value):
        raise BadInput(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise BadInput(f"{name} must be in [{low}, {high}], got {value}")
    return value


def check_float(
    name: str,
    value: Any,
    low: float,
    inclusive: bool,
    high: float = math.inf,
    high_inclusive: bool = True,
) -> float:
    """``value`` as a finite float above ``low`` (and below ``high``); BadInput otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadInput(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise BadInput(f"{name} must be finite, got {value}")
    if value < low or (value == low and not inclusive):
        raise BadInput(f"{name} must be {'>=' if inclusive else '>'} {low:g}, got {value:g}")
    if value > high or (value == high and not high_inclusive):
        raise BadInput(f"{name} must be {'<=' if high_inclusive else '<'} {high:g}, got {value:g}")
    return value


def split_list(text: Any, what: str) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]``: a comma-separated option, each element stripped.

    BadInput naming ``what`` (e.g. ``--hidden``) for an empty or blank text and for an empty
    element (``"4,"``, ``"a,,b"``): a list the user typed is taken as typed or refused, never
    silently shortened (and an empty text never falls back to a default).
    """
    if not isinstance(text, str):
        raise BadInput(f"{what} takes comma-separated values, got {text!r}")
    parts = [part.strip() for part in text.split(",")]
    if not any(parts):
        raise BadInput(f"{what} is empty ({text!r}); give comma-separated values")
    if not all(parts):
        raise BadInput(
            f"{what} has an empty element in {text!r}; separate values by single commas, "
            "with none at either end"
        )
    return parts


def _reject_unknown(d: dict, cls: type, what: str) -> None:
    """BadInput naming every key of ``d`` that is not a field of dataclass ``cls``."""
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(d) - set(known), key=str)
    if unknown:
        raise BadInput(
            f"unknown {what}: {', '.join(map(str, unknown))}; known: {', '.join(known)}"
        )


@dataclass(frozen=True)
class ModelOptions:
    """Family-, estimator- and network-specific options: ``TrainConfig.extra`` in config.json.

    One typed, validated home for options that only some families read. ``extra`` stays a
    plain dict in config.json (the run-directory contract); `ModelOptions.from_extra` checks
    its keys and values (unknown keys are refused with the list of known ones) and the model
    code reads the typed fields, never the dict.
    """

    # bernoulli-sfe: decay of the running-average control variate (notes eq. 11) and whether
    # to use it at all (False: the plain estimator of eq. 9)
    sfe_decay: float = 0.99
    sfe_baseline: bool = True
    # bernoulli-reinforce-loo: K samples per image (Kool et al. 2019 use K = 2..4)
    loo_samples: int = 2
    # gaussian decoder: a fixed standard deviation; None learns one per dimension
    decoder_scale: float | None = None
    # conv network: width of its first layer (the second has twice as many channels)
    conv_channels: int = 32
    # concrete: inverse temperature of the prior; None uses beta (the posterior's).
    # Maddison, Mnih & Teh (2017) use posterior temperature 2/3 and prior 1/2 (beta 1.5 and 2)
    concrete_prior_beta: float | None = None
    # the score-function families (bernoulli-sfe, -reinforce-loo, -arm, -disarm): the learning
    # signal, "reconstruction" (log p(x|b), analytic KL) or "elbo" (log p(x,b) - log q(b|x),
    # the estimator papers' configuration); binaryvae.models.objectives.estimated_discrete_elbo
    learning_signal: str = "reconstruction"
    # the estimators of binaryvae.models.published: K samples per image of the K-sample
    # estimators (bernoulli-vimco, -arms, -rodeo, -disarm (K/2 pairs, K even), and
    # -reinforce-loo, for which it is another name of loo_samples; None: 2), M inner samples of
    # bernoulli-gumbel-rao, and the relaxation's temperature tau of bernoulli-gumbel-rao and
    # bernoulli-reinmax
    samples: int | None = None
    inner_samples: int = 10
    st_temperature: float = 1.0
    # bernoulli-relax: hidden units of the surrogate network r_rho (0: none, only the concrete
    # relaxation), and the learning rate of its control variate's own Adam group (None: lr)
    relax_hidden: int = 137
    relax_lr: float | None = None
    # bernoulli-rodeo: hidden units of its control variates' network N_rho, and the learning
    # rate of their own Adam group (None: lr)
    rodeo_hidden: int = 100
    rodeo_lr: float | None = None

    @classmethod
    def from_extra(cls, extra: Any) -> ModelOptions:
        """Validate ``extra`` (a dict) and return the options; BadInput naming the key."""
        if not isinstance(extra, dict):
            raise BadInput(f"extra must be a JSON object of options, got {extra!r}")
        _reject_unknown(extra, cls, "option(s) in extra")
        values = dict(extra)
        if "samples" in values and "loo_samples" in values \
                and values["samples"] != values["loo_samples"]:  # fmt: skip
            raise BadInput(
                f"extra.samples ({values['samples']!r}) and extra.loo_samples "
                f"({values['loo_samples']!r}) both set K of reinforce-loo; give one of them"
            )
        for name, value in values.items():
            key = f"extra.{name}"
            if name == "sfe_decay":
                values[name] = check_float(key, value, 0.0, True, 1.0, high_inclusive=False)
            elif name == "sfe_baseline":
                if not isinstance(value, bool):
                    raise BadInput(f"{key} must be true or false, got {value!r}")
            elif name == "loo_samples":
                values[name] = check_int(key, value, 2, 1024)
            elif name == "conv_channels":
                values[name] = check_int(key, value, 1, 1024)
            elif name in ("decoder_scale", "concrete_prior_beta"):
                if value is not None:
                    values[name] = check_float(key, value, 0.0, False)
            elif name == "samples":
                if value is not None:
                    values[name] = check_int(key, value, 2, 1024)
            elif name == "inner_samples":
                values[name] = check_int(key, value, 1, 1024)
            elif name == "st_temperature":
                values[name] = check_float(key, value, 0.0, False)
            elif name == "relax_hidden":
                values[name] = check_int(key, value, 0, 4096)
            elif name == "rodeo_hidden":
                values[name] = check_int(key, value, 1, 4096)
            elif name in ("relax_lr", "rodeo_lr"):
                if value is not None:
                    values[name] = check_float(key, value, 0.0, False)
            elif name == "learning_signal":
                if value not in LEARNING_SIGNALS:
                    raise BadInput(
                        f"{key} must be one of {', '.join(LEARNING_SIGNALS)}, got {value!r}"
                    )
        return cls(**values)


DEFAULT_EPOCHS = 10
MAX_STEPS = 10**12  # optimizer steps of one run at most (about 10^5 years at 1 ms a step)


def _check_budget(c: TrainConfig) -> None:
    """The training budget of ``c``: epochs or steps (one of them; DEFAULT_EPOCHS when neither
    is given), and the evaluation interval in steps; BadInput naming the field otherwise."""
    if c.epochs is not None and c.steps is not None:
        raise BadInput(
            f"epochs ({c.epochs}) and steps ({c.steps}) are both given: they are two ways to set "
            "one budget (with steps the number of epochs follows from the batches per epoch); "
            "give one of them"
        )
    if c.epochs is None and c.steps is None:
        c.epochs = DEFAULT_EPOCHS
    for name in ("steps", "eval_every_steps"):
        if getattr(c, name) is not None:
            check_int(name, getattr(c, name), 1, MAX_STEPS)


@dataclass
class TrainConfig:
    """Everything needed to re-run one training run (`binaryvae train --config config.json`).

    Names of datasets and families are checked against their registries by the code that
    builds them (data and models), so this class stays free of imports from those layers;
    `validate()` checks what can be checked here.
    """

    # what is trained
    dataset: str = "mnist-mini"  # the offline default: 10k MNIST test images in the package
    family: str = "steplogistic"  # a name in binaryvae.models.FAMILIES
    # "elbo" (the family's own bound) or "bernoulli-elbo" (diss. eq. 4.11-4.12, not a bound)
    objective: str = "elbo"
    latent_dim: int = 8  # the dissertation's setting for its binary-latent comparisons (5.3)
    # network: 3 hidden layers as in the dissertation's best model (section 3.2, Figure 3.3)
    hidden: tuple[int, ...] = (512, 256, 128)
    activation: str = "relu"
    network: str = "mlp"  # "mlp" or the small convolutional option the notes suggest ("conv")
    # likelihood p(x|code): "bernoulli" (cross-entropy on grey levels, diss. 3.3), "gaussian"
    # (diss. ch. 2-3), or "auto": bernoulli for images, gaussian for real-valued data (toy)
    decoder: str = "auto"
    prior: str = "fixed"  # "fixed" (Bernoulli(1/2) / Logistic(0,1) / N(0,1)) or "learned" logits
    beta: float = 10.0  # inverse temperature of the steep sigmoid, sigmoid(beta*z) (diss. 4.1)
    gmm_components: int = 20  # autoencoder-gmm only: mixture size (notes section 4)
    # optimisation. The budget is `epochs` or `steps`, never both (refused as contradictory):
    # epochs = None with steps = None means DEFAULT_EPOCHS. With steps (optimizer steps in all),
    # the run trains ceil(steps / batches per epoch) epochs, the last one cut where the budget
    # ends (its metrics row says how many batches it had: epoch_batches); epochs stays None.
    epochs: int | None = None
    steps: int | None = None
    # also evaluate (a metrics row, then a checkpoint) every eval_every_steps optimizer steps,
    # counted from the run's first step; None: at the end of every epoch only (and of the budget)
    eval_every_steps: int | None = None
    batch_size: int = 128
    lr: float = 1e-3  # Adam
    kl_weight: float = 1.0  # != 1 is not a bound; labelled so in every output
    kl_warmup_epochs: int = 0  # linear warm-up of the KL weight from 0 (notes section 5)
    binarize: str = "none"  # "none" (grey levels in [0,1]), "threshold" (x > 0.5), "dynamic"
    seed: int = 0
    # evaluation during training
    eval_samples: int = 1  # posterior samples per test image for the per-epoch bounds
    # every eval_iwae_every epochs (and after the last) the test IWAE-eval_iwae_k of the
    # discrete model, metrics key test_iwae_k<K>; 0 = never (the estimator protocol: 100)
    eval_iwae_every: int = 0
    eval_iwae_k: int = 100
    # gradient diagnostics every grad_every training steps (0 = off): grad_samples estimates on
    # a fixed held-out batch, variance and (n <= 12 bits) bias against the exact gradient
    # (binaryvae.diagnostics); metrics key "gradient" (a list per epoch)
    grad_every: int = 0
    grad_samples: int = 50
    # where and how
    data_dir: str | None = None
    device: str = "auto"
    threads: int | None = None  # None: chosen by binaryvae.training (see its docstring)
    # the training step's arithmetic: "fp32", or "bf16" (autocast: matrix products in bfloat16;
    # evaluation always in float32/float64); refused where the device has no bf16 instructions
    precision: str = "fp32"
    # family-specific options, e.g. {"conv_channels": 32} (binaryvae.models docstring)
    extra: dict[str, Any] = field(default_factory=dict)
    # ---- the reference protocol (issue 28: Dong, Mnih & Tucker 2020 as their public code
    # runs it). Each option alone, its default today's behaviour; `protocol` names a preset
    # that sets them all (`PROTOCOLS`, `protocol_values`), and `protocol_overrides` records
    # (derived, never chosen) the preset's fields whose final value is not the preset's.
    # encoder input: "raw" x, or "centred" x - (mean of the training split)
    encoder_input: str = "raw"
    # decoder input: "bits" b in {0, 1}, or "signed" 2b - 1
    decoder_input: str = "bits"
    # the decoder's output bias at init: "default" (the init's), or "data-mean":
    # logit(clip(mean of the training split, 0.001, 0.999)) (bernoulli decoder, mlp network)
    decoder_bias: str = "default"
    # weights at init: "torch" (PyTorch's default), or "glorot" (Keras glorot-uniform,
    # U(-b, b) with b = sqrt(6 / (fan_in + fan_out)), and zero biases)
    init: str = "torch"
    # the learned prior's logits: None trains them inside the one Adam; a number trains them
    # by plain SGD at that learning rate (needs prior "learned")
    prior_sgd_lr: float | None = None
    # decoder and prior gradients: "shared" (from the estimator's own samples), or
    # "independent" (from a third sample b ~ q(b|x); bernoulli-disarm, -arm, -reinforce-loo)
    decoder_sample: str = "shared"
    adam_eps: float = 1e-8  # Adam's epsilon
    # ---- training interventions (issue 28; `INTERVENTION_DEFAULTS`: today's behaviour).
    # optimizer: "adam", or "sgd" (torch.optim.SGD, heavy-ball momentum `momentum`, which
    # "adam" refuses; adam_eps is Adam's alone and SGD does not read it)
    optimizer: str = "adam"
    momentum: float = 0.0
    # multiply every learning rate (Adam's or SGD's, and prior_sgd_lr) by lr_decay once, after
    # epoch lr_decay_epoch: epochs 1..E train at lr, epochs E+1.. at lr * lr_decay (both or
    # neither; `binaryvae.training.lr_factor`)
    lr_decay_epoch: int | None = None
    lr_decay: float | None = None
    # clamp the encoder's bit logits to [-C, C] in the forward pass (zero gradient outside),
    # for the families whose encoder outputs them (`binaryvae.models.Family.logit_encoder`)
    logit_clamp: float | None = None
    # the last `validation` training images held out as the validation split (0: none)
    validation: int = 0
    # k of summary.json's IWAE: None = binaryvae.evaluation.default_iwae_k (100 or 1,000)
    summary_iwae_k: int | None = None
    # track the reference's gradient variance (an EMA, decay 0.999, of the encoder parameter
    # gradients' moments; `binaryvae.diagnostics.ParamGradientEMA`): metrics key
    # grad_var_param_ema
    grad_var_param_ema: bool = False
    protocol: str | None = None  # a preset of `PROTOCOLS`, or None
    protocol_overrides: list[str] | None = None  # derived by validate() (see above)
    # ---- what is recorded beside training (none of it changes training)
    # per-row trackers, a subset of TRACKERS (`binaryvae.evaluation.trackers`), on the first
    # track_images test images (fewer when the test split has fewer), binarized once with a
    # fixed seed (the same images for every seed); metrics keys track_*
    track: tuple[str, ...] = ()
    track_images: int = 1000
    # also write every metrics row as TensorBoard scalars into <run dir>/tensorboard/ (needs
    # the optional extra binaryvae[tensorboard]); a resume may switch it (RESUMABLE_FIELDS)
    tensorboard: bool = False
    # summary.json's train_discrete_elbo (the DisARM paper's "train ELBO",
    # `binaryvae.evaluation.train_elbo`): the discrete ELBO, 1 sample per image, of the first
    # summary_train_images training images (the train part under validation; all of them when
    # fewer), binarized once with a fixed seed; 0 = not computed. It is computed after
    # training and changes nothing else; a resume may change it (RESUMABLE_FIELDS)
    summary_train_images: int = 0
    # summary.json's final_grad_* (`binaryvae.diagnostics.final`): the gradient diagnostics of
    # the trained objective (`binaryvae.diagnostics.gradient_diagnostics`: its encoder-gradient
    # bias against the exact discrete-ELBO gradient, with the calibrated bias test) from
    # summary_grad_samples estimates (0 = not measured; else at least 3) on the first
    # summary_grad_images test images, after training, from a generator of its own; binary
    # families with a likelihood only. It changes nothing else; a resume may change both
    # (RESUMABLE_FIELDS)
    summary_grad_samples: int = 0
    summary_grad_images: int = 128
    # summary.json's sample_fd (`binaryvae.evaluation.fid`): the Fréchet distance of this many
    # generated images to the test images; None = as many as test images, 0 = not computed
    # (it is computed last, from the summary's own seed, so it changes no other number); a
    # resume may change it (RESUMABLE_FIELDS)
    summary_fd_samples: int | None = None
    # recorded by training (RECORDED_FIELDS), None until then: the sha256 fingerprint of the
    # data it trained on (binaryvae.data.datasets.fingerprint_of) and where they were
    # found. A run whose config.json has none (written before 0.2.0) is accepted with the data
    # found now; `train --resume` records theirs. Given on input (`train --config`), the data
    # found must have this fingerprint.
    data_fingerprint: str | None = field(default=None, compare=False)
    data_source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field's type and range; raise BadInput naming the first bad field.

        The same rules apply to command-line options and config files: integers are integers
        (not booleans, not 1.5), floats are finite and in range, names are among the choices,
        ``hidden`` is a list of positive integers and ``extra`` holds known options only
        (`ModelOptions`). Names of datasets and families are checked by the layers that own
        their registries (data, models), before anything is written.
        """
        for name, choices in _CHOICES.items():
            value = getattr(self, name)
            if not isinstance(value, str) or value not in choices:
                label = _LABELS.get(name, name)
                raise BadInput(f"unknown {label} {value!r}; choose one of {', '.join(choices)}")
        for name in ("dataset", "family"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise BadInput(f"{name} must be a name, got {getattr(self, name)!r}")
        for name, (low, high) in _INT_RANGES.items():
            value = getattr(self, name)
            if value is None and name in ("threads", "epochs"):  # epochs: None under steps
                continue
            check_int(_LABELS.get(name, name), value, low, high)
        for name, (low, inclusive) in _FLOAT_RANGES.items():
            value = check_float(_LABELS.get(name, name), getattr(self, name), low, inclusive)
            setattr(self, name, value)
        self.hidden = _check_hidden(self.hidden)
        if self.data_dir is not None and (
            not isinstance(self.data_dir, str) or not self.data_dir.strip()
        ):
            raise BadInput(f"data_dir must be a path or null, got {self.data_dir!r}")
        fp = self.data_fingerprint
        if fp is not None and not (
            isinstance(fp, str) and len(fp) == 64 and all(ch in _HEX for ch in fp)
        ):
            raise BadInput(f"data_fingerprint must be 64 hex digits (a sha256) or null, got {fp!r}")
        if self.data_source is not None and not isinstance(self.data_source, str):
            raise BadInput(f"data_source must be a path or null, got {self.data_source!r}")
        _check_budget(self)
        self.track = _check_track(self.track, self.latent_dim)
        if self.summary_grad_samples in (1, 2):
            raise BadInput(
                f"summary_grad_samples must be 0 (off) or at least 3 estimates (the bias test's "
                f"z needs 3), got {self.summary_grad_samples}"
            )
        if not isinstance(self.tensorboard, bool):
            raise BadInput(f"tensorboard must be true or false, got {self.tensorboard!r}")
        self.options  # noqa: B018 - validates extra
        self._validate_interventions()
        self._validate_protocol_options()

    def _validate_interventions(self) -> None:
        """The training interventions (issue 28): optimizer, momentum, lr decay, logit clamp."""
        if self.optimizer not in OPTIMIZERS:
            raise BadInput(f"unknown optimizer {self.optimizer!r}; choose one of "
                           f"{', '.join(OPTIMIZERS)}")  # fmt: skip
        self.momentum = check_float("SGD momentum (momentum)", self.momentum, 0.0, True,
                                    1.0, high_inclusive=False)  # fmt: skip
        if self.momentum and self.optimizer != "sgd":
            raise BadInput(
                f"momentum ({self.momentum:g}) is SGD's; give optimizer 'sgd' (--optimizer sgd) "
                f"or leave momentum at 0 (optimizer is {self.optimizer!r})"
            )
        if (self.lr_decay_epoch is None) != (self.lr_decay is None):
            given, missing = (("lr_decay_epoch", "lr_decay") if self.lr_decay is None
                              else ("lr_decay", "lr_decay_epoch"))  # fmt: skip
            raise BadInput(
                f"{given} needs {missing} (--lr-decay-epoch E --lr-decay F: multiply the "
                "learning rate by F once, after epoch E); give both or neither"
            )
        if self.summary_fd_samples is not None:
            check_int("sample FD images (summary_fd_samples)", self.summary_fd_samples, 0,
                      100_000_000)  # fmt: skip
        if self.lr_decay_epoch is not None:
            check_int("lr decay epoch (lr_decay_epoch)", self.lr_decay_epoch, 1, 1_000_000)
            self.lr_decay = check_float("lr decay factor (lr_decay)", self.lr_decay, 0.0, False,
                                        1.0)  # fmt: skip
        if self.logit_clamp is not None:
            self.logit_clamp = check_float("logit clamp (logit_clamp)", self.logit_clamp,
                                           0.0, False)  # fmt: skip

    def _validate_protocol_options(self) -> None:
        """The reference-protocol block (issue 28); derives ``protocol_overrides``."""
        if self.prior_sgd_lr is not None:
            self.prior_sgd_lr = check_float("prior SGD learning rate (prior_sgd_lr)",
                                            self.prior_sgd_lr, 0.0, False)  # fmt: skip
            if self.prior != "learned":
                raise BadInput(
                    "prior_sgd_lr trains the learned prior's logits; it needs prior 'learned' "
                    f"(--prior learned), got prior {self.prior!r}"
                )
        if self.summary_iwae_k is not None:
            check_int("summary IWAE k (summary_iwae_k)", self.summary_iwae_k, 1, MAX_IWAE_K)
        if not isinstance(self.grad_var_param_ema, bool):
            raise BadInput(f"grad_var_param_ema must be true or false, got "
                           f"{self.grad_var_param_ema!r}")  # fmt: skip
        if self.protocol is None:
            if self.protocol_overrides:
                raise BadInput("protocol_overrides needs a protocol; protocol is null")
            self.protocol_overrides = None
            return
        if not isinstance(self.protocol, str) or self.protocol not in PROTOCOLS:
            raise BadInput(
                f"unknown protocol {self.protocol!r}; choose one of {', '.join(PROTOCOLS)}"
            )
        given = self.protocol_overrides
        if given is not None and not (
            isinstance(given, list | tuple) and all(isinstance(g, str) for g in given)
        ):
            raise BadInput(f"protocol_overrides must be a list of field names, got {given!r}")
        values = protocol_values(self.protocol, self.family)
        self.protocol_overrides = sorted(
            name for name, value in values.items() if not _same_value(self._get(name), value)
        )

    def _get(self, name: str) -> Any:
        """A field's value, or ``extra.<key>``'s (with `ModelOptions`' default)."""
        if name.startswith("extra."):
            key = name[len("extra."):]
            return self.extra.get(key, getattr(ModelOptions, key))
        return getattr(self, name)

    def follow_protocol(self, keep: Any = ()) -> TrainConfig:
        """This config with every field of its preset (`protocol_values` for its family) set
        to the preset's value, except the fields named in ``keep`` (the options given
        explicitly: they override the preset and are recorded in ``protocol_overrides``).
        Itself when it names no protocol."""
        if self.protocol is None:
            return self
        keep = set(keep)
        d = self.to_dict()
        extra = dict(d["extra"])
        values = protocol_values(self.protocol, self.family)
        if "extra.learning_signal" not in values and not keep & {"extra.learning_signal", "extra"}:
            extra.pop("learning_signal", None)  # a family without one: the default (none)
        for name, value in values.items():
            if name in keep or ("extra" in keep and name[len("extra."):] in extra):
                continue
            if name.startswith("extra."):
                extra[name[len("extra."):]] = value
            else:
                d[name] = list(value) if isinstance(value, tuple) else value
        d["extra"] = extra
        return TrainConfig.from_dict(d)

    @classmethod
    def from_protocol(cls, name: str, **fields: Any) -> TrainConfig:
        """The config of preset ``name`` (`PROTOCOLS`), ``fields`` given on top (they
        override the preset and are recorded as such)."""
        base = cls(**{**fields, "protocol": None, "protocol_overrides": None})
        return dataclasses.replace(base, protocol=name).follow_protocol(fields)

    @property
    def options(self) -> ModelOptions:
        """The typed family/network options held in ``extra`` (validated)."""
        return ModelOptions.from_extra(self.extra)

    @property
    def is_bound(self) -> bool:
        """True when the training objective is a valid lower bound (of the relaxed model).

        The Bernoulli ELBO (diss. 4.4) and any KL weight != 1 are not bounds.
        """
        return self.objective == "elbo" and self.kl_weight == 1.0 and self.kl_warmup_epochs == 0

    def objective_label(self) -> str:
        """The label that travels with every number this run reports, e.g. 'elbo' or
        'bernoulli-elbo (not a bound)'."""
        label = self.objective
        if self.kl_weight != 1.0 or self.kl_warmup_epochs:
            label += f", kl_weight={self.kl_weight:g} warmup={self.kl_warmup_epochs}"
        return label if self.is_bound else label + " (not a bound)"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        d["track"] = list(self.track)
        if d["protocol_overrides"] is not None:
            d["protocol_overrides"] = list(d["protocol_overrides"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """A config from a JSON object; BadInput for unknown or invalid fields."""
        _reject_unknown(d, cls, "config field(s)")
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """The config in JSON file ``path`` (`binaryvae.jsonfiles.read_json`: bounded, UTF-8,
        an object); BadInput naming the file and the field."""
        from binaryvae.jsonfiles import JSON_MAX_BYTES, read_json

        path = Path(path)
        d = read_json(path, dict, what="config file", max_bytes=min(JSON_MAX_BYTES, 1 << 20))
        try:
            return cls.from_dict(d)
        except BadInput as e:
            raise BadInput(f"{path}: {e}") from None

    def changed_fields(self, other: TrainConfig) -> list[str]:
        """Names of the fields whose values differ between ``self`` and ``other`` (the
        `RECORDED_FIELDS` are no choice of the user's and are not compared)."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [n for n in mine if mine[n] != theirs[n] and n not in RECORDED_FIELDS]

    def check_resumable(self, stored: TrainConfig, where: str) -> None:
        """BadInput naming each field that differs from ``stored`` outside `RESUMABLE_FIELDS`."""
        changed = [n for n in stored.changed_fields(self) if n not in RESUMABLE_FIELDS]
        if changed:
            parts = ", ".join(
                f"{n} ({getattr(stored, n)!r} -> {getattr(self, n)!r})" for n in changed
            )
            raise BadInput(
                f"--resume continues the stored runs of {where}; it cannot change {parts} "
                f"(only {', '.join(RESUMABLE_FIELDS)})"
            )


def _same_value(a: Any, b: Any) -> bool:
    """Equal as config values: lists and tuples alike, 1 and 1.0 alike, bools only to bools."""
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def _check_track(track: Any, latent_dim: int) -> tuple[str, ...]:
    """``track`` as a tuple in `TRACKERS` order; BadInput naming an unknown or repeated value,
    and "exact" where 2^latent_dim codes exceed the enumeration limit `TRACK_EXACT_BITS`.

    A list or tuple of names, or the command line's and a grid file's text: comma-separated
    names (``"exact,flips"``), or ``"none"`` for no tracker."""
    if isinstance(track, str):
        track = [] if track.strip().lower() == "none" else split_list(track, "track")
    if not isinstance(track, list | tuple):
        raise BadInput(
            f"track must be a list of trackers ({', '.join(TRACKERS)}), got {track!r}"
        )
    for name in track:
        if not isinstance(name, str) or name not in TRACKERS:
            raise BadInput(f"unknown tracker {name!r} in track; choose from {', '.join(TRACKERS)}")
        if list(track).count(name) > 1:
            raise BadInput(f"track lists {name!r} twice")
    if "exact" in track and latent_dim > TRACK_EXACT_BITS:
        raise BadInput(
            f"track 'exact' enumerates all 2^n codes at every row; limited to latent_dim <= "
            f"{TRACK_EXACT_BITS} bits, got latent_dim {latent_dim}"
        )
    return tuple(name for name in TRACKERS if name in track)


def _check_hidden(hidden: Any) -> tuple[int, ...]:
    if not isinstance(hidden, list | tuple):
        raise BadInput(f"hidden must be a list of layer sizes like [512, 256, 128], got {hidden!r}")
    layers, width = _HIDDEN_MAX
    if len(hidden) > layers:
        raise BadInput(f"hidden may have at most {layers} layers, got {len(hidden)}")
    return tuple(check_int("hidden layer size", h, 1, width) for h in hidden)


_CHOICES.update(
    objective=OBJECTIVES,
    binarize=BINARIZE_MODES,
    device=DEVICES,
    activation=ACTIVATIONS,
    network=NETWORKS,
    decoder=DECODERS,
    prior=PRIORS,
    precision=PRECISIONS,
    encoder_input=ENCODER_INPUTS,
    decoder_input=DECODER_INPUTS,
    decoder_bias=DECODER_BIASES,
    init=INITS,
    decoder_sample=DECODER_SAMPLES,
)
