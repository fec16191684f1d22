"""Posterior families: one registry entry per family, each defining q(z|x), its prior, the
decoder input, and lambda(x) = P(bit = 1 | x) of the discrete model it stands for.

A family is a small stateless object built from the config (``beta``, ``options``); learnable or
fitted prior state lives in a prior module owned by the VAE (``make_prior``), so that
``state_dict`` round-trips it. The prior module of every factorized family holds ``param [n]``
(zeros; an ``nn.Parameter`` with ``--prior learned``); its meaning is the family's.
The families:

==================  ===========================  =================================  ===========
family              q(z|x)                       prior p(z): fixed / learned        KL(q || p)
==================  ===========================  =================================  ===========
gaussian            N(mu, sigma^2)               N(0, 1) / N(m, 1)                  closed
gaussian-sigmoid    N(mu, sigma^2)               N(0, 1) / N(m, 1)                  closed
logistic            Logistic(mu, 1)              Logistic(0, 1) / Logistic(m, 1)    closed
concrete            y = beta (log g + l)         Concrete(g=1) / Concrete(g=e^a0)   closed [1]
steplogistic        StepLogistic(logits a)       Logistic(0, 1) / StepLogistic(a0)  closed [2]
smoothsteplogistic  SmoothStepLogistic(a, beta)  Logistic(0, 1) / SmoothStep(a0)    quadrature
bernoulli-*         Bernoulli(sigmoid(a))        Bern(1/2) / Bern(sigmoid(a0))      closed
autoencoder-gmm     deterministic code           GMM fitted after training          none
==================  ===========================  =================================  ===========

[1] at equal posterior and prior temperatures; by quadrature otherwise.
[2] the Bernoulli KL (diss. eq. 5.5), for the learned prior too (StepLogisticFamily).
The prior bit logits (``prior_bit_logits``) are logit Phi(m) for the Gaussian families, m for
logistic, a0 for the others. ``param`` is zeros unless ``--prior learned``.

The relaxed families pass sigma(beta z) (the steep sigmoid, diss. 4.1) to the decoder; the exact
Bernoulli families pass hard bits; gaussian and autoencoder-gmm pass the code itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.distributions import Bernoulli, Distribution, Normal, kl_divergence

from binaryvae.config import ModelOptions
from binaryvae.distributions import (
    Logistic,
    SmoothStepLogistic,
    StepLogistic,
    bernoulli_kl,
    bernoulli_logits_from_gaussian,
    binary_concrete,
    binary_concrete_kl,
    draw,
    logistic_kl_equal_scale,
    open_uniform,
    steep_sigmoid,
)
from binaryvae.errors import BadInput
from binaryvae.models import objectives as obj
from binaryvae.models.estimators import ESTIMATORS, make_estimator

__all__ = [
    "Family",
    "FAMILIES",
    "FAMILY_CLASSES",
    "SCORE_FUNCTION_FAMILIES",
    "check_options",
    "make_family",
    "FactorizedPrior",
    "GMMPrior",
]

Objective = Callable[..., obj.LossTerms]


# ----------------------------------------------------------------------------- prior modules
class FactorizedPrior(nn.Module):
    """Holds the prior's per-dimension parameter ``param [n]``: fixed zeros or learned."""

    def __init__(self, n: int, learned: bool):
        super().__init__()
        if learned:
            self.param = nn.Parameter(torch.zeros(n))  # [n]
        else:
            self.register_buffer("param", torch.zeros(n))  # [n]


