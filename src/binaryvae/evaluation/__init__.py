"""Scores every model as the discrete model it stands for (never imports the estimators)."""

from binaryvae.evaluation.bounds import (
    Bound,
    bernoulli_elbo,
    bernoulli_kl,
    discrete_elbo,
    discrete_terms,
    relaxed_elbo,
    relaxed_terms,
)
from binaryvae.evaluation.exact import (
    MAX_EXACT_BITS,
    ExactResult,
    enumerate_codes,
    exact_evaluation,
    exact_log_posterior,
    exact_log_px,
    exact_posterior,
    joint_log_prob_matrix,
)
from binaryvae.evaluation.iwae import iwae_bound

__all__ = [
    "MAX_EXACT_BITS",
    "Bound",
    "ExactResult",
    "bernoulli_elbo",
    "bernoulli_kl",
    "discrete_elbo",
    "discrete_terms",
    "enumerate_codes",
    "exact_evaluation",
    "exact_log_posterior",
    "exact_log_px",
    "exact_posterior",
    "iwae_bound",
    "joint_log_prob_matrix",
    "relaxed_elbo",
    "relaxed_terms",
]
