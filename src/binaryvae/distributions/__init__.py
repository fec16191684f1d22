"""Posterior families of binary-latent VAEs: Logistic, StepLogistic, SmoothStepLogistic, their
KL divergences (registered with torch.distributions.register_kl), relaxations and the Bernoulli
probabilities lambda = P(z > 0) of the discrete models they stand for."""

from binaryvae.distributions import kl
from binaryvae.distributions.bernoulli import bernoulli_kl, bernoulli_log_mass
from binaryvae.distributions.bernoulli_probs import (
    bernoulli_logits_from_gaussian,
    bernoulli_probs_from_concrete,
    bernoulli_probs_from_gaussian,
    bernoulli_probs_from_logistic,
    bernoulli_probs_from_step_logistic,
)
from binaryvae.distributions.kl import bernoulli_kl_to_half, logistic_kl_equal_scale
from binaryvae.distributions.logistic import Logistic
from binaryvae.distributions.noise import draw, open_uniform
from binaryvae.distributions.relaxations import (
    binary_concrete,
    binary_concrete_kl,
    binary_concrete_logit_log_prob,
    binary_concrete_rsample,
    steep_sigmoid,
)
from binaryvae.distributions.smooth_step_cdf import smooth_step_g, smooth_step_g0
from binaryvae.distributions.smooth_step_logistic import (
    SmoothStepLogistic,
    smooth_step_contraction,
)
from binaryvae.distributions.step_logistic import StepLogistic

__all__ = [
    "draw",
    "open_uniform",
    "bernoulli_kl",
    "bernoulli_log_mass",
    "Logistic",
    "StepLogistic",
    "SmoothStepLogistic",
    "smooth_step_g",
    "smooth_step_g0",
    "smooth_step_contraction",
    "kl",
    "bernoulli_kl_to_half",
    "logistic_kl_equal_scale",
    "steep_sigmoid",
    "binary_concrete",
    "binary_concrete_kl",
    "binary_concrete_rsample",
    "binary_concrete_logit_log_prob",
    "bernoulli_probs_from_gaussian",
    "bernoulli_logits_from_gaussian",
    "bernoulli_probs_from_logistic",
    "bernoulli_probs_from_concrete",
    "bernoulli_probs_from_step_logistic",
]
