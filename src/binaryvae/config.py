"""The typed configuration of one training run (what `config.json` of a run directory holds)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from binaryvae.errors import BadInput

__all__ = [
    "TrainConfig",
    "OBJECTIVES",
    "BINARIZE_MODES",
    "DEVICES",
    "COMPARE_FAMILIES",
    "COMPARE_EPOCHS",
]

OBJECTIVES = ("elbo", "bernoulli-elbo")
BINARIZE_MODES = ("none", "threshold", "dynamic")
DEVICES = ("auto", "cpu", "cuda")
ACTIVATIONS = ("relu", "leaky_relu", "tanh")
NETWORKS = ("mlp", "conv")
DECODERS = ("auto", "bernoulli", "gaussian")
PRIORS = ("fixed", "learned")

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
    # optimisation
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3  # Adam
    kl_weight: float = 1.0  # != 1 is not a bound; labelled so in every output
    kl_warmup_epochs: int = 0  # linear warm-up of the KL weight from 0 (notes section 5)
    binarize: str = "none"  # "none" (grey levels in [0,1]), "threshold" (x > 0.5), "dynamic"
    seed: int = 0
    # evaluation during training
    eval_samples: int = 1  # posterior samples per test image for the per-epoch bounds
    # where and how
    data_dir: str | None = None
    device: str = "auto"
    threads: int | None = None  # None: chosen by binaryvae.training (see its docstring)
    # family-specific options, e.g. {"conv_channels": 32} (binaryvae.models docstring)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        self.validate()

    def validate(self) -> None:
        """Raise BadInput naming the first contradictory or out-of-range field."""
        if self.objective not in OBJECTIVES:
            raise BadInput(
                f"unknown objective {self.objective!r}; choose one of {', '.join(OBJECTIVES)}"
            )
        if self.binarize not in BINARIZE_MODES:
            raise BadInput(
                f"unknown binarization {self.binarize!r}; choose one of {', '.join(BINARIZE_MODES)}"
            )
        if self.device not in DEVICES:
            raise BadInput(f"unknown device {self.device!r}; choose one of {', '.join(DEVICES)}")
        if self.activation not in ACTIVATIONS:
            raise BadInput(
                f"unknown activation {self.activation!r}; choose one of {', '.join(ACTIVATIONS)}"
            )
        if self.network not in NETWORKS:
            raise BadInput(f"unknown network {self.network!r}; choose one of {', '.join(NETWORKS)}")
        if self.decoder not in DECODERS:
            raise BadInput(f"unknown decoder {self.decoder!r}; choose one of {', '.join(DECODERS)}")
        if self.prior not in PRIORS:
            raise BadInput(f"unknown prior {self.prior!r}; choose one of {', '.join(PRIORS)}")
        if self.latent_dim < 1:
            raise BadInput(f"latent size must be >= 1, got {self.latent_dim}")
        if not self.beta > 0:
            raise BadInput(f"beta (inverse temperature) must be > 0, got {self.beta}")
        if self.epochs < 1:
            raise BadInput(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise BadInput(f"batch size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise BadInput(f"learning rate must be > 0, got {self.lr}")
        if self.kl_weight < 0:
            raise BadInput(f"KL weight must be >= 0, got {self.kl_weight}")
        if self.kl_warmup_epochs < 0:
            raise BadInput(f"KL warm-up epochs must be >= 0, got {self.kl_warmup_epochs}")
        if any(h < 1 for h in self.hidden):  # () is allowed: a linear encoder/decoder
            raise BadInput(f"hidden sizes must be positive integers, got {self.hidden}")
        if self.gmm_components < 1:
            raise BadInput(f"GMM components must be >= 1, got {self.gmm_components}")
        if self.eval_samples < 1:
            raise BadInput(f"eval samples must be >= 1, got {self.eval_samples}")
        if self.threads is not None and self.threads < 1:
            raise BadInput(f"threads must be >= 1, got {self.threads}")

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
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise BadInput(f"unknown config field(s): {', '.join(unknown)}")
        try:
            return cls(**d)
        except TypeError as e:
            raise BadInput(f"invalid config: {e}") from None

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise BadInput(f"config file not found: {path}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BadInput(f"unreadable config {path}: {e}") from None
        if not isinstance(d, dict):
            raise BadInput(f"config {path} must hold a JSON object")
        return cls.from_dict(d)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
