"""The DisARM paper's toy, exactly: the variance of each unbiased estimator's gradient.

Dong, Mnih & Tucker (2020), section 6.1: maximise E_{b ~ Bernoulli(sigmoid(theta))}[sum_i
(b_i - p0)^2] with p0 in {0.49, 0.499, 0.4999}; the exact gradient is p_i (1 - p_i) (1 - 2 p0),
tiny next to f, which is what makes the toy hard. Here n = 3 and theta = (0, 0.5, -1).

For each estimator the moments E[g_i^k], k = 1..4, of its gradient estimate are computed
*exactly*, independently of the library's classes:

- score function (no baseline) and REINFORCE-LOO (K = 2, 3): enumeration of all codes (all
  (2^n)^K K-tuples);
- ARMS (Dimitriev & Zhou 2021, K = 2, 3, 4): the K bits of a coordinate take each pattern with
  the probability of the Dirichlet copula's uniforms falling below q = min(p, 1 - p), exact by
  uniform spacings and inclusion-exclusion (`_pattern_probs`);
- multi-sample DisARM (K/2 independent pairs, K = 4, 6): the binomial convolution of one
  pair's exact moments (`exact_disarm_pairs`);
- ARM and DisARM: the antithetic pair b = 1[u < p], b~ = 1[u > 1 - p] is constant on each of
  three intervals of every u_j (cut at min(p, 1 - p) and max(p, 1 - p)); summing over the 3^n
  cells with their lengths is exact, with ARM's weight (u_i - 1/2)^k integrated over u_i's
  interval in closed form.

Tests: the library's estimators (`binaryvae.models.estimators`) on 200,000 draws match the exact
mean and variance (5 standard errors, the variance's from the exact fourth moment); the
published orderings hold (DisARM's variance below ARM's in every coordinate, Dong et al.;
ARMS below LOO and below DisARM with K/2 pairs at equal K, Dimitriev & Zhou); ARMS at K = 2 is
DisARM, moment for moment; and the exact variances are pinned as regression numbers. RELAX and
RODEO (learned control variates, no closed-form moments) are held against the exact mean by
100,000 draws.
"""

from __future__ import annotations

import functools
import itertools
import math

import pytest
import torch

from binaryvae.models.estimators import ARM, DisARM, ReinforceLOO, ScoreFunction
from binaryvae.models.published import ARMS

THETA = (0.0, 0.5, -1.0)
P0S = (0.49, 0.499, 0.4999)
N = len(THETA)
DRAWS = 200_000


def _f(bits: torch.Tensor, p0: float) -> torch.Tensor:
    return ((bits - p0) ** 2).sum(-1)


def _probs() -> list[float]:
    return [float(torch.sigmoid(torch.tensor(t, dtype=torch.float64))) for t in THETA]


def _exact_gradient(p0: float) -> torch.Tensor:
    p = torch.tensor(_probs(), dtype=torch.float64)
    return p * (1 - p) * (1 - 2 * p0)


# ------------------------------------------------------------------ exact moments [4, n]
def _codes():
    return list(itertools.product([0, 1], repeat=N))


def _mass(code, p) -> float:
    out = 1.0
    for b, pi in zip(code, p, strict=True):
        out *= pi if b else 1 - pi
    return out


def _fval(code, p0) -> float:
    return sum((b - p0) ** 2 for b in code)


def _moments_from(items) -> torch.Tensor:
    """items: (probability, g vector); returns [4, n] raw moments E[g^k], k = 1..4."""
    m = torch.zeros(4, N, dtype=torch.float64)
    for w, g in items:
        g = torch.tensor(g, dtype=torch.float64)
        for k in range(4):
            m[k] += w * g ** (k + 1)
    return m