class GMMPrior(nn.Module):
    """The Gaussian mixture fitted to autoencoder codes (notes section 4, eq. 13), as buffers.

    ``weights [K]``, ``means [K, n]``, ``scale_tril [K, n, n]`` (Cholesky factors of the
    covariances), ``fitted`` (0/1). Before fitting, codes are sampled from N(0, I).
    """

    def __init__(self, n: int, components: int):
        super().__init__()
        self.register_buffer("weights", torch.full((components,), 1.0 / components))
        self.register_buffer("means", torch.zeros(components, n))
        # identity factors, written as a filled diagonal: torch.eye on the meta device (the
        # memory estimate, binaryvae.resources) would import torch._refs, seconds of startup
        tril = torch.zeros(components, n, n)
        tril.diagonal(dim1=-2, dim2=-1).fill_(1.0)
        self.register_buffer("scale_tril", tril)
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    def fit(self, codes: torch.Tensor, seed: int = 0) -> None:
        """Fit sklearn's GaussianMixture (EM, full covariances) to ``codes [N, n]``."""
        from sklearn.mixture import GaussianMixture

        k = self.weights.shape[0]
        data = codes.detach().double().cpu().numpy()
        if data.shape[0] < k:
            raise BadInput(f"cannot fit {k} mixture components to {data.shape[0]} codes")
        gmm = GaussianMixture(
            n_components=k, covariance_type="full", random_state=seed, reg_covar=1e-6
        ).fit(data)
        dev, dt = self.means.device, self.means.dtype
        self.weights.copy_(torch.as_tensor(gmm.weights_, dtype=dt, device=dev))
        self.means.copy_(torch.as_tensor(gmm.means_, dtype=dt, device=dev))
        chol = torch.linalg.cholesky(torch.as_tensor(gmm.covariances_, dtype=torch.float64))
        self.scale_tril.copy_(chol.to(dtype=dt, device=dev))
        self.fitted.fill_(True)

    def distribution(self) -> Distribution:
        from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

        return MixtureSameFamily(
            Categorical(probs=self.weights),
            MultivariateNormal(self.means, scale_tril=self.scale_tril),
        )

    def sample(self, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
        n = self.means.shape[1]
        eps = draw(torch.randn, (num, n), self.means, generator)  # [num, n]
        if not bool(self.fitted):
            return eps
        w = self.weights if generator is None else self.weights.to(generator.device)
        comp = torch.multinomial(w, num, replacement=True, generator=generator)  # [num]
        comp = comp.to(self.means.device)
        return self.means[comp] + (self.scale_tril[comp] @ eps.unsqueeze(-1)).squeeze(-1)


# ----------------------------------------------------------------------------- base family
class _ClassProperty:
    """A read-only attribute computed from the class: ``Family.relaxed`` and
    ``family.relaxed`` alike, derived from the class's own attributes."""

    def __init__(self, fget: Callable[[type], Any]):
        self.fget = fget
        self.__doc__ = fget.__doc__

    def __get__(self, obj: Any, cls: type | None = None) -> Any:
        return self.fget(cls if cls is not None else type(obj))


class Family:
    """A posterior family (docs/internals.md, vocabulary). Subclasses set the class attributes and
    override what differs. ``params`` is the tuple of encoder outputs, each ``[B, n]``."""

    name: str = ""
    binary: bool = True  # stands for a Bernoulli-latent (discrete) model
    exact: bool = False  # the latent is Bernoulli itself (no relaxation)
    has_likelihood: bool = True  # a probabilistic latent: ELBO and IWAE exist
    # the gradient: unbiased for the objective (pathwise here; an exact family's estimator's);
    # takes_learning_signal: an estimator weighting f(b) (ModelOptions.learning_signal)
    unbiased: bool = True
    takes_learning_signal: bool = False
    # the `binaryvae.config.ModelOptions` fields (a run's ``extra``) the family reads: its own
    # and its estimator's; every other family-specific option is refused (`check_options`)
    takes_options: tuple[str, ...] = ()
    # the encoder's output (``params[0]``, one per bit) is the posterior's logit parameter:
    # logit lambda(x) for logistic (its location), concrete (log gamma), steplogistic and the
    # exact Bernoulli families, the logits a of smoothsteplogistic. What ``logit_clamp``
    # (`binaryvae.config.TrainConfig`) clamps; the others (gaussian: mean and log-variance,
    # the autoencoder: a code) have no such output and refuse it.
    logit_encoder: bool = True

    @_ClassProperty
    def relaxed(cls) -> bool:
        """True when the latent is a continuous relaxation of bits (a binary model whose latent
        is not Bernoulli itself): its own ELBO is the relaxed ELBO, ``test_relaxed_elbo``.
        False for the exact-Bernoulli families, gaussian and the autoencoder: their own ELBO
        (where they have one) is ``test_elbo``."""
        return bool(cls.binary and not cls.exact)

    params_per_dim: int = 1
    objectives: Mapping[str, Objective] = {
        "elbo": obj.relaxed_elbo,
        "bernoulli-elbo": obj.relaxed_bernoulli_elbo,
    }

    @property
    def scores(self) -> Mapping[str, Objective]:
        """The objectives as evaluation computes their values: the training objectives where
        they involve no gradient estimator (every relaxed family), else an estimator-free
        equivalent (the exact Bernoulli families override this)."""
        return self.objectives

    def __init__(self, beta: float = 10.0, options: ModelOptions | None = None):
        self.beta = float(beta)
        self.options = options if options is not None else ModelOptions()

    @classmethod
    def from_config(cls, config) -> Family:
        """The family with ``config``'s beta and options (the registry's factory)."""
        return cls(beta=config.beta, options=config.options)

    # --- q, p and the decoder input
    def posterior(self, params: tuple[torch.Tensor, ...]) -> Distribution:
        raise NotImplementedError

    def prior(self, prior_module: nn.Module) -> Distribution:
        raise NotImplementedError

    def rsample(self, q: Distribution, generator=None) -> torch.Tensor:
        """Reparameterised sample [..., B, n] of the package's distributions (Logistic,
        StepLogistic, SmoothStepLogistic: icdf of uniforms), noise from ``generator``."""
        return q.rsample(generator=generator)

    def relax(self, z: torch.Tensor) -> torch.Tensor:
        """Steep sigmoid sigma(beta z) (diss. 4.1): the soft bit given to the decoder."""
        return steep_sigmoid(z, self.beta)

    def kl(self, q: Distribution, p: Distribution, z: torch.Tensor) -> torch.Tensor:
        """KL(q || p) per image [B]: one-sample Monte Carlo log q(z) - log p(z) (diss. 2.2.3)."""
        return (q.log_prob(z) - p.log_prob(z)).sum(-1)

    # --- the discrete model it stands for
    def bit_logits(self, params: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """logit lambda(x) [B, n], lambda = P(bit = 1 | x)."""
        return params[0]

    def prior_bit_logits(self, prior_module: nn.Module) -> torch.Tensor:
        return prior_module.param  # [n]

    def encode_mean(self, params: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return torch.sigmoid(self.bit_logits(params))  # lambda(x) [B, n]

    def sample_codes(self, prior_module: nn.Module, num: int, generator=None) -> torch.Tensor:
        """Bits [num, n] ~ Bernoulli(sigmoid(prior bit logits)) (diss. 4.1: decode prior codes)."""
        probs = torch.sigmoid(self.prior_bit_logits(prior_module))  # [n]
        u = draw(torch.rand, (num, probs.shape[0]), probs, generator)  # [num, n]
        return (u < probs).to(probs.dtype)

    # --- state owned by the VAE
    def make_prior(self, n: int, learned: bool) -> nn.Module:
        return FactorizedPrior(n, learned)

    def make_estimator(self) -> nn.Module | None:
        return None


def _learned(prior_module: nn.Module) -> bool:
    return isinstance(prior_module.param, nn.Parameter)


# ----------------------------------------------------------------------------- Gaussian
class GaussianFamily(Family):
    """Continuous Gaussian latent (diss. ch. 2-3, notes section 2): q = N(mu, sigma^2) with the
    encoder giving (mu, log sigma^2) (diss. 1.3.1), prior N(0, 1) (or N(m, 1) learned), the code
    itself to the decoder, analytic KL (Kingma & Welling 2014, appendix B; notes section 2).
    Not a binary model; ``bit_logits`` are the sign bits P(z > 0) = Phi(mu / sigma)."""

    name = "gaussian"
    binary = False
    logit_encoder = False
    params_per_dim = 2
    objectives = {"elbo": obj.relaxed_elbo}

    def posterior(self, params):
        mu, logvar = params  # [B, n] each
        return Normal(mu, torch.exp(0.5 * logvar), validate_args=False)

    def prior(self, prior_module):
        m = prior_module.param  # [n]
        return Normal(m, torch.ones_like(m), validate_args=False)

    def rsample(self, q, generator=None):
        eps = draw(torch.randn, q.loc.shape, q.loc, generator)  # [B, n]
        return q.loc + q.scale * eps  # [B, n]  diss. eq. 3.1

    def relax(self, z):
        return z

    def kl(self, q, p, z):
        # KL(N(mu, s^2) || N(m, 1)) = 1/2 sum (s^2 + (mu - m)^2 - 1 - log s^2)   (notes section 2)
        var = q.scale.square()
        return 0.5 * (var + (q.loc - p.loc).square() - 1.0 - var.log()).sum(-1)

    def bit_logits(self, params):
        mu, logvar = params  # [B, n] each
        # logit Phi(mu / sigma) = log Phi(t) - log Phi(-t): finite in both tails
        return bernoulli_logits_from_gaussian(mu, torch.exp(0.5 * logvar))

    def prior_bit_logits(self, prior_module):
        m = prior_module.param  # [n]
        return bernoulli_logits_from_gaussian(m, torch.ones_like(m))

    def encode_mean(self, params):
        return params[0]  # mu [B, n]

    def sample_codes(self, prior_module, num, generator=None):
        m = prior_module.param  # [n]
        return m + draw(torch.randn, (num, m.shape[0]), m, generator)  # [num, n]


class GaussianSigmoidFamily(GaussianFamily):
    """Gaussian posterior with the steep sigmoid sigma(beta z) to the decoder (diss. 4.1);
    lambda = P(z > 0) = Phi(mu / sigma). Analytic Gaussian KL."""

    name = "gaussian-sigmoid"
    binary = True
    objectives = Family.objectives

    relax = Family.relax
    encode_mean = Family.encode_mean
    sample_codes = Family.sample_codes


# ----------------------------------------------------------------------------- relaxed binary
class LogisticFamily(Family):
    """Logistic(mu, 1) posterior, Logistic(0, 1) prior (Logistic(m, 1) learned), steep sigmoid to
    the decoder, lambda = sigmoid(mu) (diss. 4.2, eq. 4.4). KL in closed form,
    KL = d coth(d / 2) - 2 with d = mu - m (binaryvae.distributions.logistic_kl_equal_scale; it
    reproduces Table 5.1's Logistic column), so the relaxed ELBO has no Monte Carlo KL noise."""

    name = "logistic"

    def posterior(self, params):
        mu = params[0]  # [B, n]
        return Logistic(mu, torch.ones_like(mu), validate_args=False)

    def prior(self, prior_module):
        m = prior_module.param  # [n]
        return Logistic(m, torch.ones_like(m), validate_args=False)

    def kl(self, q, p, z):
        return logistic_kl_equal_scale(q.loc - p.loc).sum(-1)  # [B] closed form (see docstring)


class ConcreteFamily(Family):
    """Binary Concrete (Maddison, Mnih & Teh 2017; diss. 4.3, eq. 4.8) in logit space: the encoder
    gives log gamma, y = beta (log gamma + l), l ~ Logistic(0, 1), the decoder gets sigma(y),
    lambda = gamma / (1 + gamma) = sigmoid(log gamma).

    The prior is the Concrete with gamma = 1 (sigmoid(a0) learned) at inverse temperature
    ``options.concrete_prior_beta`` (default: beta; Maddison et al. 2017 use posterior
    temperature 2/3 and prior 1/2, i.e. beta 1.5 and prior beta 2). With equal temperatures
    y/beta ~ Logistic(log gamma, 1) and the family coincides in distribution with ``logistic``
    (binaryvae.distributions.relaxations says the same); its KL is then the closed form
    d coth(d/2) - 2 (KL is invariant under y -> y/beta). With unequal temperatures the family
    differs from ``logistic`` and its KL in logit space (Maddison et al., appendix C) is
    computed by quadrature (`binary_concrete_kl`): deterministic, no Monte Carlo noise.
    """

    name = "concrete"
    takes_options = ("concrete_prior_beta",)

    def __init__(self, beta=10.0, options=None):
        super().__init__(beta, options)
        prior_beta = self.options.concrete_prior_beta
        self.prior_beta = self.beta if prior_beta is None else float(prior_beta)

    def posterior(self, params):
        return binary_concrete(params[0], self.beta)  # over y = beta (log gamma + l), [B, n]

    def prior(self, prior_module):
        return binary_concrete(prior_module.param, self.prior_beta)  # [n]

    def rsample(self, q, generator=None):
        u = open_uniform(q.batch_shape, q.logits, generator)  # [B, n]
        return (q.logits + torch.log(u) - torch.log1p(-u)) / q.temperature  # diss. eq. 4.8

    def relax(self, z):
        return torch.sigmoid(z)  # y already carries beta: sigma(beta (log gamma + l))

    def kl(self, q, p, z):
        if self.prior_beta == self.beta:
            return logistic_kl_equal_scale(q.logits - p.logits).sum(-1)  # closed form, [B]
        kl = binary_concrete_kl(q.logits, self.beta, p.logits, self.prior_beta)  # [B, n]
        return kl.sum(-1)  # by quadrature, [B]


class StepLogisticFamily(Family):
    """StepLogistic(logits a) posterior (diss. 5.2, eq. 5.4), Logistic(0, 1) prior, steep sigmoid
    to the decoder, lambda = alpha / 2 = sigmoid(a). KL in closed form: the registered
    KL(StepLogistic(a) || Logistic(0, 1)) = KL(Bern(sigmoid(a)) || Bern(1/2)) (diss. eq. 5.5).

    Learned prior: StepLogistic(a0) (= Logistic(0, 1) at a0 = 0). Both densities are the
    Logistic(0, 1) density g times a constant on each half line, 2(1 - p) and 2p, so
    log q/p = log((1 - p)/(1 - p0)) on z < 0 and log(p/p0) on z > 0, and
    KL(StepLogistic(a) || StepLogistic(a0)) = (1 - p) log((1 - p)/(1 - p0)) + p log(p / p0)
    = KL(Bern(p) || Bern(p0)), p = sigmoid(a), p0 = sigmoid(a0): computed as the Bernoulli KL.
    """

    name = "steplogistic"

    def posterior(self, params):
        return StepLogistic(logits=params[0], validate_args=False)

    def prior(self, prior_module):
        a0 = prior_module.param  # [n]
        if _learned(prior_module):
            return StepLogistic(logits=a0, validate_args=False)
        return Logistic(a0, torch.ones_like(a0), validate_args=False)  # Logistic(0, 1)

    def kl(self, q, p, z):
        # registered closed forms: diss. eq. 5.5 against Logistic(0, 1), the Bernoulli KL
        # against a learned StepLogistic (derived in the docstring)
        return kl_divergence(q, p).sum(-1)  # [B]


class SmoothStepLogisticFamily(Family):
    """SmoothStepLogistic(logits a, beta) posterior (diss. eq. 5.8, made sampleable in
    binaryvae.distributions), Logistic(0, 1) prior, steep sigmoid to the decoder; lambda = its
    P(z > 0) (``positive_logits`` of the distribution, not its ``logits``). KL(q || Logistic(0, 1))
    is the registered quadrature (deterministic, differentiable), and so is the KL to a learned
    prior SmoothStepLogistic(a0, beta) (binaryvae.distributions.kl). The smoothing steepness is the
    relaxation's beta (the dissertation uses beta = 10 for both, Figure 5.7)."""

    name = "smoothsteplogistic"

    def posterior(self, params):
        return SmoothStepLogistic(logits=params[0], beta=self.beta, validate_args=False)

    def prior(self, prior_module):
        a0 = prior_module.param  # [n]
        if _learned(prior_module):
            return SmoothStepLogistic(logits=a0, beta=self.beta, validate_args=False)
        return Logistic(a0, torch.ones_like(a0), validate_args=False)  # Logistic(0, 1)

    def kl(self, q, p, z):
        return kl_divergence(q, p).sum(-1)  # [B] registered quadrature (either prior)

    def bit_logits(self, params):
        return self.posterior(params).positive_logits  # logit P(z > 0) [B, n]

    def prior_bit_logits(self, prior_module):
        return self.prior(prior_module).positive_logits  # [n]


# ----------------------------------------------------------------------------- exact Bernoulli
class BernoulliFamily(Family):
    """Exact Bernoulli latent (notes section 3): q(b|x) = Bernoulli(sigmoid(a(x))), prior
    Bernoulli(1/2) (or Bernoulli(sigmoid(a0)) learned), analytic KL (notes eq. 8), hard bits to
    the decoder; the gradient of E_q log p(x|b) comes from the family's estimator."""

    exact = True
    estimator = ""
    # "elbo" only: the Bernoulli ELBO of an exact family is its discrete ELBO (a bound)
    objectives = {"elbo": obj.estimated_discrete_elbo}
    scores = {"elbo": obj.sampled_discrete_elbo}  # its value, one plain draw, no estimator

    def posterior(self, params):
        return Bernoulli(logits=params[0], validate_args=False)

    def prior(self, prior_module):
        return Bernoulli(logits=prior_module.param, validate_args=False)

    def rsample(self, q, generator=None):
        raise BadInput(
            f"family {self.name!r} has a discrete latent: it has no reparameterised sample"
        )

    def relax(self, z):
        return z

    def kl(self, q, p, z=None):
        return bernoulli_kl(q.logits, p.logits)  # [B]  notes eq. 8

    # set per estimator by the registry: a fixed learning signal ("elbo": the estimator always
    # gets the log importance weight, whatever the option) and what it estimates the gradient
    # of ("expectation": E_q[f(b)]; "iwae": E log 1/K sum_k exp f(b_k), the IWAE-K bound)
    estimator_signal: str | None = None
    estimator_objective: str = "expectation"

    def make_estimator(self):
        return make_estimator(self.estimator, self.options)

    def objective_name(self) -> str:
        """What training maximises, as labels name it: "elbo", or "iwae-K" for an estimator of
        the K-sample importance-weighted bound (VIMCO)."""
        if self.estimator_objective == "iwae":
            return f"iwae-{int(self.make_estimator().samples)}"
        return "elbo"


def _bernoulli(name: str, estimator: str) -> type[BernoulliFamily]:
    """The family ``name`` with the registered ``estimator``, whose properties it carries."""
    cls = ESTIMATORS[estimator]
    options = (*getattr(cls, "takes_options", ()),) + (
        ("learning_signal",) if cls.takes_learning_signal else ()
    )
    props = {
        "unbiased": cls.unbiased,
        "takes_learning_signal": cls.takes_learning_signal,
        "takes_options": options,
        "independent_decoder_sample": getattr(cls, "independent_decoder_sample", False),
        "estimator_signal": getattr(cls, "learning_signal", None),
        "estimator_objective": getattr(cls, "objective", "expectation"),
    }
    return type(f"Bernoulli_{estimator}", (BernoulliFamily,),
                {"name": name, "estimator": estimator, **props})  # fmt: skip


# ----------------------------------------------------------------------------- autoencoder
class AutoencoderGMMFamily(Family):
    """Deterministic autoencoder (notes section 4): code = encoder(x), loss log p(x|code) (eq. 12),
    no KL; after training ``VAE.finalize`` fits a GaussianMixture (eq. 13, ``gmm_components``)
    to the training codes and generation decodes mixture samples. No posterior, not binary."""

    name = "autoencoder-gmm"
    binary = False
    logit_encoder = False
    has_likelihood = False  # trained on reconstruction alone: no ELBO, no IWAE
    objectives = {"elbo": obj.reconstruction}

    def __init__(self, beta=10.0, options=None, components: int = 20, seed: int = 0):
        super().__init__(beta, options)
        self.components, self.seed = int(components), int(seed)

    @classmethod
    def from_config(cls, config) -> Family:
        return cls(config.beta, config.options, config.gmm_components, config.seed)

    def posterior(self, params):
        raise BadInput("autoencoder-gmm is deterministic: it has no posterior q(z|x)")

    def prior(self, prior_module):
        return prior_module.distribution()

    def relax(self, z):
        return z

    def kl(self, q, p, z):
        return torch.zeros(z.shape[:-1], device=z.device, dtype=z.dtype)

    def bit_logits(self, params):
        raise BadInput("autoencoder-gmm is not a binary model: it has no bit probabilities")

    def prior_bit_logits(self, prior_module):
        raise BadInput("autoencoder-gmm is not a binary model: it has no prior bit logits")

    def encode_mean(self, params):
        return params[0]

    def sample_codes(self, prior_module, num, generator=None):
        return prior_module.sample(num, generator)

    def make_prior(self, n, learned):
        return GMMPrior(n, self.components)


# ----------------------------------------------------------------------------- registry
# name -> family class: every list of families derives from this table and the classes'
# properties (binary, exact, has_likelihood, unbiased, takes_learning_signal). The exact
# Bernoulli families come from the estimator registry (binaryvae.models.registry), one
# ``bernoulli-<name>`` per registered estimator, entry points of installed packages included;
# the tables below follow the registry whenever it changes.
_BEFORE = (GaussianFamily, GaussianSigmoidFamily, LogisticFamily, ConcreteFamily,
           StepLogisticFamily, SmoothStepLogisticFamily)  # fmt: skip
_AFTER = (AutoencoderGMMFamily,)
_BERNOULLI_CLASSES: dict[tuple[str, str, type], type[Family]] = {}  # one class per estimator


def _family_table() -> dict[str, type[Family]]:
    version = ESTIMATORS.version
    if _TABLE.get("version") != version:
        bernoulli = []
        for est, cls in ESTIMATORS.items():
            name = ESTIMATORS.family_of(est)
            key = (name, est, cls)
            if key not in _BERNOULLI_CLASSES:
                _BERNOULLI_CLASSES[key] = _bernoulli(name, est)
            bernoulli.append(_BERNOULLI_CLASSES[key])
        _TABLE["table"] = {c.name: c for c in (*_BEFORE, *bernoulli, *_AFTER)}
        _TABLE["version"] = version
    return _TABLE["table"]


_TABLE: dict[str, Any] = {}


class _FamilyClasses(Mapping):
    """name -> family class, read through to the estimator registry."""

    def __getitem__(self, name: str) -> type[Family]:
        return _family_table()[name]

    def __iter__(self):
        return iter(list(_family_table()))

    def __len__(self) -> int:
        return len(_family_table())

    def __repr__(self) -> str:
        return f"FAMILY_CLASSES({list(self)})"


class _Factories(Mapping):
    """name -> factory(config) -> Family."""

    def __getitem__(self, name: str) -> Callable[..., Family]:
        return _family_table()[name].from_config

    def __iter__(self):
        return iter(list(_family_table()))

    def __len__(self) -> int:
        return len(_family_table())


class _ScoreFunctionFamilies(Sequence):
    """The families whose estimator takes a learning signal (a live tuple of names)."""

    def _names(self) -> tuple[str, ...]:
        return tuple(n for n, c in _family_table().items() if c.takes_learning_signal)

    def __getitem__(self, i):
        return self._names()[i]

    def __len__(self) -> int:
        return len(self._names())

    def __eq__(self, other) -> bool:
        return tuple(self) == tuple(other) if isinstance(other, Sequence) else NotImplemented

    def __repr__(self) -> str:
        return repr(self._names())


FAMILY_CLASSES: Mapping[str, type[Family]] = _FamilyClasses()

# name -> factory(config) -> Family
FAMILIES: Mapping[str, Callable[..., Family]] = _Factories()

# families whose estimator takes a learning signal f(b) (ModelOptions.learning_signal)
SCORE_FUNCTION_FAMILIES: Sequence[str] = _ScoreFunctionFamilies()


# options of the network and the decoder, which any family may take: option -> (the setting
# it needs, what it is)
_MODEL_OPTIONS = {
    "conv_channels": ("network", "conv", "the conv network's width"),
    "decoder_scale": ("decoder", "gaussian", "the gaussian decoder's standard deviation"),
}


def check_options(config, decoder: str) -> None:
    """BadInput naming the option, the family and what it takes, for an option in
    ``config.extra`` that this model would not read: another family's or estimator's option
    (``TrainConfig(family="logistic", extra={"loo_samples": 4})``), conv_channels without the
    conv network, decoder_scale without the gaussian decoder (``decoder``, resolved)."""
    cls = FAMILY_CLASSES[config.family]
    for key in config.extra:
        if key in _MODEL_OPTIONS:
            field, value, what = _MODEL_OPTIONS[key]
            have = decoder if field == "decoder" else getattr(config, field)
            if have != value:
                raise BadInput(
                    f"extra.{key} sets {what}, but this run's {field} is {have} "
                    f"(--{field} {value} takes it)"
                )
        elif key not in cls.takes_options:
            takers = [n for n, c in FAMILY_CLASSES.items() if key in c.takes_options]
            raise BadInput(
                f"extra.{key} is not an option of family {config.family!r} (its options: "
                f"{', '.join(cls.takes_options) or 'none'}); {key} applies to "
                f"{', '.join(takers) or 'no family'}"
            )


def make_family(config) -> Family:
    """The family named by ``config.family``; BadInput listing the names if unknown, or for an
    option the family does not take."""
    try:
        cls = FAMILY_CLASSES[config.family]
    except KeyError:
        raise BadInput(
            f"unknown family {config.family!r}; choose one of {', '.join(FAMILIES)}"
        ) from None
    signal = config.options.learning_signal
    fixed = getattr(cls, "estimator_signal", None)
    if signal != "reconstruction" and not cls.takes_learning_signal and signal != fixed:
        raise BadInput(
            f"learning_signal {signal!r} applies to the score-function families "
            f"({', '.join(SCORE_FUNCTION_FAMILIES)}), not to {config.family!r}"
        )
    return cls.from_config(config)
