"""What each reported number is: the labels that travel with a run's numbers (summary.json)."""

from __future__ import annotations

from typing import Any

from binaryvae.config import OBJECTIVES, TrainConfig
from binaryvae.errors import BadInput

__all__ = [
    "NUMBER_LABELS",
    "FINAL_GRADIENT_LABELS",
    "RECONSTRUCTION_ONLY",
    "TRAIN_ELBO_LABEL",
    "family_facts",
    "objective_label",
    "summary_labels",
    "trained_on_label",
]

# What each reported number is (summary.json "labels"); the vocabulary of docs/internals.md.
NUMBER_LABELS = {
    "test_relaxed_elbo": "lower bound on log p(x) of the relaxed (continuous-latent) model",
    "test_elbo": (
        "the family's own ELBO where it has no relaxation: a lower bound on log p(x) of the "
        "binary model itself (exact-Bernoulli families) or of the Normal-latent model (gaussian)"
    ),
    "test_bernoulli_elbo": (
        "NOT a bound: relaxed samples in Bernoulli log-probabilities (diss. 4.11-4.12)"
    ),
    "test_discrete_elbo": "lower bound on log p(x) of the discrete (binary-latent) model",
    "test_iwae": "importance-weighted lower bound on log p(x) of the discrete model (k = iwae_k)",
    "test_iwae_k<K>": "the same importance-weighted bound with K samples (one key per K)",
    "test_log_px_exact": "exact log p(x) of the discrete model (all 2^n codes enumerated)",
    "test_exact_gap": "log p(x) - discrete ELBO = KL(q(b|x) || p(b|x)) >= 0, by enumeration",
    "recon_loss_r5": (
        "Table 5.2: -log p(x | decoder input) averaged over 5 posterior draws (lower is better)"
    ),
    "sample_fd": (
        "Frechet distance of generated samples to test images (lower is better; not a bound)"
    ),
}


# summary.json's train_discrete_elbo (TrainConfig.summary_train_images > 0, binary families)
TRAIN_ELBO_LABEL = (
    "lower bound on log p(x) of the discrete model on the first train_elbo_images training "
    "images, binarized once with a fixed seed, 1 sample per image (the DisARM paper's train ELBO)"
)


# summary.json's final_grad_* (TrainConfig.summary_grad_samples > 0, binary families)
FINAL_GRADIENT_LABELS = {
    "final_grad_bias_ratio": (
        "norm of (mean of final_grad_samples estimates of the trained objective's encoder "
        "gradient - the exact discrete-ELBO gradient) / the exact gradient's norm, on the first "
        "final_grad_batch test images after training (binaryvae.diagnostics.final)"
    ),
    "final_grad_bias_over_noise": (
        "that bias norm / the norm the mean's own noise alone gives, sqrt(tr(S)/K) (about 1 "
        "for an unbiased estimator, its spread set by final_grad_noise_dims)"
    ),
    "final_grad_bias_sq_ratio": (
        "squared bias norm / tr(S)/K: near 1 for an unbiased estimator at any K"
    ),
    "final_grad_bias_z": (
        "the squared bias's excess over the noise in its own standard errors (Chen & Qin; about "
        "N(0, 1) for an unbiased estimator; z > 3 resolves a bias above the noise)"
    ),
    "final_grad_bias_debiased_ratio": (
        "the bias norm with the noise's expected share taken out / the exact gradient's norm"
    ),
    "final_grad_noise_dims": (
        "the number of directions the estimates' noise spreads over, tr(S)^2 / tr(Sigma^2)"
    ),
}


def family_facts(config: TrainConfig) -> dict[str, bool]:
    """What kind of model the run's family is, as summary.json records it (so that readers of
    run directories need not build the family): ``binary_latent`` (it stands for a binary
    model), ``exact_latent`` (its latent is Bernoulli itself, no relaxation), ``has_likelihood``
    (False for the deterministic autoencoder)."""
    from binaryvae.models import make_family

    family = make_family(config)
    return {
        "binary_latent": bool(family.binary),
        "exact_latent": bool(family.exact),
        "has_likelihood": bool(family.has_likelihood),
    }


