"""RELAX: a learned control variate on the concrete relaxation, trained to minimise the variance.

Grathwohl, Choi, Wu, Roeder & Duvenaud (2018), "Backpropagation through the Void: Optimizing
Control Variates for Black-Box Gradient Estimation", ICLR, section 3.3 (discrete variables) and
Algorithm 2. For b = H(z), z = a + logit(u') (u' ~ U(0, 1), a the logits, H the step), z~ a
sample of z given b (conditional reparameterisation), and a differentiable surrogate c_phi,

    g = [f(b) - c_phi(z~)] grad_a log p(b) + grad_a c_phi(z) - grad_a c_phi(z~)   (eq. 8 [*])

is unbiased for grad_a E[f(b)] whatever c_phi (section 3.3); grad_a c_phi(z~) differentiates
through the conditional sample's dependence on a. Here b = 1[u < sigma(a)] as every estimator
of binaryvae draws it, so z = a - logit(u) (z > 0 iff b = 1), and z~ = a - logit(u~) with
u~ = v sigma(a) if b = 1, sigma(a) + v (1 - sigma(a)) if b = 0, v ~ U(0, 1) (u given b; the
section's z~ ~ p(z | b)); grad_a log p(b) = b - sigma(a). The surrogate is

    c_phi(z) = eta [ f(sigma(z / lambda)) + r_rho(z) ]                       (section 3.3 [*])

the concrete relaxation of f at temperature lambda plus a free-form network r_rho (an MLP with
one hidden layer of ``relax_hidden`` LeakyReLU(0.3) units, 137 as in the DisARM/ARMS papers'
reference code, reading z and, standing in for the image x that their network reads, the
logits a, held constant), scaled by REBAR's eta (Tucker et al. 2017; the reference code learns
it too). phi = (log lambda, eta, rho), lambda = 0.1 and eta = 1 at the start (the reference's).

phi is trained to minimise the variance of g (Algorithm 2): since E[g] does not depend on phi,
grad_phi Var(g) = grad_phi E[g^2], estimated by grad_phi of the single-sample ||g||^2 (summed
over the bits, averaged over the batch's images; the variance of the logits' estimate, which is
what the enumeration test measures, rather than of the encoder parameters' gradient). The
estimator injects that gradient into its own parameters only (a term of value 0 in the
surrogate, in training mode), so the run's optimizer steps phi along it: phi lives in the model
(checkpoints, replicas and resume carry it), and ``relax_lr`` gives phi its own Adam group at
that learning rate (None: the run's lr), as ``prior_sgd_lr`` gives the prior its own group. The
decoder and prior get grad f(b) alone (f at the hard sample). Three decoder evaluations per
image (b, sigma(z / lambda), sigma(z~ / lambda)), one pass on ``[3, ..., B, n]``; in training
mode a second-order backward through the two relaxed rows for grad_phi E[g^2].

[*] The equation and section numbers are those recalled for the ICLR version; the paper's text
was not at hand here to check them. The form follows the DisARM/ARMS authors' RELAX
(alekdimi/arms, ``get_relax_parameters``), read to check the conditional sample and the
variance objective.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from binaryvae.config import ModelOptions
from binaryvae.distributions import open_uniform
from binaryvae.errors import BadInput
from binaryvae.models.registry import register_estimator

__all__ = ["RELAX", "conditional_logistic"]


def conditional_logistic(a: torch.Tensor, b: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """z~ = a - logit(u~), u~ | b uniform on (0, sigma(a)) (b = 1) or (sigma(a), 1) (b = 0):
    a sample of z = a - logit(u) given 1[u < sigma(a)] = b, differentiable in a (v fixed)."""
    p = torch.sigmoid(a)
    one = a - torch.log(v) - F.logsigmoid(a) + torch.log1p(-v * p)  # u~ = v p
    zero = a - torch.log(p + v * (1.0 - p)) + torch.log1p(-v) + F.logsigmoid(-a)
    return torch.where(b > 0, one, zero)


class RELAX(nn.Module):
    """RELAX for Bernoulli latents (module docstring); unbiased for grad E_q[f(b)]."""

    unbiased, takes_learning_signal, samples_per_step = True, True, 3
    relaxed_inputs = True  # f is also called on soft bits in (0, 1) (the concrete relaxation)
    takes_options = ("relax_hidden", "relax_lr")

    def __init__(self, hidden: int = 137, lr: float | None = None):
        super().__init__()
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 0:
            raise BadInput(f"relax needs relax_hidden >= 0 (0: no network), got {hidden!r}")
        if lr is not None and not lr > 0:
            raise BadInput(f"relax_lr must be positive, got {lr!r}")
        self.hidden, self.own_lr = int(hidden), lr
        self.latent_dim: int | None = None
        # shapes broadcast against a replica's [B, n] (lambda) and [B] (eta, the output bias)
        # as the stacked [S, 1, *P] do against [S, B, n] (binaryvae.models.replicas)
        self.log_temperature = nn.Parameter(torch.full((1,), math.log(0.1)))  # log lambda
        self.scale = nn.Parameter(torch.ones(()))  # eta

    @classmethod
    def from_options(cls, o: ModelOptions) -> RELAX:
        return cls(o.relax_hidden, o.relax_lr)

    def setup(self, latent_dim: int) -> None:
        """Create r_rho for ``latent_dim`` bits (inputs z and a: 2n -> hidden -> 1), initialised
        as torch's ``nn.Linear`` is, in the dtype and on the device of the other parameters."""
        self.latent_dim = int(latent_dim)
        if not self.hidden:
            return
        like = {"dtype": self.scale.dtype, "device": self.scale.device}
        first = nn.Linear(2 * latent_dim, self.hidden, **like)
        second = nn.Linear(self.hidden, 1, **like)
        self.w1 = nn.Parameter(first.weight.detach().t().contiguous())  # [2n, H]
        self.b1 = nn.Parameter(first.bias.detach().clone())  # [H]
        self.w2 = nn.Parameter(second.weight.detach()[0].clone())  # [H]
        self.b2 = nn.Parameter(second.bias.detach()[0].clone())  # []

    def _network(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """r_rho(z) [..., B] from z [..., B, n] and the logits a (constant)."""
        if not self.hidden:
            return z.new_zeros(z.shape[:-1])
        if self.latent_dim is None:
            raise BadInput("relax's network is not set up: call setup(latent_dim) first")
        w1 = self.w1 if self.w1.dim() == 2 else self.w1.squeeze(1)  # [2n, H] or [S, 2n, H]
        h = torch.cat([z, a.expand_as(z)], -1) @ w1  # [..., B, H]
        h = F.leaky_relu(h + self.b1, 0.3)
        return (h * self.w2).sum(-1) + self.b2  # [..., B]

    def _phi(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def forward(self, logits: torch.Tensor, f, generator=None):
        from binaryvae.models.estimators import EstimatorOutput

        p = torch.sigmoid(logits.detach())  # [..., B, n]
        u = open_uniform(logits.shape, logits, generator)
        b = (u < p).to(logits.dtype)  # [..., B, n], b ~ q
        v = open_uniform(logits.shape, logits, generator)
        learn = self.training and bool(self._phi())
        with torch.enable_grad():
            a = logits.detach().requires_grad_(True)  # the logits, for grad_a c_phi
            z = a + torch.log1p(-u) - torch.log(u)  # a - logit(u): z > 0 iff b = 1
            zt = conditional_logistic(a, b, v)  # z~ ~ p(z | b)
            lam = self.log_temperature.exp()
            soft = torch.sigmoid(torch.stack([z, zt]) / lam)  # [2, ..., B, n] sigma(z / lambda)
            fs = f(torch.cat([b.unsqueeze(0), soft]))  # [3, ..., B]: f(b), f(soft z), f(soft z~)
            fb = fs[0]
            c = self.scale * (fs[1:] + self._network(torch.stack([z, zt]), a.detach()))  # eq. 9
            (dc,) = torch.autograd.grad((c[0] - c[1]).sum(), a, create_graph=learn,
                                        retain_graph=True)  # fmt: skip
            # eq. 8: [f(b) - c(z~)] (b - sigma(a)) + grad c(z) - grad c(z~)   [..., B, n]
            g = (fb.detach() - c[1]).unsqueeze(-1) * (b - p) + dc
        surrogate = fb + (g.detach() * (logits - logits.detach())).sum(-1)  # [..., B]
        if learn:  # Algorithm 2: phi descends grad_phi E ||g||^2 (mean over the batch)
            params = self._phi()
            batch = logits.shape[-2]
            grads = torch.autograd.grad(g.square().sum() / batch, params, retain_graph=True)
            surrogate = surrogate - self._injected(params, grads)
        return EstimatorOutput(surrogate, fb.detach())

    def _injected(self, params, grads) -> torch.Tensor:
        """sum_j grads_j (phi_j - stop_grad(phi_j)) per replica: value 0, gradient ``grads`` for
        phi alone ([] for a plain model, [S, 1] for S stacked replicas: a plain parameter of
        dims P is [S, 1, *P] there, so its own dims are summed and the replica's kept)."""
        total = None
        for param, grad in zip(params, grads, strict=True):
            plain = self._plain_dims(param)
            term = grad.detach() * (param - param.detach())
            term = term.sum(tuple(range(term.dim() - plain, term.dim()))) if plain else term
            total = term if total is None else total + term
        return total

    def _plain_dims(self, param: torch.Tensor) -> int:
        for name, p in self.named_parameters():
            if p is param:
                return {"log_temperature": 1, "scale": 0, "w1": 2, "b1": 1, "w2": 1,
                        "b2": 0}[name]  # fmt: skip
        raise KeyError("not a parameter of this estimator")


register_estimator("relax", RELAX)
