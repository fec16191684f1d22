"""Fixed-node Gauss–Legendre quadrature for expectations under the Logistic(0, 1) law.

Every KL and entropy of this package without a closed form is an expectation
E_{l ~ Logistic(0,1)}[h(l)] = ∫_0^1 h(logit u) du. We split (0, 1) into panels at given
break points (given as z-values, so that both u = sigmoid(z) and 1 - u = sigmoid(-z) are exact)
and use an n-point Gauss–Legendre rule on each panel after the smoothing substitution
u = a + (b - a)·t³(6t² - 15t + 10), which flattens the logarithmic end-point singularities
of h(logit u) (h may grow like |l|): the error falls roughly like n^-6. The nodes are fixed,
so the result is a differentiable function of the parameters (autograd goes straight through).
"""

from __future__ import annotations

import functools
import math

import torch

__all__ = ["gauss_legendre", "gauss_legendre_01", "expect_under_logistic"]


@functools.lru_cache(maxsize=32)
def gauss_legendre(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes and weights of the n-point Gauss–Legendre rule on [-1, 1], float64 on the CPU.

    Golub & Welsch (1969): the nodes are the eigenvalues of the symmetric tridiagonal Jacobi
    matrix of the Legendre recurrence (off-diagonal k / sqrt(4 k^2 - 1)), the weights twice the
    squared first components of its eigenvectors.
    """
    k = torch.arange(1, n, dtype=torch.float64)
    off = k / torch.sqrt(4 * k * k - 1)
    nodes, vectors = torch.linalg.eigh(torch.diag(off, 1) + torch.diag(off, -1))
    return nodes, 2 * vectors[0] ** 2


def gauss_legendre_01(n: int, dtype: torch.dtype, device: torch.device):
    """Nodes and weights of the n-point Gauss–Legendre rule on [0, 1]."""
    x, w = gauss_legendre(n)
    nodes, weights = 0.5 * (x + 1.0), 0.5 * w
    return nodes.to(dtype=dtype, device=device), weights.to(dtype=dtype, device=device)


def expect_under_logistic(fn, breaks, n: int = 48, like: torch.Tensor | None = None):
    """E_{l ~ Logistic(0,1)}[fn(l)] by panel-wise Gauss–Legendre in u = sigmoid(l).

    Args:
        fn: maps l of shape [..., n] (the batch shape plus a trailing node axis) to values of the
            same shape; parameters inside must be unsqueezed with `[..., None]`.
        breaks: increasing list of z-values (floats or tensors broadcastable to the batch shape)
            splitting the real line; -inf and +inf are added at the ends. Put a break at every
            kink or steep transition of fn.
        n: nodes per panel.
        like: tensor giving dtype/device (defaults to the first tensor in `breaks`).
    Returns:
        tensor of the batch shape.
    """
    if like is None:
        like = next(b for b in breaks if isinstance(b, torch.Tensor))
    t, w = gauss_legendre_01(n, like.dtype, like.device)
    # smoothing substitution U(t) = t^3 (6t^2 - 15t + 10), U(1 - t) = 1 - U(t),
    # U'(t) = 30 t^2 (1 - t)^2
    s = 1 - t
    big_u = t**3 * (6 * t * t - 15 * t + 10)
    big_u_rev = s**3 * (6 * s * s - 15 * s + 10)
    du = 30 * t * t * s * s
    zs = [-math.inf, *breaks, math.inf]
    total = 0.0
    for lo, hi in zip(zs[:-1], zs[1:], strict=True):
        lo = torch.as_tensor(lo, dtype=like.dtype, device=like.device)[..., None]
        hi = torch.as_tensor(hi, dtype=like.dtype, device=like.device)[..., None]
        a, one_minus_b = torch.sigmoid(lo), torch.sigmoid(-hi)
        # b - a, from the side of 0 where the two sigmoids are not both close to 1
        width = torch.where(lo >= 0, torch.sigmoid(-lo) - one_minus_b, torch.sigmoid(hi) - a)
        # u and 1 - u of every node, each computed without cancellation
        u = a + width * big_u
        v = one_minus_b + width * big_u_rev
        l = torch.log(u) - torch.log(v)  # noqa: E741
        total = total + (fn(l) * (width * du * w)).sum(-1)
    return total
