"""Test helpers for estimator authors: `check_estimator(cls)` runs the library's checks on a class.

Like scikit-learn's ``check_estimator``: any gradient-estimator class (registered or not, see
`binaryvae.models.registry` for what a class carries) gets

1. **the enumeration test** (unbiasedness): on a model with n = 3 bits, a small MLP decoder with
   large weights (so that the codes matter) and a *learned* prior with non-zero logits, the mean
   of R = 20,000 independent estimates of the gradient w.r.t. the encoder logits (one backward
   pass: the batch holds R replicas of two images, each with its own copy of the logits) is
   compared with the exact gradient of the estimator's objective, computed by enumerating all
   2^3 codes (all (2^3)^K K-tuples for the IWAE-K objective). Test: |z| < 4.5 for each of the
   6 coordinates and each learning signal the class takes; for a correct estimator one
   coordinate fails with probability 6.8e-6 (normal tail). A class with ``unbiased = False``
   is not tested for it: its bias (mean - exact, and its norm relative to the exact gradient's)
   is measured and returned instead.
2. **the shape/device/dtype contract**: ``forward(logits [..., B, n], f, generator)`` returns
   ``(surrogate [..., B], value [..., B])`` of the logits' dtype and device, ``value`` detached
   and equal to ``surrogate``'s value, f called on hard bits ``[..., B, n]`` (forward values in
   {0, 1}; in [0, 1] for a class with ``relaxed_inputs = True``) of the logits' dtype,
   ``samples_per_step`` decoder rows per image, finite gradients; in float32 and float64,
   with and without a leading replica axis (an estimator with ``setup(latent_dim)`` is set
   up for the model's bits first).
3. **replica equality**: three models stacked into one (`binaryvae.models.replicas`) give each
   replica the gradient (every parameter) and the estimator state of its plain model, noise from
   a `ReplicaGenerator`, in float64 to 1e-9 relative.
4. **resume equality**: an estimator's state saved after three training steps and loaded into a
   fresh model gives, with the same generator, the bitwise-same estimate and state as the
   model it came from.

Failures raise `EstimatorCheckFailed` (an AssertionError) naming the check; success returns an
`EstimatorReport`. The helpers the library's own tests use (`enumerable_model`,
`exact_gradient`, `logit_estimates`, `z_scores`) are public here too.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from binaryvae.config import ModelOptions, TrainConfig
from binaryvae.distributions import bernoulli_kl, bernoulli_log_mass
from binaryvae.models.registry import _check_class

__all__ = [
    "N_BITS",
    "DATA_DIM",
    "REPLICAS",
    "Z_MAX",
    "LEARNED_PRIOR",
    "EstimatorCheckFailed",
    "CaseResult",
    "EstimatorReport",
    "FixedParams",
    "check_estimator",
    "enumeration_data",
    "enumerable_model",
    "exact_gradient",
    "logit_estimates",
    "z_scores",
]

N_BITS, DATA_DIM, REPLICAS = 3, 10, 20000
Z_MAX = 4.5
LEARNED_PRIOR = (0.7, -0.4, 0.2)  # the learned prior's logits in the enumeration test


class EstimatorCheckFailed(AssertionError):
    """An estimator failed one of `check_estimator`'s checks (the message names it)."""


@dataclass
class CaseResult:
    """One enumeration case: the learning signal, z-scores and the measured bias [B, n]."""

    signal: str
    z: list[float]
    bias: list[float]  # mean - exact, per coordinate (B * n values)
    exact: list[float]
    bias_norm: float  # || mean - exact ||
    relative_bias: float  # || mean - exact || / || exact ||
    noise_norm: float  # sqrt(tr Var / R): the bias norm an unbiased estimator would show

    @property
    def z_max(self) -> float:
        return max(abs(v) for v in self.z)


@dataclass
class EstimatorReport:
    """What `check_estimator` found: the class, whether it claims unbiasedness, the cases."""

    name: str
    unbiased: bool
    cases: list[CaseResult] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)  # names of the checks that passed

    @property
    def relative_bias(self) -> float:
        """The largest relative bias over the cases (near 0 for an unbiased estimator)."""
        return max(c.relative_bias for c in self.cases)


