"""Gradient estimators for E_{q(b|x)}[f(b)] with b ~ Bernoulli(sigmoid(logits)), b in {0,1}^n.

Each estimator takes the encoder logits ``[B, n]`` and ``f``, a function mapping bits
``[..., B, n]`` to the per-image learning signal ``[..., B]`` (here log p(x|b), differentiable in
the decoder's parameters), and returns ``EstimatorOutput(surrogate, value)``:

- ``surrogate [B]``: a tensor whose gradient (w.r.t. the logits, hence the encoder, and w.r.t.
  the decoder parameters inside ``f``) estimates grad E_q[f(b)]. Its *value* equals ``value``
  (the score terms enter as ``signal * (log q - log q.detach())``, the "magic box" that the
  notes' Figure 3 writes as ``- SFE + SFE.detach()``).
- ``value [B]``: the detached Monte Carlo estimate of E_q[f(b)] that is reported.

Noise comes from `binaryvae.distributions.draw` with the caller's ``generator`` (None, a
``torch.Generator``, or a `binaryvae.models.replicas.ReplicaGenerator`); b = 1[u < sigmoid(logits)].
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from binaryvae.config import ModelOptions
from binaryvae.distributions import bernoulli_log_mass, draw
from binaryvae.errors import BadInput
from binaryvae.models.registry import ESTIMATORS, register_estimator

__all__ = [
    "EstimatorOutput",
    "ScoreFunction",
    "StraightThrough",
    "ReinforceLOO",
    "ARM",
    "DisARM",
    "ESTIMATORS",
    "make_estimator",
    "register_estimator",
    "sample_count",
]

# Every estimator class carries its properties (docs/internals.md, binaryvae.models):
#   unbiased               its gradient estimate's mean is the exact gradient of E_q[f(b)]
#   takes_learning_signal  f(b) enters as a score-function weight (ModelOptions.learning_signal)
#   samples_per_step       decoder evaluations per image and step
#   takes_options          the `binaryvae.config.ModelOptions` fields ``from_options`` reads
#                          (a run's ``extra`` may set those, and learning_signal where it takes one)
# and ``from_options(options)`` builds it from `binaryvae.config.ModelOptions`. Those with
# ``independent_decoder_sample`` (DisARM, ARM, REINFORCE-LOO) take ``independent=True``
# (TrainConfig.decoder_sample "independent", set by `binaryvae.models.build_model`): the
# parameters inside f (decoder, prior) then get grad f(b') at a third sample b' ~ q drawn
# independently of the estimator's own, whose f values only weight the logits' gradient (the
# reference code's split, issue 28). Unbiased either way; one more decoder pass per step.

Signal = Callable[[torch.Tensor], torch.Tensor]  # bits [..., B, n] -> [..., B]


class EstimatorOutput(NamedTuple):
    surrogate: torch.Tensor  # [B] differentiable; gradient estimates grad E_q[f(b)]
    value: torch.Tensor  # [B] detached estimate of E_q[f(b)]


def _uniform(shape, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return draw(torch.rand, shape, like, generator)


def _independent_term(logits: torch.Tensor, f: Signal, generator) -> torch.Tensor:
    """``f(b') - f(b').detach()`` at b' = 1[u' < sigma(a)], u' drawn after the estimator's own
    noise: value 0, gradient grad f(b') for the parameters inside f (decoder, prior), none for
    the logits (b' is a hard sample). [..., B]"""
    probs = torch.sigmoid(logits.detach())
    b = (_uniform(logits.shape, logits, generator) < probs).to(logits.dtype)
    fb = f(b)
    return fb - fb.detach()


def _magic_box(signal: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Value 0, gradient signal * grad log q (signal must be detached)."""
    return signal * (log_q - log_q.detach())


class ScoreFunction(nn.Module):
    """Score-function estimator with a running-average control variate (notes eq. 9-11).

    grad E_q[f] ~= f(b) grad_theta + (f(b) - c) grad_phi log q(b),   b ~ q   (notes eq. 10)

    c is the running average of previous batches' mean learning signal (the notes' "running
    average of all previous values of log p(x|z)"), kept as the buffer ``running_mean``. We use
    an exponential average (``decay``, default 0.99) rather than the cumulative mean, which lags
    ever further behind as log p(x|z) improves; c depends only on *previous* batches, so the
    estimator stays unbiased. It is updated in training mode only. ``baseline=False`` gives the
    plain estimator of eq. 9.
    """

    unbiased, takes_learning_signal, samples_per_step = True, True, 1
    takes_options = ("sfe_decay", "sfe_baseline")

    def __init__(self, decay: float = 0.99, baseline: bool = True):
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise BadInput(f"sfe_decay must be in [0, 1), got {decay}")
        self.decay, self.baseline = float(decay), bool(baseline)
        self.register_buffer("running_mean", torch.zeros(()))  # c, a scalar
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    @classmethod
    def from_options(cls, o: ModelOptions) -> ScoreFunction:
        return cls(decay=o.sfe_decay, baseline=o.sfe_baseline)

    def forward(self, logits: torch.Tensor, f: Signal, generator=None) -> EstimatorOutput:
        probs = torch.sigmoid(logits.detach())  # [B, n]
        b = (_uniform(logits.shape, logits, generator) < probs).to(logits.dtype)  # [B, n]
        fb = f(b)  # [B]
        c = self.running_mean if self.baseline else fb.new_zeros(())
        signal = fb.detach() - c  # [B] detached learning signal (notes eq. 11, red term)
        surrogate = fb + _magic_box(signal, bernoulli_log_mass(b, logits))  # [B]  (notes eq. 11)
        if self.training and self.baseline:
            with torch.no_grad():
                # per replica of a stacked model: fb [S, B] -> [S, 1]; a single model: [B] -> []
                m = fb.detach().mean(-1).reshape(self.running_mean.shape)
                # first step: start the average at the first batch mean (used from the next step
                # on); a tensor condition, so that no device sync is needed
                d = torch.where(self.steps > 0, self.decay, 0.0).to(m.dtype)
                self.running_mean.copy_(d * self.running_mean + (1.0 - d) * m)
                self.steps += 1
        return EstimatorOutput(surrogate, fb.detach())


class StraightThrough(nn.Module):
    """Straight-through estimator (Bengio, Leonard & Courville 2013, arXiv:1308.3432).

    Forward: hard bits b ~ Bernoulli(p). Backward: d b / d p := 1, i.e. the decoder receives
    b + p - stop_grad(p). Biased; one decoder evaluation.
    """

    unbiased, takes_learning_signal, samples_per_step = False, False, 1

    @classmethod
    def from_options(cls, o: ModelOptions) -> StraightThrough:
        return cls()

    def forward(self, logits: torch.Tensor, f: Signal, generator=None) -> EstimatorOutput:
        p = torch.sigmoid(logits)  # [B, n]
        b = (_uniform(logits.shape, logits, generator) < p.detach()).to(logits.dtype)  # [B, n]
        fb = f(b + p - p.detach())  # [B]; forward value is f(b)
        return EstimatorOutput(fb, fb.detach())


class ReinforceLOO(nn.Module):
    """REINFORCE with the leave-one-out baseline over K samples (Kool, van Hoof & Welling 2019,
    "Buy 4 REINFORCE samples, get a baseline for free!", ICLR DeepRL workshop):

    grad ~= 1/(K-1) sum_k (f(b_k) - 1/K sum_j f(b_j)) grad log q(b_k),   b_1..b_K iid ~ q

    (equivalently 1/K sum_k (f(b_k) - mean_{j != k} f(b_j)) grad log q(b_k)). The decoder runs
    once on all K samples ``[K, B, n]``. K is the option ``samples`` (``--samples K``) or its
    older name ``loo_samples``.
    """

    unbiased, takes_learning_signal, independent_decoder_sample = True, True, True

    # K is ``samples`` (the name every K-sample estimator reads, ``--samples K``) or its older
    # name ``loo_samples``; both given must agree
    takes_options = ("loo_samples", "samples")

    def __init__(self, samples: int = 2, independent: bool = False):
        super().__init__()
        if samples < 2:
            raise BadInput(f"reinforce-loo needs at least 2 samples, got {samples}")
        self.samples = int(samples)
        self.independent = bool(independent)

    @classmethod
    def from_options(cls, o: ModelOptions) -> ReinforceLOO:
        return cls(sample_count(o, legacy="loo_samples"))

    @property
    def samples_per_step(self) -> int:
        return self.samples

    def forward(self, logits: torch.Tensor, f: Signal, generator=None) -> EstimatorOutput:
        K = self.samples
        probs = torch.sigmoid(logits.detach())  # [B, n]
        b = (_uniform((K, *logits.shape), logits, generator) < probs).to(logits.dtype)  # [K, B, n]
        with torch.no_grad() if self.independent else contextlib.nullcontext():
            fb = f(b)  # [K, B]
        signal = (fb.detach() - fb.detach().mean(0)) * (K / (K - 1))  # [K, B]  (Kool et al. 2019)
        score = _magic_box(signal, bernoulli_log_mass(b, logits))  # [K, B]
        surrogate = (fb + score).mean(0)
        if self.independent:
            surrogate = surrogate + _independent_term(logits, f, generator)
        return EstimatorOutput(surrogate, fb.detach().mean(0))


def _antithetic_pair(logits: torch.Tensor, generator) -> tuple[torch.Tensor, torch.Tensor]:
    """u ~ U(0,1)^n and the pair b = 1[u < sigma(a)], b~ = 1[1 - u < sigma(a)]: [2, ..., n]
    (both marginally ~ q; ARM's 1[u > sigma(-a)] is b~)."""
    probs = torch.sigmoid(logits.detach())
    u = _uniform(logits.shape, logits, generator)
    return u, torch.stack([u < probs, 1.0 - u < probs]).to(logits.dtype)


class ARM(nn.Module):
    """ARM (Yin & Zhou 2019, "ARM: Augment-REINFORCE-Merge Gradient for Stochastic Binary
    Networks", ICLR, Theorem 1): with u ~ U(0,1)^n,

    d E_q[f] / d a_i = E_u[(f(1[u > sigma(-a)]) - f(1[u < sigma(a)])) (u_i - 1/2)]

    an unbiased estimate from the antithetic pair of DisARM (which improves on it by
    integrating u out where the pair agrees). The decoder parameters get
    1/2 (grad f(b) + grad f(b~)). Two decoder evaluations, run as one pass on ``[2, B, n]``.
    """

    unbiased, takes_learning_signal, samples_per_step = True, True, 2
    independent_decoder_sample = True

    def __init__(self, independent: bool = False):
        super().__init__()
        self.independent = bool(independent)

    @classmethod
    def from_options(cls, o: ModelOptions) -> ARM:
        return cls()

    def forward(self, logits: torch.Tensor, f: Signal, generator=None) -> EstimatorOutput:
        u, pair = _antithetic_pair(logits, generator)  # [B, n], [2, B, n]: b, b~
        with torch.no_grad() if self.independent else contextlib.nullcontext():
            fb = f(pair)  # [2, B]
        weight = (fb[1] - fb[0]).detach().unsqueeze(-1) * (u - 0.5)  # [B, n]  (Theorem 1)
        surrogate = fb.mean(0) + (weight * (logits - logits.detach())).sum(-1)  # [B]
        if self.independent:
            surrogate = surrogate + _independent_term(logits, f, generator)
        return EstimatorOutput(surrogate, fb.detach().mean(0))


class DisARM(nn.Module):
    """DisARM (Dong, Mnih & Tucker 2020, "DisARM: An Antithetic Gradient Estimator for Binary
    Latent Variables", NeurIPS, section 3): an antithetic pair b = 1[u < sigma(a)],
    b~ = 1[1 - u < sigma(a)], u ~ U(0,1)^n, and per logit a_i

    g_i = 1/2 (f(b) - f(b~)) * (-1)^{b~_i} * 1[b_i != b~_i] * sigma(|a_i|)

    an unbiased estimate of d E_q[f] / d a_i. The decoder parameters get 1/2 (grad f(b) +
    grad f(b~)). Two decoder evaluations, run as one pass on ``[2, B, n]``.

    ``samples`` K (even, ``--samples K``; default 2): K/2 independent antithetic pairs, u_1 ..
    u_{K/2} iid, and the mean of their K/2 DisARM estimates, g = 2/K sum_m g^(m) (the
    multi-sample DisARM that the ARMS paper, Dimitriev & Zhou 2021, compares at equal K, and
    the reference code's: alekdimi/arms averages ``num_pairs`` pair estimates). Each pair's
    weight is already a difference f(b) - f(b~), so a baseline shared across pairs (a
    leave-one-out across pairs) cancels from it: the average is the multi-pair estimator.
    The decoder parameters get the mean of grad f over all K samples. K decoder evaluations
    per image, one pass on ``[K, B, n]``; at K = 2 the draws and the estimate are those of
    the single pair, bit for bit.

    ``independent=True`` (the reference code's split, issue 28): the pairs' f values are
    computed without gradient and only weight the logits; the decoder and prior get
    grad f(b') at an independent b' ~ q (`_independent_term`): K + 1 decoder evaluations.
    """

    unbiased, takes_learning_signal = True, True
    independent_decoder_sample = True
    takes_options = ("samples",)

    def __init__(self, independent: bool = False, samples: int = 2):
        super().__init__()
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 2 \
                or samples % 2:  # fmt: skip
            raise BadInput(
                f"disarm takes K/2 antithetic pairs: extra.samples must be an even K >= 2, "
                f"got {samples!r}"
            )
        self.independent = bool(independent)
        self.samples = int(samples)

    @classmethod
    def from_options(cls, o: ModelOptions) -> DisARM:
        return cls(samples=sample_count(o))

    @property
    def samples_per_step(self) -> int:
        return self.samples

    def forward(self, logits: torch.Tensor, f: Signal, generator=None) -> EstimatorOutput:
        pairs = self.samples // 2
        if pairs == 1:
            _, pair = _antithetic_pair(logits, generator)  # [2, B, n]: b, b~
        else:
            probs = torch.sigmoid(logits.detach())
            u = _uniform((pairs, *logits.shape), logits, generator)  # [K/2, B, n]
            pair = torch.stack([u < probs, 1.0 - u < probs], 1).to(logits.dtype)
            pair = pair.flatten(0, 1)  # [K, B, n]: b^(1), b~^(1), b^(2), b~^(2), ...
        with torch.no_grad() if self.independent else contextlib.nullcontext():
            fb = f(pair)  # [K, B]
        fb2 = fb.unflatten(0, (pairs, 2))  # [K/2, 2, B]
        b, bt = pair.unflatten(0, (pairs, 2)).unbind(1)  # [K/2, B, n] each
        weight = (
            0.5
            * (fb2[:, 0] - fb2[:, 1]).detach().unsqueeze(-1)  # [K/2, B, 1]
            * (1.0 - 2.0 * bt)  # (-1)^{b~}
            * (b != bt).to(logits.dtype)
            * torch.sigmoid(logits.detach().abs())
        ).mean(0)  # [B, n]: the DisARM gradient w.r.t. the logits, averaged over the pairs
        surrogate = fb.mean(0) + (weight * (logits - logits.detach())).sum(-1)  # [B]
        if self.independent:
            surrogate = surrogate + _independent_term(logits, f, generator)
        return EstimatorOutput(surrogate, fb.detach().mean(0))


def sample_count(o: ModelOptions, legacy: str | None = None, default: int = 2) -> int:
    """K of a K-sample estimator: the option ``samples`` (``--samples K``), else its older
    name ``legacy`` (reinforce-loo's ``loo_samples``), else ``default``. (Both names given
    with different values are refused by `ModelOptions.from_extra`.)"""
    if o.samples is not None:
        return int(o.samples)
    return int(getattr(o, legacy)) if legacy else default


# The built-ins, registered as a package's estimator is (binaryvae.models.registry): name ->
# class, in this order; ``ESTIMATORS`` is the registry (entry points included), ``from_options``
# builds one and the class carries its properties.
register_estimator("sfe", ScoreFunction)
register_estimator("straight-through", StraightThrough, family="bernoulli-st")
register_estimator("reinforce-loo", ReinforceLOO)
register_estimator("arm", ARM)
register_estimator("disarm", DisARM)


def make_estimator(name: str, options: ModelOptions | None = None) -> nn.Module:
    """The estimator registered as ``name``, built from ``options``; BadInput if unknown."""
    try:
        cls = ESTIMATORS[name]
    except KeyError:
        raise BadInput(
            f"unknown estimator {name!r}; choose one of {', '.join(ESTIMATORS)}"
        ) from None
    return cls.from_options(options if options is not None else ModelOptions())