def parse_family_spec(item: str, where: str = "") -> tuple[str, str | None]:
    """``"family"`` -> (family, None); ``"family:objective"`` -> (family, objective): the one
    parser of the specs compare.json, ``--families`` and grid files hold (`family_spec` writes
    them). BadInput, prefixed by ``where``, for an empty family or objective, or an objective
    not in `binaryvae.config.OBJECTIVES`."""
    family, sep, objective = (part.strip() for part in str(item).partition(":"))
    if not family:
        raise BadInput(f"{where}{item!r} names no family")
    if not sep:
        return family, None
    if not objective:
        raise BadInput(f"{where}{item!r} names no objective")
    if objective not in OBJECTIVES:
        raise BadInput(
            f"{where}unknown objective {objective!r} in {item!r}; "
            f"choose one of {', '.join(OBJECTIVES)}"
        )
    return family, objective


def family_spec(config: TrainConfig) -> str:
    """The run's ``family:objective`` as compare.json lists it; the family alone where it has
    no likelihood (the autoencoder's one loss is no ELBO, so no objective is chosen)."""
    if family_facts(config)["has_likelihood"]:
        return f"{config.family}:{config.objective}"
    return config.family


RECONSTRUCTION_ONLY = "reconstruction only (autoencoder: no KL, not a bound)"


def trained_on_label(config: TrainConfig, has_likelihood: bool, family: Any = None) -> str:
    """What trained a run, as summary.json's ``objective_label`` says it: the config's label,
    with "elbo" replaced by "iwae-K" where the family's estimator maximises the K-sample
    importance-weighted bound (VIMCO); ``family`` (built from the config if not given)."""
    if not has_likelihood:
        return RECONSTRUCTION_ONLY
    label = config.objective_label()
    if family is None:
        from binaryvae.models import make_family

        family = make_family(config)
    name = family.objective_name() if hasattr(family, "objective_name") else "elbo"
    if name != "elbo" and label.startswith("elbo"):
        label = name + label[len("elbo"):]
    return label


def objective_label(config: TrainConfig, model: Any) -> tuple[str, bool]:
    """(label, is a bound) of what trained the model; the autoencoder's loss is no ELBO."""
    has = bool(model.family.has_likelihood)
    return trained_on_label(config, has, model.family), config.is_bound and has


def summary_labels(config: TrainConfig, model: Any) -> dict[str, Any]:
    """The labels that travel with the final numbers: what trained the model, what bounds what."""
    label, is_bound = objective_label(config, model)
    family = model.family
    binary = bool(family.binary)
    labels = dict(NUMBER_LABELS)
    if not binary:  # the gaussian family's IWAE uses its continuous proposal q(z|x)
        labels["test_iwae"] = (
            "importance-weighted lower bound on log p(x) of the continuous-latent model "
            "(proposal q(z|x), k = iwae_k); there is no discrete model"
        )
    if binary and getattr(config, "summary_train_images", 0):
        labels["train_discrete_elbo"] = TRAIN_ELBO_LABEL
    if binary and getattr(config, "summary_grad_samples", 0):
        labels.update(FINAL_GRADIENT_LABELS)
    return {
        # False for the deterministic autoencoder: its "relaxed ELBO" column is the
        # reconstruction term alone (no KL), not a bound on anything
        "has_likelihood": bool(family.has_likelihood),
        "exact_latent": bool(family.exact),
        "family": config.family,
        "objective": config.objective,
        "objective_label": label,
        "objective_is_bound": is_bound,
        "binary_latent": binary,
        "latent_dim": config.latent_dim,
        "dataset": config.dataset,
        "seed": config.seed,
        "labels": labels,
    }