class FixedParams(nn.Module):
    """An 'encoder' whose output is a free parameter [B, k]: gradients land on it directly."""

    def __init__(self, values: torch.Tensor):
        super().__init__()
        self.values = nn.Parameter(values.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.values


def enumeration_data() -> tuple[torch.Tensor, torch.Tensor]:
    """Two binary images ``x [2, DATA_DIM]`` and their encoder logits ``[2, N_BITS]`` (float64)."""
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(2, DATA_DIM, generator=gen) < 0.5).double()  # [B=2, D]
    logits = torch.tensor([[-1.0, 0.5, 2.0], [0.3, -2.0, 1.0]], dtype=torch.float64)  # [B, n]
    return x, logits


def _options(extra: dict | ModelOptions | None) -> ModelOptions:
    if isinstance(extra, ModelOptions):
        return extra
    return ModelOptions.from_extra(dict(extra or {}))


def _family_for(cls: type[nn.Module], options: ModelOptions):
    """A Bernoulli family instance training with ``cls`` (registered or not)."""
    from binaryvae.models.families import BernoulliFamily

    props = {
        "name": f"bernoulli-check-{cls.__name__.lower()}",
        "estimator": "",
        "unbiased": cls.unbiased,
        "takes_learning_signal": cls.takes_learning_signal,
        "estimator_signal": getattr(cls, "learning_signal", None),
        "estimator_objective": getattr(cls, "objective", "expectation"),
        "make_estimator": lambda self: _made(cls, self.options, N_BITS),
    }
    return type(f"Check_{cls.__name__}", (BernoulliFamily,), props)(options=options)


def _made(cls, options: ModelOptions, n: int) -> nn.Module:
    """``cls.from_options(options)``, set up for ``n`` bits where it has ``setup``."""
    est = cls.from_options(options)
    if callable(getattr(est, "setup", None)):
        est.setup(n)
    return est


def _build(family: str, prior: str, seed: int, hidden=(16,), dtype=torch.float64):
    from binaryvae.models import build_model

    torch.manual_seed(seed)
    cfg = TrainConfig(family=family, latent_dim=N_BITS, hidden=hidden, prior=prior)
    return build_model(cfg, DATA_DIM, None, "image").to(dtype)


def enumerable_model(family: str | type[nn.Module], replicas: int, extra=None,
                     prior: str = "fixed"):  # fmt: skip
    """A bernoulli model with n = 3 bits, a small MLP decoder with weights times 3 (so that the
    codes matter) and the logits ``[R * B, n]`` as a parameter: R replicas of the two images.

    ``family``: a registered family name, or an estimator class (then trained by a family made
    for it). ``prior="learned"`` sets the prior logits to `LEARNED_PRIOR`.
    Returns (model, x repeated [R * B, D], x [B, D], logits [B, n]).
    """
    if isinstance(family, str):
        torch.manual_seed(1)
        from binaryvae.models import build_model

        cfg = TrainConfig(family=family, latent_dim=N_BITS, hidden=(16,), prior=prior,
                          extra=dict(extra or {}))  # fmt: skip
        model = build_model(cfg, DATA_DIM, None, "image").double()
    else:
        model = _build("bernoulli-sfe", prior, seed=1)
        model.family = _family_for(family, _options(extra))
        model.estimator = model.family.make_estimator().double()
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.mul_(3.0)
        if prior == "learned":
            model.prior_module.param.copy_(torch.tensor(LEARNED_PRIOR, dtype=torch.float64))
    x, logits = enumeration_data()
    model.encoder = FixedParams(logits.repeat(replicas, 1))
    return model, x.repeat(replicas, 1), x, logits


def _codes(dtype) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=N_BITS)), dtype=dtype)  # [C, n]


