"""Diagnostics of training: what the estimators do, measured (gradient variance and bias).

This layer sits between evaluation and the run directories: it runs the training objectives
(and so the estimators) on fixed batches and compares them with exact quantities from
`binaryvae.evaluation`, which itself never imports an estimator.
"""

from binaryvae.diagnostics.gradients import (
    EXACT_GRADIENT_BITS,
    bias_statistics,
    exact_discrete_elbo,
    gradient_diagnostics,
)

__all__ = ["EXACT_GRADIENT_BITS", "bias_statistics", "exact_discrete_elbo", "gradient_diagnostics"]