@functools.cache
def exact_loo(p0: float, k: int) -> torch.Tensor:
    """REINFORCE-LOO with K samples (K = 1: the plain score function f(b) (b - p))."""
    p = _probs()
    items = []
    for codes in itertools.product(_codes(), repeat=k):
        w = 1.0
        for c in codes:
            w *= _mass(c, p)
        fs = [_fval(c, p0) for c in codes]
        mean = sum(fs) / k
        if k == 1:
            g = [fs[0] * (codes[0][i] - p[i]) for i in range(N)]
        else:
            g = [sum((fs[j] - mean) * (codes[j][i] - p[i]) for j in range(k)) / (k - 1)
                 for i in range(N)]  # fmt: skip
        items.append((w, g))
    return _moments_from(items)


def _cells(pi: float):
    """The three intervals of u (lo, hi) with the pair (b, b~) = (1[u < p], 1[u > 1 - p])."""
    a, c = min(pi, 1 - pi), max(pi, 1 - pi)
    out = []
    for lo, hi in ((0.0, a), (a, c), (c, 1.0)):
        mid = (lo + hi) / 2
        out.append((lo, hi, int(mid < pi), int(mid > 1 - pi)))
    return out


def _power_integral(lo: float, hi: float, k: int) -> float:
    """int_lo^hi (u - 1/2)^k du."""
    return ((hi - 0.5) ** (k + 1) - (lo - 0.5) ** (k + 1)) / (k + 1)


@functools.cache
def exact_antithetic(p0: float, which: str) -> torch.Tensor:
    """ARM (weight (f(b~) - f(b)) (u_i - 1/2)) or DisARM (Dong et al. section 3) moments."""
    p = _probs()
    m = torch.zeros(4, N, dtype=torch.float64)
    for cells in itertools.product(*[_cells(pi) for pi in p]):
        b = [c[2] for c in cells]
        bt = [c[3] for c in cells]
        lengths = [hi - lo for lo, hi, _, _ in cells]
        d = _fval(bt, p0) - _fval(b, p0)  # f(b~) - f(b)
        for i in range(N):
            rest = 1.0
            for j in range(N):
                if j != i:
                    rest *= lengths[j]
            lo, hi = cells[i][0], cells[i][1]
            for k in range(4):
                if which == "arm":
                    m[k, i] += rest * d ** (k + 1) * _power_integral(lo, hi, k + 1)
                else:
                    sig = max(p[i], 1 - p[i])  # sigmoid(|theta_i|)
                    g = -0.5 * d * (1 - 2 * bt[i]) * (b[i] != bt[i]) * sig
                    m[k, i] += rest * lengths[i] * g ** (k + 1)
    return m


@functools.cache
def exact_disarm_pairs(p0: float, pairs: int) -> torch.Tensor:
    """Multi-sample DisARM (K = 2 * pairs samples): the mean of ``pairs`` iid DisARM estimates.
    Per coordinate, the raw moments of a sum of independent terms are the binomial convolution
    E[(X + Y)^k] = sum_j C(k, j) E[X^j] E[Y^(k-j)]; the mean divides the k-th by pairs^k."""
    one = torch.cat([torch.ones(1, N, dtype=torch.float64), exact_antithetic(p0, "disarm")])
    total = one.clone()  # [5, n]: E[X^0..4] of the sum so far
    for _ in range(pairs - 1):
        total = torch.stack([
            sum(math.comb(k, j) * total[j] * one[k - j] for j in range(k + 1)) for k in range(5)
        ])  # fmt: skip
    scale = torch.tensor([float(pairs) ** k for k in range(1, 5)], dtype=torch.float64)
    return total[1:] / scale[:, None]


def _pattern_probs(q: float, k: int) -> dict[tuple[int, ...], float]:
    """P(exactly the samples in S have u_k < q) under the Dirichlet copula, for every pattern:
    u_k < q iff d_k > t = 1 - q^(1/(k-1)), and for a flat Dirichlet P(d_k > t for all k in T)
    = (1 - |T| t)_+^(k-1) (uniform spacings); inclusion-exclusion gives the exact patterns."""
    t = 1 - q ** (1 / (k - 1))

    def above(m: int) -> float:
        return max(1 - m * t, 0.0) ** (k - 1)

    out = {}
    for pattern in itertools.product([0, 1], repeat=k):
        s = sum(pattern)
        out[pattern] = sum(
            (-1) ** extra * _comb(k - s, extra) * above(s + extra) for extra in range(k - s + 1)
        )
    return out


