"""Independent numpy/scipy references for the distribution tests (no binaryvae code here)."""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy.integrate import IntegrationWarning, quad
from scipy.special import expit


def logistic_pdf(z, loc=0.0, scale=1.0):
    x = abs((z - loc) / scale)
    return math.exp(-x) / (1.0 + math.exp(-x)) ** 2 / scale


def step_pdf(z, alpha):
    """Eq. 5.4."""
    return ((2.0 - alpha) if z <= 0 else alpha) * logistic_pdf(z)


def smooth_pdf(z, alpha, beta):
    """Eq. 5.8."""
    return logistic_pdf(z) * ((2.0 - alpha) * expit(-beta * z) + alpha * expit(beta * z))


def breakpoints(beta=None, extra=()):
    pts = [0.0, *extra]
    if beta is not None:
        pts += [s * k / beta for k in (0.3, 1.0, 3.0) for s in (-1, 1)]
    return sorted(set(pts))


def integrate(f, lo=-np.inf, hi=np.inf, points=()):
    """quad over (lo, hi), split at the given points so steps and steep parts are resolved."""
    pts = [p for p in sorted(points) if lo < p < hi]
    # finite ends 80 units beyond the last point: the tails' mass is below e^-80 relatively
    finite = [p for p in (*pts, lo, hi) if np.isfinite(p)] or [0.0]
    lo = min(finite) - 80.0 if lo == -np.inf else lo
    hi = max(finite) + 80.0 if hi == np.inf else hi
    edges = [lo, *pts, hi]
    # epsabs = 0 keeps tiny tail integrals relatively accurate; quad then warns about roundoff
    # on integrals whose value is 0 by symmetry (means), where its absolute error is ~1e-17
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IntegrationWarning)
        return sum(
            quad(f, a, b, epsabs=0.0, epsrel=1e-12, limit=200)[0]
            for a, b in zip(edges[:-1], edges[1:], strict=True)
        )
