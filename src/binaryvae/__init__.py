"""binaryvae: variational autoencoders with binary (Bernoulli) latent codes.

Continuous relaxations (Gaussian + steep sigmoid, Logistic, binary Concrete, StepLogistic,
SmoothStepLogistic), exact-Bernoulli gradient estimators (score function, REINFORCE-LOO,
DisARM, straight-through), and evaluation of every model as the discrete model it stands for.
"""

__version__ = "0.2.0"

__all__ = ["__version__"]
