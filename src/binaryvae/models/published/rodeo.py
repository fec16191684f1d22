"""RODEO: REINFORCE leave-one-out with control variates from a discrete Stein operator.

Shi, Zhou, Hwang, Titsias & Mackey (2022), "Gradient Estimation with Discrete Stein Operators",
NeurIPS (arXiv 2202.09497): section 2 (Stein operators of Markov chains), section 3 (the
estimator), with the Double CV of Titsias & Shi (2022). The form here is the authors' code
(thjashin/rodeo, ``discrete_stein_avg`` at K = 2 and ``discrete_stein_output_avg`` at K > 2,
which coincide at K = 2); only the abstract of the paper was at hand, so the paper's equation
numbers are not quoted.

**The Stein operator.** For a q-reversible Markov kernel M, (A h)(x) = sum_y M(x, y) (h(y) -
h(x)) has E_q[(A h)(x)] = 0 for every h. With q(b) = prod_i Bernoulli(b_i; theta_i), theta =
sigmoid(a), and the Gibbs kernel (pick a bit i uniformly, redraw it from q_i), the neighbours
of x are its one-bit flips x^(i) and

    (A h)(x) = 1/n sum_i w_i(x) [h(x^(i)) - h(x)],   w_i(x) = q_i(1 - x_i)        (Gibbs)

(n extra evaluations of h, none of f). A vector-valued H gives (A H)(x) likewise.

**The estimator.** Draw b_1..b_K iid ~ q (K = ``samples``, >= 2). For each k a surrogate h_k,
built from the *other* samples only, approximates f near them: with G_j = grad_b f(b_j) (the
gradient of f w.r.t. its input at the hard sample; one backward pass, no new evaluation of f),

    h_k(y) = 1/(K-1) sum_{j != k} N_rho(G_j . (y - b_j), f(b_j))  in R^2,

N_rho a small network (two scalar inputs, ``rodeo_hidden`` LeakyReLU(0.3) units, two outputs;
100 units in the reference). Its first output is the scalar h_k^0, its second scales the
score, H_k(y) = h_k^1(y) (y - theta). Then

    f~_j = f(b_j) + alpha (A h_j^0)(b_j)                 (the Double CV on f, Titsias & Shi)
    g = 1/K sum_k [ (f(b_k) - 1/(K-1) sum_{j != k} f~_j) (b_k - theta) + beta (A H_k)(b_k) ].

Unbiased for grad_a E_q[f(b)] whatever (alpha, beta, rho): (A H_k)(b_k) has mean 0 given the
other samples (H_k does not depend on b_k), and so has (A h_j^0)(b_j) given all but b_j, which
makes the baseline of sample k uncorrelated with its score b_k - theta. alpha = beta = 0 at the
start (REINFORCE-LOO exactly, as the reference initialises them).

phi = (alpha, beta, rho) is trained to minimise the variance: the gradient of the batch mean
of ||g||^2 is injected into phi (a term of value 0 in the surrogate, in training mode), as
`binaryvae.models.published.relax` does; ``rodeo_lr`` gives phi its own Adam group (None: the
run's lr). The decoder and prior get 1/K sum_k grad f(b_k). K decoder evaluations per image
(one pass on ``[K, ..., B, n]``) and one backward pass to the decoder's input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from binaryvae.config import ModelOptions
from binaryvae.distributions import draw
from binaryvae.errors import BadInput
from binaryvae.models.published._samples import sample_count
from binaryvae.models.registry import register_estimator

__all__ = ["RODEO", "gibbs_stein", "others"]


def gibbs_stein(h_flip: torch.Tensor, h_x: torch.Tensor, x: torch.Tensor,
                theta: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """(A h)(x) of the Gibbs Stein operator (module docstring) from h at the flips
    ``h_flip [..., n]`` (h(x^(i)) in slot i) and at x ``h_x [...]``: ``[...]``."""
    w = theta * (1.0 - x) + (1.0 - theta) * x  # q_i(1 - x_i)
    return (w * (h_flip - h_x.unsqueeze(-1))).mean(-1)


def others(k: int, device) -> torch.Tensor:
    """For each sample k the indices j != k ``[K, K - 1]``: h_k reads the other samples only
    (what makes its control variates mean zero)."""
    j = torch.arange(k, device=device).expand(k, k)
    return j[~torch.eye(k, dtype=torch.bool, device=device)].reshape(k, k - 1)


class RODEO(nn.Module):
    """RODEO for Bernoulli latents (module docstring); unbiased for grad E_q[f(b)]."""

    unbiased, takes_learning_signal = True, True
    takes_options = ("samples", "rodeo_hidden", "rodeo_lr")

    def __init__(self, samples: int = 2, hidden: int = 100, lr: float | None = None):
        super().__init__()
        samples = sample_count("rodeo", samples)
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise BadInput(f"rodeo needs rodeo_hidden >= 1, got {hidden!r}")
        if lr is not None and not lr > 0:
            raise BadInput(f"rodeo_lr must be positive, got {lr!r}")
        self.samples, self.own_lr = int(samples), lr
        # N_rho: two scalar inputs -> hidden -> two outputs, initialised as nn.Linear is. The
        # shapes broadcast against a replica's [B, H] ([S, 1, *P] against [S, B, H] stacked)
        first, second = nn.Linear(2, hidden), nn.Linear(hidden, 2)
        self.w_in = nn.Parameter(first.weight.detach().t().contiguous())  # [2, H]
        self.b_in = nn.Parameter(first.bias.detach().clone())  # [H]
        self.w_out = nn.Parameter(second.weight.detach().clone())  # [2, H]
        self.b_out = nn.Parameter(second.bias.detach().clone()[:, None])  # [2, 1]
        self.alpha = nn.Parameter(torch.zeros(()))  # [] against [B]
        self.beta = nn.Parameter(torch.zeros(1))  # [1] against [B, n]

    @classmethod
    def from_options(cls, o: ModelOptions) -> RODEO:
        return cls(o.samples if o.samples is not None else 2, o.rodeo_hidden, o.rodeo_lr)

    @property
    def samples_per_step(self) -> int:
        return self.samples

    def _network(self, lin: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """N_rho(lin, value) for inputs ``[..., S?, B]`` (the replica axis, if any, before B;
        ``value`` broadcastable to ``lin``): its two outputs, each of ``lin``'s shape."""
        w_in = self.w_in if self.w_in.dim() == 2 else self.w_in.squeeze(1)  # [(S,) 2, H]
        if w_in.dim() == 3:  # stacked: [S, 2, H] -> rows [S, 1, H] against [..., S, B, H]
            w_lin, w_val = w_in[:, :1], w_in[:, 1:2]
        else:
            w_lin, w_val = w_in[0], w_in[1]
        w_out = self.w_out if self.w_out.dim() == 2 else self.w_out.squeeze(1)  # [(S,) 2, H]
        b_out = self.b_out[..., 0] if self.b_out.dim() == 2 else self.b_out[:, 0, :, 0]
        b_out = b_out if b_out.dim() == 1 else b_out.unsqueeze(1)  # [2] or [S, 1, 2]
        # without autograd (evaluation) the hidden units go in blocks: the [..., H] layer of
        # all K (K - 1) (n + 1) inputs is never held at once
        width = w_lin.shape[-1]
        step = width if torch.is_grad_enabled() else 16
        out = None
        for i in range(0, width, step):
            cut = slice(i, i + step)
            shift = value.unsqueeze(-1) * w_val[..., cut] + self.b_in[..., cut]  # per (k, j)
            h = F.leaky_relu(lin.unsqueeze(-1) * w_lin[..., cut] + shift, 0.3)  # [..., H']
            part = h @ w_out[..., cut].transpose(-1, -2)  # [..., 2]
            out = part if out is None else out + part
        out = out + b_out
        return out[..., 0], out[..., 1]

    def _phi(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def forward(self, logits: torch.Tensor, f, generator=None):
        from binaryvae.models.estimators import EstimatorOutput

        k = self.samples
        theta = torch.sigmoid(logits.detach())  # [..., B, n]
        u = draw(torch.rand, (k, *logits.shape), logits, generator)
        b = (u < theta).to(logits.dtype)  # [K, ..., B, n]
        with torch.enable_grad():
            bits = b.clone().requires_grad_(True)
            fb = f(bits)  # [K, ..., B]
            (grad_b,) = torch.autograd.grad(fb.sum(), bits, retain_graph=True)  # G_j
        fv, g = fb.detach(), grad_b.detach()
        # features of h_k at y in {b_k, b_k^(i)} from each other sample j: [K (k), K-1 (j), ...]
        idx = others(k, b.device)
        g_j, b_j, b_k = g[idx], b[idx], b.unsqueeze(1)
        at_x = (g_j * (b_k - b_j)).sum(-1)  # G_j.(b_k - b_j)
        at_flip = at_x.unsqueeze(-1) + g_j * (1.0 - 2.0 * b_k)  # G_j.(b_k^(i) - b_j)  [.., n]
        value = fv[idx]  # f(b_j)
        score = b - theta  # [K, ..., B, n]
        w = theta * (1.0 - b) + (1.0 - theta) * b  # Gibbs weights q_i(1 - b_i)

        def h(lin, val):  # h_k = mean over j != k of N_rho: two outputs [K, ...]
            return tuple(o.mean(1) for o in self._network(lin, val))

        learn = self.training and bool(self._phi())
        with torch.enable_grad() if learn else torch.no_grad():  # phi's graph when it learns
            h0_x, h1_x = h(at_x, value)  # [K, ..., B]
            flips = h(at_flip.movedim(-1, 2), value.unsqueeze(2))  # [K, n, ..., B] each
            h0_f, h1_f = (t.movedim(1, -1) for t in flips)  # [K, ..., B, n]
            # (A H_k)(b_k), H(y) = h^1(y) (y - theta): component d of
            # 1/n sum_i w_i [H(b^(i)) - H(b)], the flip changing only component i
            stein_vec = score * (w * (h1_f - h1_x.unsqueeze(-1))).mean(-1, keepdim=True) \
                + w * h1_f * (1.0 - 2.0 * b) / b.shape[-1]  # fmt: skip
            f_cv = fv + self.alpha * gibbs_stein(h0_f, h0_x, b, theta)  # f~_j  [K, ..., B]
            baseline = (f_cv.sum(0, keepdim=True) - f_cv) / (k - 1)  # mean_{j != k} f~_j
            grad = ((fv - baseline).unsqueeze(-1) * score + self.beta * stein_vec).mean(0)
        surrogate = fb.mean(0) + (grad.detach() * (logits - logits.detach())).sum(-1)
        if learn:  # phi descends grad_phi E ||g||^2 (batch mean)
            params = self._phi()
            grads = torch.autograd.grad(grad.square().sum() / logits.shape[-2], params,
                                        allow_unused=True)  # fmt: skip
            surrogate = surrogate - self._injected(params, grads)
        return EstimatorOutput(surrogate, fv.mean(0))

    _PLAIN_DIMS = {"w_in": 2, "b_in": 1, "w_out": 2, "b_out": 2, "alpha": 0, "beta": 1}

    def _injected(self, params, grads) -> torch.Tensor:
        """sum_j grads_j (phi_j - stop_grad(phi_j)) per replica (relax's `_injected`)."""
        names = {id(p): n for n, p in self.named_parameters()}
        total = torch.zeros((), dtype=params[0].dtype, device=params[0].device)
        for param, grad in zip(params, grads, strict=True):
            if grad is None:
                continue
            plain = self._PLAIN_DIMS[names[id(param)]]
            term = grad.detach() * (param - param.detach())
            total = total + (term.sum(tuple(range(term.dim() - plain, term.dim())))
                             if plain else term)  # fmt: skip
        return total


register_estimator("rodeo", RODEO)
