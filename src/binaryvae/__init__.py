"""binaryvae: variational autoencoders with binary (Bernoulli) latent codes.

Continuous relaxations (Gaussian + steep sigmoid, Logistic, binary Concrete, StepLogistic,
SmoothStepLogistic), exact-Bernoulli gradient estimators (score function, REINFORCE-LOO,
DisARM, straight-through, ...; more from installed packages: `register_estimator`),
and evaluation of every model as the discrete model it stands for.
"""

__version__ = "0.2.0"

__all__ = ["__version__", "register_estimator"]


def __getattr__(name: str):
    # lazy: ``import binaryvae`` stays free of torch until an estimator is registered
    if name == "register_estimator":
        from binaryvae.models.registry import register_estimator

        return register_estimator
    raise AttributeError(f"module 'binaryvae' has no attribute {name!r}")