def _comb(n: int, r: int) -> int:
    return math.comb(n, r)


@functools.cache
def exact_arms(p0: float, k: int) -> torch.Tensor:
    """ARMS (Dirichlet copula, K samples): the bits of coordinate i over the K samples follow
    `_pattern_probs` (complemented where theta_i >= 0), independently across coordinates."""
    p = _probs()
    per_coord = []
    for i, pi in enumerate(p):
        q = min(pi, 1 - pi)
        table = _pattern_probs(q, k)
        if THETA[i] >= 0:  # b = 1[u > q]: the complement of the event u < q
            table = {tuple(1 - v for v in pat): w for pat, w in table.items()}
        ratio = max(2 * q ** (1 / (k - 1)) - 1, 0.0) ** (k - 1) / q
        per_coord.append((table, (1 - q) / (1 - ratio)))
    items = []
    for combo in itertools.product(*[list(t.items()) for t, _ in per_coord]):
        w = 1.0
        for _, wi in combo:
            w *= wi
        codes = [tuple(combo[i][0][j] for i in range(N)) for j in range(k)]  # K codes
        fs = [_fval(c, p0) for c in codes]
        mean = sum(fs) / k
        g = [sum((fs[j] - mean) * (codes[j][i] - p[i]) for j in range(k)) / (k - 1)
             * per_coord[i][1] for i in range(N)]  # fmt: skip
        items.append((w, g))
    return _moments_from(items)


EXACT = {
    "sfe": lambda p0: exact_loo(p0, 1),
    "reinforce-loo": lambda p0: exact_loo(p0, 2),
    "reinforce-loo-3": lambda p0: exact_loo(p0, 3),
    "arm": lambda p0: exact_antithetic(p0, "arm"),
    "disarm": lambda p0: exact_antithetic(p0, "disarm"),
    "reinforce-loo-4": lambda p0: exact_loo(p0, 4),
    "arms-3": lambda p0: exact_arms(p0, 3),
    "arms-4": lambda p0: exact_arms(p0, 4),
    "disarm-4": lambda p0: exact_disarm_pairs(p0, 2),
    "disarm-6": lambda p0: exact_disarm_pairs(p0, 3),
}
ESTIMATOR = {
    "sfe": lambda: ScoreFunction(baseline=False),
    "reinforce-loo": lambda: ReinforceLOO(2),
    "reinforce-loo-3": lambda: ReinforceLOO(3),
    "arm": ARM,
    "disarm": DisARM,
    "reinforce-loo-4": lambda: ReinforceLOO(4),
    "arms-3": lambda: ARMS(3),
    "arms-4": lambda: ARMS(4),
    "disarm-4": lambda: DisARM(samples=4),
    "disarm-6": lambda: DisARM(samples=6),
}


def _variance(m: torch.Tensor) -> torch.Tensor:
    return m[1] - m[0] ** 2


@pytest.mark.parametrize("p0", P0S)
@pytest.mark.parametrize("name", list(EXACT))
def test_exact_moments_match_the_library_estimators_by_brute_force(name, p0):
    m = EXACT[name](p0)
    torch.testing.assert_close(m[0], _exact_gradient(p0), rtol=1e-9, atol=1e-15)  # unbiased
    est = ESTIMATOR[name]()
    est.eval()
    theta = torch.tensor([THETA] * DRAWS, dtype=torch.float64, requires_grad=True)
    out = est(theta, lambda bits: _f(bits, p0), torch.Generator().manual_seed(5))
    (g,) = torch.autograd.grad(out.surrogate.sum(), theta)  # [DRAWS, n] independent estimates
    var = _variance(m)
    mu4 = m[3] - 4 * m[0] * m[2] + 6 * m[0] ** 2 * m[1] - 3 * m[0] ** 4  # central 4th moment
    se_mean = (var / DRAWS).sqrt()
    se_var = ((mu4 - var**2) / DRAWS).sqrt()
    print(name, p0, "exact var", var.tolist(), "draws", g.var(0).tolist())
    assert ((g.mean(0) - m[0]).abs() < 5 * se_mean).all()
    assert ((g.var(0) - var).abs() < 5 * se_var).all()