def exact_gradient(model, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """d objective_b / d logits_b by enumeration: [B, n]. The objective is the discrete ELBO
    (E_q log p(x|b) - KL(q || p)), or for an IWAE-K estimator (``estimator_objective ==
    "iwae"``) E log 1/K sum_k p(x, b_k) / q(b_k | x) over K iid codes (all (2^n)^K tuples)."""
    logits = logits.clone().requires_grad_(True)
    codes = _codes(x.dtype)
    prior = model.prior_bit_logits().detach()
    with torch.no_grad():
        f = model.decoder.log_prob(x, model.decoder(codes.unsqueeze(1)))  # [C, B]
    log_q = bernoulli_log_mass(codes.unsqueeze(1), logits)  # [C, B]
    if getattr(model.family, "estimator_objective", "expectation") == "iwae":
        k = int(model.estimator.samples)
        log_w = f + bernoulli_log_mass(codes.unsqueeze(1), prior) - log_q  # [C, B]
        idx = torch.tensor(list(itertools.product(range(codes.shape[0]), repeat=k)))  # [T, K]
        weight = log_q[idx].sum(1).exp()  # [T, B]: q(b_1) ... q(b_K)
        bound = torch.logsumexp(log_w[idx], dim=1) - math.log(k)  # [T, B]
        target = (weight * bound).sum(0)  # [B]
    else:
        target = (log_q.exp() * f).sum(0) - bernoulli_kl(logits, prior)  # [B]
    (grad,) = torch.autograd.grad(target.sum(), logits)
    return grad


def logit_estimates(model, x_rep: torch.Tensor, seed: int, replicas: int) -> torch.Tensor:
    """R independent estimates of d objective_b / d logits_b: [R, B, n]."""
    model.zero_grad()
    model.loss(x_rep, "elbo", generator=torch.Generator().manual_seed(seed)).surrogate.backward()
    g = model.encoder.values.grad  # [R * B, n]; surrogate = -mean over R * B images
    return (-g * g.shape[0]).reshape(replicas, -1, g.shape[-1])


def z_scores(est: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """(mean - exact) / standard error, per coordinate."""
    return (est.mean(0) - exact) / (est.std(0) / est.shape[0] ** 0.5)


def _signals(cls) -> list[str]:
    fixed = getattr(cls, "learning_signal", None)
    if fixed is not None:
        return [fixed]
    return ["reconstruction", "elbo"] if cls.takes_learning_signal else ["reconstruction"]


def _enumeration(cls, extra: dict, replicas: int, seed: int) -> list[CaseResult]:
    cases = []
    for signal in _signals(cls):
        options = {**extra, "learning_signal": signal}
        model, x_rep, x, logits = enumerable_model(cls, replicas, options, prior="learned")
        model.eval()
        exact = exact_gradient(model, x, logits)
        est = logit_estimates(model, x_rep, seed, replicas)
        z = z_scores(est, exact)
        bias = est.mean(0) - exact
        cases.append(CaseResult(
            signal=signal,
            z=[float(v) for v in z.flatten()],
            bias=[float(v) for v in bias.flatten()],
            exact=[float(v) for v in exact.flatten()],
            bias_norm=float(bias.norm()),
            relative_bias=float(bias.norm() / exact.norm()),
            noise_norm=float((est.var(0).sum() / replicas).sqrt()),
        ))  # fmt: skip
    return cases


def _check_contract(cls, options: ModelOptions, device: torch.device) -> None:
    def fail(msg):
        raise EstimatorCheckFailed(
            f"{cls.__name__}: shape/device/dtype contract on {device}: {msg}"
        )

    relaxed = bool(getattr(cls, "relaxed_inputs", False))
    for dtype, lead in itertools.product((torch.float32, torch.float64), ((), (3,))):
        est = _made(cls, options, 4).to(device=device, dtype=dtype)
        # training mode updates state, which is per replica ([S, 1, *P]) only in a stacked
        # model (checked by the replica equality): with a leading axis, evaluation mode
        est.train(not lead)
        batch, n = 5, 4
        gen = torch.Generator().manual_seed(0)
        logits = torch.randn(*lead, batch, n, generator=gen, dtype=dtype).to(device)
        logits.requires_grad_()
        weight = torch.randn(n, 7, generator=gen, dtype=dtype).to(device)
        rows = []

        def f(bits, lead=lead, logits=logits, weight=weight, rows=rows, n=n):
            if bits.shape[-2:] != logits.shape[-2:] or bits.dim() < logits.dim():
                fail(f"f got bits of shape {tuple(bits.shape)} for logits "
                     f"{tuple(logits.shape)} (want [..., B, n])")  # fmt: skip
            if tuple(bits.shape[bits.dim() - logits.dim():-2]) != lead:
                fail(f"f got bits {tuple(bits.shape)}: the leading axes of the logits "
                     f"{lead} must come last before [B, n]")  # fmt: skip
            if bits.dtype != logits.dtype or bits.device != logits.device:
                fail(f"f got bits of {bits.dtype} on {bits.device}")
            hard = bits.detach()  # straight-through: b + p - p.detach(), b up to round-off
            if relaxed:  # a relaxation's soft bits (relax): in [0, 1]
                if not torch.all((hard >= 0) & (hard <= 1)):
                    fail("f got soft bits outside [0, 1]")
            elif not torch.all(torch.minimum(hard.abs(), (1 - hard).abs()) <= 1e-5):
                fail("f got bits whose values are not all 0 or 1")
            rows.append(bits.numel() // n)
            return -torch.tanh(bits @ weight).square().sum(-1)  # [..., B]

        out = est(logits, f, gen)
        if not (isinstance(out, tuple) and len(out) == 2):
            fail("forward must return (surrogate, value)")
        surrogate, value = out
        want = (*lead, batch)
        for what, t in (("surrogate", surrogate), ("value", value)):
            if tuple(t.shape) != want:
                fail(f"{what} has shape {tuple(t.shape)}, want {want}")
            if t.dtype != dtype or t.device != logits.device:
                fail(f"{what} is {t.dtype} on {t.device}, want {dtype} on {logits.device}")
        if value.requires_grad:
            fail("value must be detached")
        if not surrogate.requires_grad:
            fail("surrogate has no gradient")
        tol = 1e-5 if dtype == torch.float32 else 1e-10
        if not torch.allclose(surrogate.detach(), value, rtol=tol, atol=tol):
            fail("surrogate's value must equal value (score terms enter with value 0)")
        per_image = sum(rows) / math.prod(want)
        if per_image != est.samples_per_step:
            fail(f"f evaluated {per_image:g} codes per image, samples_per_step says "
                 f"{est.samples_per_step}")  # fmt: skip
        (grad,) = torch.autograd.grad(surrogate.sum(), logits)
        if grad.shape != logits.shape or not torch.isfinite(grad).all():
            fail("the gradient w.r.t. the logits is not finite or has the wrong shape")


def _signal_for_models(cls) -> str:
    return _signals(cls)[-1]  # "elbo" where the class takes it: the prior's path is used too


def _models(cls, extra: dict, seeds) -> list:
    options = _options({**extra, "learning_signal": _signal_for_models(cls)})
    models = []
    for seed in seeds:
        model = _build("bernoulli-sfe", "learned", seed)
        with torch.no_grad():
            model.prior_module.param.copy_(torch.tensor(LEARNED_PRIOR, dtype=torch.float64))
        model.family = _family_for(cls, options)
        model.estimator = model.family.make_estimator().double()
        models.append(model)
    return models


def _batch(seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1000 + seed)
    return (torch.rand(6, DATA_DIM, generator=gen, dtype=torch.float64) < 0.5).double()


def _check_replicas(cls, extra: dict) -> None:
    from binaryvae.models.replicas import (
        ReplicaGenerator,
        replica_layouts,
        stack_models,
        unstack_state,
    )

    seeds = [3, 0, 7]
    singles = _models(cls, extra, seeds)
    stacked = stack_models(_models(cls, extra, seeds))
    for model in (*singles, stacked):
        model.train()
    for m, seed in zip(singles, seeds, strict=True):
        gen = torch.Generator().manual_seed(100 + seed)
        m.loss(_batch(seed), generator=gen).surrogate.backward()
    gen = ReplicaGenerator([torch.Generator().manual_seed(100 + s) for s in seeds])
    stacked.loss(torch.stack([_batch(s) for s in seeds]), generator=gen).surrogate.backward()
    layouts = replica_layouts(stacked)
    grads = {name: p.grad for name, p in stacked.named_parameters()}
    for r, model in enumerate(singles):
        mine = unstack_state(grads, r, layouts, len(seeds))
        state = unstack_state(stacked.state_dict(), r, layouts, len(seeds))
        for name, p in model.named_parameters():
            scale = p.grad.abs().max().clamp_min(1e-12)
            if not (mine[name] - p.grad).abs().max() <= 1e-9 * scale:
                raise EstimatorCheckFailed(
                    f"{cls.__name__}: replica equality: replica {r}'s gradient of {name} differs "
                    "from its plain model's"
                )
        for key, value in model.state_dict().items():
            if not torch.allclose(state[key], value, rtol=1e-9, atol=1e-12):
                raise EstimatorCheckFailed(
                    f"{cls.__name__}: replica equality: replica {r}'s {key} differs from its "
                    "plain model's"
                )


def _check_resume(cls, extra: dict) -> None:
    first, fresh = _models(cls, extra, [5, 5])
    first.train()
    fresh.train()
    for step in range(3):
        first.loss(_batch(step), generator=torch.Generator().manual_seed(step))
    fresh.load_state_dict(first.state_dict())
    outs = []
    for model in (first, fresh):
        model.zero_grad()
        terms = model.loss(_batch(9), generator=torch.Generator().manual_seed(9))
        terms.surrogate.backward()
        outs.append((terms, {n: p.grad.clone() for n, p in model.named_parameters()},
                     model.state_dict()))  # fmt: skip
    (ta, ga, sa), (tb, gb, sb) = outs
    same = torch.equal(ta.elbo, tb.elbo) and all(torch.equal(ga[k], gb[k]) for k in ga)
    same = same and all(torch.equal(sa[k], sb[k]) for k in sa)
    if not same:
        raise EstimatorCheckFailed(
            f"{cls.__name__}: resume equality: the same state and generator gave another "
            "estimate (or state)"
        )


def check_estimator(cls: type[nn.Module], extra: dict | None = None, *,
                    replicas: int = REPLICAS, seed: int = 11,
                    devices=None) -> EstimatorReport:  # fmt: skip
    """Run the library's checks (module docstring) on the estimator class ``cls``, built with
    ``cls.from_options(ModelOptions.from_extra(extra))`` (e.g. ``{"samples": 4}``).
    The contract is checked on each of ``devices`` (default: the CPU, and CUDA where there is
    one; the noise comes from a CPU generator, as in training); the rest runs on the CPU.

    Raises `EstimatorCheckFailed` naming the first failed check: a class claiming
    ``unbiased = True`` whose enumeration |z| reaches 4.5, a broken contract, replica or resume
    inequality. Returns the `EstimatorReport` (the bias of a class with ``unbiased = False``).
    """
    name = getattr(cls, "__name__", repr(cls))
    try:
        _check_class(name, cls)
    except Exception as e:  # noqa: BLE001 - the registry's message, as a failed check
        raise EstimatorCheckFailed(f"{name}: not an estimator class: {e}") from None
    extra = dict(extra or {})
    options = _options(extra)
    report = EstimatorReport(name=name, unbiased=bool(cls.unbiased))
    if devices is None:
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        _check_contract(cls, options, torch.device(device))
    report.checks.append("contract")
    report.cases = _enumeration(cls, extra, replicas, seed)
    if cls.unbiased:
        for case in report.cases:
            if case.z_max >= Z_MAX:
                raise EstimatorCheckFailed(
                    f"{name} claims unbiased = True but its mean estimate misses the exact "
                    f"gradient (learning signal {case.signal}, learned prior): max |z| = "
                    f"{case.z_max:.1f} >= {Z_MAX} over {len(case.z)} coordinates, relative "
                    f"bias {case.relative_bias:.3g}"
                )
        report.checks.append("unbiased")
    else:
        report.checks.append("bias measured")
    _check_replicas(cls, extra)
    report.checks.append("replicas")
    _check_resume(cls, extra)
    report.checks.append("resume")
    return report