@pytest.mark.parametrize("p0", P0S)
def test_disarm_has_lower_variance_than_arm_in_every_coordinate(p0):
    arm, disarm = (_variance(EXACT[n](p0)) for n in ("arm", "disarm"))
    assert (disarm < arm).all(), (disarm, arm)


# exact tr Var of each estimator at THETA (sum over the three coordinates), per p0: regression
# numbers from the enumeration above (any change to the estimators' definitions moves them)
PINNED = {
    "sfe": (0.3826394830714801, 0.3832911617955473, 0.3833966292402123),
    "reinforce-loo": (1.97056686700542e-04, 1.9705668670053406e-06, 1.970566867004983e-08),
    "reinforce-loo-3": (8.997226545674347e-05, 8.997226545673923e-07, 8.99722654567237e-09),
    "reinforce-loo-4": (5.7129484339987186e-05, 5.712948433998537e-07, 5.712948433997529e-09),
    "arm": (1.8653182488707123e-04, 1.8653182488706443e-06, 1.8653182488702978e-08),
    "disarm": (1.482195701245693e-04, 1.482195701245635e-06, 1.4821957012453636e-08),
    "arms-3": (6.642026866477377e-05, 6.64202686647704e-07, 6.642026866475911e-09),
    "arms-4": (4.363516122384133e-05, 4.363516122383957e-07, 4.363516122383244e-09),
    "disarm-4": (7.410978506228464e-05, 7.410978506228175e-07, 7.410978506226818e-09),
    "disarm-6": (4.940652337485643e-05, 4.940652337485451e-07, 4.940652337484544e-09),
}


@pytest.mark.parametrize("name", list(PINNED))
def test_exact_variances_are_pinned(name):
    got = [float(_variance(EXACT[name](p0)).sum()) for p0 in P0S]
    assert got == pytest.approx(list(PINNED[name]), rel=1e-9)


def test_the_differencing_estimators_scale_with_the_signal_gap_squared():
    """f(b) - f(b') is (1 - 2 p0) times an integer for any two codes, so the variance of every
    estimator built on differences of f (LOO, ARM, DisARM) is (1 - 2 p0)^2 times a constant,
    while the plain score function's is not: the toy's difficulty, exactly."""
    for name in ("reinforce-loo", "reinforce-loo-3", "arm", "disarm"):
        v = [float(_variance(EXACT[name](p0)).sum()) / (1 - 2 * p0) ** 2 for p0 in P0S]
        assert v[1] == pytest.approx(v[0], rel=1e-9) and v[2] == pytest.approx(v[0], rel=1e-6)
    sfe = [float(_variance(EXACT["sfe"](p0)).sum()) for p0 in P0S]
    assert sfe[2] > sfe[0] > 1e3 * float(_variance(EXACT["arm"](P0S[0])).sum())


def test_the_orderings_at_equal_and_unequal_cost():
    """Two decoder evaluations: DisARM < ARM < REINFORCE-LOO (K = 2); LOO with three
    evaluations beats both pairs here."""
    for p0 in P0S:
        v = {n: float(_variance(EXACT[n](p0)).sum()) for n in EXACT}
        assert v["disarm"] < v["arm"] < v["reinforce-loo"] < v["sfe"]
        assert v["reinforce-loo-3"] < v["disarm"]


def test_arms_with_two_samples_is_disarm_moment_for_moment():
    for p0 in P0S:
        torch.testing.assert_close(exact_arms(p0, 2), exact_antithetic(p0, "disarm"),
                                   rtol=1e-10, atol=1e-18)  # fmt: skip


@pytest.mark.parametrize("p0", P0S)
def test_arms_beats_loo_and_disarm_pairs_at_equal_samples(p0):
    """At K = 4 decoder evaluations: ARMS < REINFORCE-LOO < multi-sample DisARM with two
    independent pairs (``--samples 4``: the variance of their mean, half of one pair's, in
    every coordinate); at K = 3: ARMS < LOO."""
    v = {n: float(_variance(EXACT[n](p0)).sum()) for n in EXACT}
    one = _variance(EXACT["disarm"](p0))
    torch.testing.assert_close(_variance(EXACT["disarm-4"](p0)), one / 2, rtol=1e-9, atol=0)
    torch.testing.assert_close(_variance(EXACT["disarm-6"](p0)), one / 3, rtol=1e-9, atol=0)
    assert v["arms-4"] < v["reinforce-loo-4"] < v["disarm-4"]
    assert v["arms-3"] < v["reinforce-loo-3"]
    assert v["arms-4"] < v["arms-3"] < v["disarm"]


@pytest.mark.parametrize("rho", [-1.0, -0.5, -1 / 3, -0.1])
def test_the_gaussian_copula_diagonal_cdf_against_closed_forms(rho):
    """Phi_2(c, c; rho) of arms-normal (by quadrature) against the closed forms: at c = 0,
    1/4 + asin(rho) / (2 pi) (Sheppard); at rho = -1, max(2 Phi(c) - 1, 0); and everywhere
    rho = 0's Phi(c)^2 from above (negative correlation lowers it)."""
    from binaryvae.models.published.arms import diagonal_normal_cdf

    zero = torch.zeros((), dtype=torch.float64)
    want = 0.25 + math.asin(rho) / (2 * math.pi)
    assert float(diagonal_normal_cdf(zero, rho)) == pytest.approx(want, abs=1e-12)
    c = torch.tensor([-2.0, -0.7, -0.1], dtype=torch.float64)
    got = diagonal_normal_cdf(c, rho)
    phi = torch.special.ndtr(c)
    if rho == -1.0:
        torch.testing.assert_close(got, (2 * phi - 1).clamp_min(0), rtol=0, atol=1e-12)
    assert (got < phi.square()).all() and (got >= 0).all()


# ------------------------------------------------------------------ learned control variates
def _relax():
    from binaryvae.models.published import RELAX

    torch.manual_seed(0)
    est = RELAX(hidden=8).double()
    est.setup(N)
    return est


def _rodeo(k: int):
    from binaryvae.models.published import RODEO

    torch.manual_seed(0)
    est = RODEO(k, hidden=8).double()
    with torch.no_grad():  # the control variates on (alpha = beta = 0 is REINFORCE-LOO)
        est.alpha.fill_(0.5)
        est.beta.fill_(0.5)
    return est


LEARNED = {"relax": _relax, "rodeo-2": lambda: _rodeo(2), "rodeo-4": lambda: _rodeo(4)}


@pytest.mark.parametrize("p0", [P0S[0], P0S[2]])
@pytest.mark.parametrize("name", [
    "relax", "rodeo-2", pytest.param("rodeo-4", marks=pytest.mark.slow),
])  # fmt: skip
def test_learned_control_variates_match_the_exact_gradient_by_many_draws(name, p0):
    """RELAX (at its initial surrogate) and RODEO (alpha = beta = 0.5, a random network): their
    moments have no closed form here, so the mean of 100,000 draws is held against the exact
    gradient p (1 - p) (1 - 2 p0) within 5 standard errors of the draws' own spread."""
    est = LEARNED[name]()
    est.eval()
    draws = 100_000
    theta = torch.tensor([THETA] * draws, dtype=torch.float64, requires_grad=True)
    out = est(theta, lambda bits: _f(bits, p0), torch.Generator().manual_seed(7))
    (g,) = torch.autograd.grad(out.surrogate.sum(), theta)
    se = g.std(0) / draws**0.5
    print(name, p0, "draws var", g.var(0).tolist())
    assert ((g.mean(0) - _exact_gradient(p0)).abs() < 5 * se).all()
