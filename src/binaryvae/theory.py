"""Numbers and data behind the dissertation's theory (chapter 5): the toy model of section 5.1,
Table 5.1, the three smoothing approaches of section 5.4, and the curves of Figures 5.1, 5.3,
5.4, 5.7 and 5.8. Everything is float64 and deterministic; plots are drawn elsewhere
(`binaryvae.report`) from the numpy arrays returned here.

Findings (each checked against an independent computation in tests/test_theory.py):
- Toy model (5.1): the exact posterior p(z | x) for x ~ N(step(z), sigma^2), z ~ Logistic(0, 1)
  is exactly StepLogistic(logits = (x - 1/2) / sigma^2); at x = 1, sigma = 0.5: logits 2,
  alpha = 2 sigmoid(2) = 1.7616, P(z > 0 | x) = 0.8808. The best StepLogistic fit is that
  posterior, KL 0 (found again by numerical minimization). The best Logistic(mu, 1) fit has
  mu* = 1.1461, KL 0.13046 nats and P(z > 0) = 0.7588 (closed form of the KL in
  `kl_logistic_to_toy_posterior`): it puts 24% of its mass on z < 0 against the posterior's 12%.
- Table 5.1: KL(Logistic(mu,1) || Logistic(0,1)) = mu coth(mu/2) - 2 (closed form derived in
  `binaryvae.distributions.kl`): 0.16395 at mu = 1 and 8.00091 at mu = 10; the Bernoulli column
  is 0.11094 and 0.69265. All four dissertation values (0.16/0.11, 8.00/0.69) are these,
  correctly rounded to two decimals. For large |mu| the Logistic KL grows like |mu| - 2 while the
  Bernoulli KL saturates at log 2.
- Eq. 5.9 (smooth CDF): its derivative is eq. 5.8's density minus
  (1 - alpha) beta tanh(z/2) sigma(beta z) sigma(-beta z). It takes negative values on some
  z > 0 iff alpha < alpha_crit(beta) (mirrored: on z < 0 iff alpha > 2 - alpha_crit), with
  alpha_crit = 1 for beta < 1 (negative on a half-line), 1/2 at beta = 1, 0.2302 at beta = 2,
  0.1689 at beta = 10 (negative for alpha = 0.05 on 0.141 < z < 0.508), decreasing to 0.1665
  as beta -> inf (the interval shrinks like 1/beta). See `smooth_cdf_negative_regions`.
- Eq. 5.11 (smooth inverse CDF): log(u / (2 - alpha - u)) is undefined for u >= 2 - alpha
  (possible iff alpha > 1) and log((alpha + u - 1)/(1 - u)) for u <= 1 - alpha (iff alpha < 1),
  and sigma(.) * NaN is NaN, so a fraction |1 - alpha| of all uniforms gives no sample; only
  alpha = 1 (the Logistic(0, 1) itself) is fully defined, as the dissertation says.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy import optimize
from scipy.integrate import quad
from scipy.special import expit, log_expit, zeta

from binaryvae.data.toy import TOY_SIGMA, toy_posterior_logits
from binaryvae.distributions import (
    Logistic,
    SmoothStepLogistic,
    StepLogistic,
    bernoulli_kl_to_half,
    logistic_kl_equal_scale,
    smooth_step_contraction,
)

__all__ = [
    "TOY_SIGMA",
    "DISSERTATION_TABLE_5_1",
    "toy_posterior_logits",
    "toy_posterior",
    "toy_posterior_density",
    "toy_prob_positive",
    "kl_logistic_to_toy_posterior",
    "fit_logistic_to_toy",
    "fit_step_logistic_to_toy",
    "ToyFit",
    "table_5_1",
    "contraction_table",
    "smooth_cdf_eq_5_9",
    "smooth_cdf_eq_5_9_derivative",
    "smooth_cdf_negative_regions",
    "smooth_icdf_eq_5_11",
    "smooth_icdf_undefined_regions",
    "figure_5_1_data",
    "figure_5_3_data",
    "figure_5_4_data",
    "figure_5_7_data",
    "figure_5_8_data",
    "all_tables",
    "render_text",
    "write_tables",
]

# Table 5.1 as printed: mu -> (KL Logistic(mu, 1), KL Bernoulli(sigmoid(mu))), "Desmos" values
DISSERTATION_TABLE_5_1 = {0.0: (0.00, 0.00), 1.0: (0.16, 0.11), 10.0: (8.00, 0.69)}

F64 = torch.float64


def _t(v) -> torch.Tensor:
    return torch.as_tensor(v, dtype=F64)


# --- the toy model of section 5.1 -------------------------------------------------------------


def toy_posterior(x: float, sigma: float = TOY_SIGMA) -> StepLogistic:
    """The exact posterior: on z < 0 it is N(x; 0, s^2) g(z), on z > 0 N(x; 1, s^2) g(z), i.e. the
    Logistic(0, 1) with its halves rescaled: a StepLogistic (eq. 5.4) with these logits."""
    return StepLogistic(logits=_t(toy_posterior_logits(x, sigma)))


def toy_posterior_density(z, x: float, sigma: float = TOY_SIGMA) -> np.ndarray:
    """p(z | x) by Bayes' rule (eq. 5.1) directly: N(x; step(z), sigma^2) g(z) / p(x), with
    p(x) = (N(x; 0, sigma^2) + N(x; 1, sigma^2)) / 2 (each half of the prior has mass 1/2)."""
    z = np.asarray(z, dtype=np.float64)

    def normal(v, m):
        return np.exp(-0.5 * ((v - m) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))

    g = np.exp(log_expit(z) + log_expit(-z))
    like = np.where(z > 0, normal(x, 1.0), normal(x, 0.0))
    evidence = 0.5 * (normal(x, 0.0) + normal(x, 1.0))
    return like * g / evidence


def _toy_posterior_cdf(z, x: float, sigma: float = TOY_SIGMA) -> np.ndarray:
    return toy_posterior(x, sigma).cdf(_t(z)).numpy()


def toy_prob_positive(x: float, sigma: float = TOY_SIGMA) -> float:
    """P(z > 0 | x) = sigmoid((x - 1/2) / sigma^2)."""
    return float(expit(toy_posterior_logits(x, sigma)))


def kl_logistic_to_toy_posterior(mu: float, x: float = 1.0, sigma: float = TOY_SIGMA) -> float:
    """KL(Logistic(mu, 1) || p(z | x)) in closed form.

    With the posterior StepLogistic(y), y = (x - 1/2)/sigma^2:
    KL = KL(Logistic(mu,1) || Logistic(0,1)) - log 2
         - sigma(-mu) log sigma(-y) - sigma(mu) log sigma(y),
    since log p(z|x) = log g(z) + log 2 + log sigma(±y) on either side of 0, and
    P_q(z > 0) = sigma(mu).
    """
    y = toy_posterior_logits(x, sigma)
    kl_prior = float(logistic_kl_equal_scale(_t(mu)))
    return kl_prior - math.log(2) - expit(-mu) * log_expit(-y) - expit(mu) * log_expit(y)


@dataclass(frozen=True)
class ToyFit:
    family: str
    param_name: str
    param: float
    kl: float
    prob_positive: float  # P(z > 0) under the fit
    kl_quadrature: float  # the same KL by scipy quad of the densities (independent check)


def _kl_quad(log_q, x: float, sigma: float) -> float:
    def f(z):
        lq = log_q(z)
        q = math.exp(lq)
        return q * (lq - math.log(float(toy_posterior_density(z, x, sigma)))) if q > 0 else 0.0

    return sum(
        quad(f, a, b, epsabs=1e-14, epsrel=1e-12, limit=200)[0]
        for a, b in ((-80.0, 0.0), (0.0, 80.0))
    )


def fit_logistic_to_toy(x: float = 1.0, sigma: float = TOY_SIGMA) -> ToyFit:
    """argmin_mu KL(Logistic(mu, 1) || p(z | x)) (Figure 5.1's Logistic curve, optimally fitted)."""
    res = optimize.minimize_scalar(
        kl_logistic_to_toy_posterior, bounds=(-20.0, 20.0), args=(x, sigma), method="bounded",
        options={"xatol": 1e-10},
    )  # fmt: skip
    mu = float(res.x)
    d = Logistic(_t(mu), _t(1.0))
    kl_q = _kl_quad(lambda z: float(d.log_prob(_t(z))), x, sigma)
    return ToyFit("logistic", "mu", mu, float(res.fun), float(expit(mu)), kl_q)


def fit_step_logistic_to_toy(x: float = 1.0, sigma: float = TOY_SIGMA) -> ToyFit:
    """argmin over logits of KL(StepLogistic || p(z | x)), by 1-D optimization of the quadrature KL.

    The family contains the exact posterior, so the optimum is logits = (x - 1/2)/sigma^2, KL = 0.
    """

    def kl(y):
        d = StepLogistic(logits=_t(y))
        return _kl_quad(lambda z: float(d.log_prob(_t(z))), x, sigma)

    res = optimize.minimize_scalar(kl, bounds=(-10.0, 10.0), method="bounded",
                                   options={"xatol": 1e-9})  # fmt: skip
    y = float(res.x)
    return ToyFit("steplogistic", "logits", y, float(res.fun), float(expit(y)), float(res.fun))


# --- Table 5.1 ----------------------------------------------------------------------------------


def table_5_1(mus=(0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0)) -> list[dict]:
    """KL(Logistic(mu,1) || Logistic(0,1)) (closed form mu coth(mu/2) - 2 and scipy quad) against
    KL(Bernoulli(sigmoid(mu)) || Bernoulli(1/2)), with the dissertation's printed values."""
    rows = []
    for mu in mus:
        closed = float(logistic_kl_equal_scale(_t(mu)))
        q, p = Logistic(_t(mu), _t(1.0)), Logistic(_t(0.0), _t(1.0))

        def f(z, q=q, p=p):
            lq = float(q.log_prob(_t(z)))
            return math.exp(lq) * (lq - float(p.log_prob(_t(z))))

        numeric = sum(
            quad(f, a, b, epsabs=1e-14, epsrel=1e-12, limit=200)[0]
            for a, b in (
                (mu - 80.0, min(0.0, mu)),
                (min(0.0, mu), max(0.0, mu)),
                (max(0.0, mu), mu + 80.0),
            )
            if b > a
        )
        bern = float(bernoulli_kl_to_half(_t(mu)))
        printed = DISSERTATION_TABLE_5_1.get(float(mu))
        row = {
            "mu": float(mu),
            "kl_logistic": closed,
            "kl_logistic_quadrature": numeric,
            "kl_bernoulli": bern,
            "ratio": closed / bern if bern > 0 else float("nan"),
            "dissertation_logistic": printed[0] if printed else None,
            "dissertation_bernoulli": printed[1] if printed else None,
        }
        row["dissertation_rounding_ok"] = (
            (round(closed, 2) == printed[0] and round(bern, 2) == printed[1]) if printed else None
        )
        rows.append(row)
    return rows


# --- SmoothStepLogistic: the bit probability ------------------------------------------------------


def contraction_table(betas=(0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0), alpha=1.5):
    """P(z > 0) of SmoothStepLogistic(alpha, beta) = 1/2 + kappa(beta) (alpha/2 - 1/2)."""
    rows = []
    for beta in betas:
        k = smooth_step_contraction(beta)
        d = SmoothStepLogistic(alpha=_t(alpha), beta=beta)
        rows.append(
            {
                "beta": float(beta),
                "kappa": k,
                # large-beta expansion; meaningless below beta ~ 2
                "kappa_large_beta": 1 - math.log(2) / beta + 3 * zeta(3) / (8 * beta**3),
                "alpha": alpha,
                "alpha_over_2": alpha / 2,
                "probs": float(d.positive_probs),
            }
        )
    return rows


# --- section 5.4.2: the smooth CDF of eq. 5.9 ----------------------------------------------------


def smooth_cdf_eq_5_9(z, alpha: float, beta: float) -> np.ndarray:
    """(2 - alpha) sigma(z) sigma(-beta z) + (2 - alpha + alpha tanh(z/2))/2 sigma(beta z)."""
    z = np.asarray(z, dtype=np.float64)
    return (2 - alpha) * expit(z) * expit(-beta * z) + (
        2 - alpha + alpha * np.tanh(z / 2)
    ) / 2 * expit(beta * z)


def smooth_cdf_eq_5_9_sign(z, alpha: float, beta: float) -> np.ndarray:
    """R(z) with d/dz eq. 5.9 = sigma(beta z) sigma(-beta z) R(z), so sign(F') = sign(R):

        R(z) = g(z) [2 + (2 - alpha) e^{-beta z} + alpha e^{beta z}] - (1 - alpha) beta tanh(z/2).

    R is O(1) where F' itself is exponentially small, so its sign is reliable in the tails
    (products g e^{±beta z} are formed in log space; overflow to +inf is harmless). As
    z -> +inf: for beta < 1, R -> -(1 - alpha) beta, negative for every alpha < 1; for beta = 1,
    R -> 2 alpha - 1, negative iff alpha < 1/2; for beta > 1, R -> +inf.
    """
    z = np.asarray(z, dtype=np.float64)
    log_g = log_expit(z) + log_expit(-z)
    with np.errstate(over="ignore"):
        lhs = (
            2 * np.exp(log_g)
            + (2 - alpha) * np.exp(log_g - beta * z)
            + alpha * np.exp(log_g + beta * z)
        )
    return lhs - (1 - alpha) * beta * np.tanh(z / 2)


def smooth_cdf_eq_5_9_derivative(z, alpha: float, beta: float) -> np.ndarray:
    """d/dz of eq. 5.9: eq. 5.8's density - (1 - alpha) beta tanh(z/2) sigma(beta z) sigma(-beta z).

    (The two CDF pieces of eq. 5.6 differ by (1 - alpha)(1 - 2 sigma(z)) = -(1 - alpha) tanh(z/2),
    and d/dz sigma(beta z) = beta sigma(beta z) sigma(-beta z).)
    """
    z = np.asarray(z, dtype=np.float64)
    return np.exp(log_expit(beta * z) + log_expit(-beta * z)) * smooth_cdf_eq_5_9_sign(
        z, alpha, beta
    )


_Z_SCAN = np.concatenate([np.linspace(-200, 200, 40001), np.linspace(-30, 30, 60001)])
_Z_SCAN.sort()


def _negative_spans(alpha: float, beta: float) -> list[tuple[float, float]]:
    """z-intervals (on a grid of [-200, 200], spacing <= 0.01) where eq. 5.9's derivative < 0;
    an end at ±200 means the interval is unbounded."""
    neg = smooth_cdf_eq_5_9_sign(_Z_SCAN, alpha, beta) < 0
    spans, start = [], None
    for i, flag in enumerate(neg):
        if flag and start is None:
            start = _Z_SCAN[i]
        if not flag and start is not None:
            spans.append((float(start), float(_Z_SCAN[i - 1])))
            start = None
    if start is not None:
        spans.append((float(start), math.inf))
    return [(-math.inf if a == _Z_SCAN[0] else a, b) for a, b in spans]


def smooth_cdf_negative_regions(betas=(0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 100.0),
                                alphas=(0.05, 0.2, 0.5, 1.5)):  # fmt: skip
    """Where eq. 5.9's "density" is negative.

    For each beta: alpha_crit, the supremum of the alpha < 1 for which the derivative takes
    negative values (bisection on min_z R; by the symmetry alpha -> 2 - alpha, z -> -z it is also
    negative for alpha > 2 - alpha_crit), and for a few alpha the z-intervals where it is < 0.
    """
    rows = []
    for beta in betas:

        def min_r(alpha, beta=beta):
            return float(smooth_cdf_eq_5_9_sign(_Z_SCAN, alpha, beta).min())

        if beta < 1:
            crit = 1.0  # R -> -(1 - alpha) beta < 0 as z -> inf, for every alpha < 1
        elif beta == 1:
            crit = 0.5  # R -> 2 alpha - 1 as z -> inf
        else:
            crit = optimize.brentq(min_r, 1e-12, 1.0 - 1e-12, xtol=1e-12)
        by_alpha = {str(a): _negative_spans(a, beta) for a in alphas}
        rows.append({"beta": float(beta), "alpha_crit": crit, "alpha_crit_upper": 2 - crit,
                     "negative_z_intervals": by_alpha})  # fmt: skip
    return rows


# --- section 5.4.3: the smooth inverse CDF of eq. 5.11 --------------------------------------------


def smooth_icdf_eq_5_11(u, alpha: float, beta: float) -> np.ndarray:
    """Eq. 5.11 as printed (NaN where a logarithm's argument is negative)."""
    u = np.asarray(u, dtype=np.float64)
    c = (2 - alpha) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        left = np.log(u / (2 - alpha - u))
        right = np.log((alpha + u - 1) / (1 - u))
    return left * expit(-beta * (u - c)) + right * expit(beta * (u - c))


def smooth_icdf_undefined_regions(alphas=(0.2, 0.5, 0.9, 1.0, 1.1, 1.5, 1.8), beta=10.0):
    """For each alpha: the u-interval where eq. 5.11 is undefined and its probability |1 - alpha|,
    with the NaN fraction measured on a fine u grid as a check."""
    u = (np.arange(1_000_000) + 0.5) / 1_000_000
    rows = []
    for alpha in alphas:
        if alpha > 1:
            interval, term = (2 - alpha, 1.0), "log(u / (2 - alpha - u)) for u >= 2 - alpha"
        elif alpha < 1:
            interval, term = (0.0, 1 - alpha), "log((alpha + u - 1) / (1 - u)) for u <= 1 - alpha"
        else:
            interval, term = None, "none"
        nan_fraction = float(np.isnan(smooth_icdf_eq_5_11(u, alpha, beta)).mean())
        rows.append({"alpha": alpha, "beta": beta, "undefined_u": interval,
                     "undefined_term": term, "probability": abs(1 - alpha),
                     "nan_fraction_measured": nan_fraction})  # fmt: skip
    return rows


# --- data for the figures --------------------------------------------------------------------


def figure_5_1_data(x: float = 1.0, sigma: float = TOY_SIGMA, num: int = 801) -> dict:
    """Exact toy posterior and its best Logistic(mu, 1) and StepLogistic fits on z in [-8, 8]."""
    z = np.linspace(-8, 8, num)
    fit_l = fit_logistic_to_toy(x, sigma)
    zt = _t(z)
    return {
        "z": z,
        "posterior": toy_posterior_density(z, x, sigma),
        "best_logistic": Logistic(_t(fit_l.param), _t(1.0)).log_prob(zt).exp().numpy(),
        "best_steplogistic": toy_posterior(x, sigma).log_prob(zt).exp().numpy(),
        "mu": fit_l.param,
        "kl_logistic": fit_l.kl,
        "kl_steplogistic": 0.0,
    }


def figure_5_3_data(alpha: float = 1.5, num: int = 801) -> dict:
    """StepLogistic CDF (eq. 5.6) at alpha = 1.5."""
    z = np.linspace(-8, 8, num)
    return {"z": z, "cdf": StepLogistic(alpha=_t(alpha)).cdf(_t(z)).numpy(), "alpha": alpha}


def figure_5_4_data(alpha: float = 0.5, n: int = 100_000, bins: int = 100, seed: int = 0) -> dict:
    """Histogram (density) of n inverse-CDF samples of StepLogistic(0.5) and its pdf (eq. 5.4)."""
    d = StepLogistic(alpha=_t(alpha))
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand(n, generator=gen, dtype=F64).clamp_(min=torch.finfo(F64).tiny)
    samples = d.icdf(u).numpy()
    density, edges = np.histogram(samples, bins=bins, range=(-8, 8), density=False)
    density = density / (n * np.diff(edges))
    z = np.linspace(-8, 8, 801)
    return {"z": z, "pdf": d.log_prob(_t(z)).exp().numpy(), "hist_density": density,
            "hist_edges": edges, "alpha": alpha}  # fmt: skip


def figure_5_7_data(alpha: float = 1.5, beta: float = 10.0, num: int = 801) -> dict:
    """SmoothStepLogistic pdf (eq. 5.8) against the StepLogistic pdf (eq. 5.4)."""
    z = np.linspace(-8, 8, num)
    zt = _t(z)
    return {
        "z": z,
        "smooth_pdf": SmoothStepLogistic(alpha=_t(alpha), beta=beta).log_prob(zt).exp().numpy(),
        "step_pdf": StepLogistic(alpha=_t(alpha)).log_prob(zt).exp().numpy(),
        "alpha": alpha,
        "beta": beta,
    }


def figure_5_8_data(alpha: float = 1.5, beta: float = 10.0, num: int = 801) -> dict:
    """CDFs: StepLogistic (eq. 5.6), the exact CDF of eq. 5.8 (via G_beta) and eq. 5.9's."""
    z = np.linspace(-8, 8, num)
    zt = _t(z)
    return {
        "z": z,
        "step_cdf": StepLogistic(alpha=_t(alpha)).cdf(zt).numpy(),
        "smooth_pdf_cdf": SmoothStepLogistic(alpha=_t(alpha), beta=beta).cdf(zt).numpy(),
        "eq_5_9_cdf": smooth_cdf_eq_5_9(z, alpha, beta),
        "alpha": alpha,
        "beta": beta,
    }


def eq_5_9_failure_data(
    alpha: float = 0.05, beta: float = 10.0, lo: float = -1.0, hi: float = 2.0, num: int = 601
) -> dict:
    """Where eq. 5.9 is not a CDF: its derivative (the "pdf" it implies) against eq. 5.8's
    density at an alpha below alpha_crit(beta) (0.169 at beta = 10), on z in [lo, hi], with the
    z-intervals where the derivative is negative and the CDF values of both there."""
    z = np.linspace(lo, hi, num)
    zt = _t(z)
    smooth = SmoothStepLogistic(alpha=_t(alpha), beta=beta)
    (regions,) = smooth_cdf_negative_regions(betas=(beta,), alphas=(alpha,))
    return {
        "z": z,
        "eq_5_9_derivative": smooth_cdf_eq_5_9_derivative(z, alpha, beta),
        "smooth_pdf": smooth.log_prob(zt).exp().numpy(),
        "eq_5_9_cdf": smooth_cdf_eq_5_9(z, alpha, beta),
        "smooth_pdf_cdf": smooth.cdf(zt).numpy(),
        "negative_z_intervals": regions["negative_z_intervals"][str(alpha)],
        "alpha_crit": regions["alpha_crit"],
        "alpha": alpha,
        "beta": beta,
    }


def all_tables() -> dict:
    """Every table of this module, JSON-ready (what `binaryvae theory` prints and writes)."""
    x = 1.0
    return {
        "toy_model": {
            "x": x,
            "sigma": TOY_SIGMA,
            "posterior_logits": toy_posterior_logits(x),
            "posterior_alpha": 2 * toy_prob_positive(x),
            "prob_positive": toy_prob_positive(x),
            "fits": [asdict(fit_logistic_to_toy(x)), asdict(fit_step_logistic_to_toy(x))],
        },
        "table_5_1": table_5_1(),
        "smooth_step_probs": contraction_table(),
        "eq_5_9_negative": smooth_cdf_negative_regions(),
        "eq_5_11_undefined": smooth_icdf_undefined_regions(),
    }


# --- text and files (what `binaryvae theory` prints and writes) ----------------------------------


def _jsonable(v):
    """Floats that JSON cannot hold (inf, nan) as strings; tuples as lists; numpy as Python."""
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist())
    if isinstance(v, float | np.floating):
        v = float(v)
        return v if math.isfinite(v) else str(v)
    return v


def _fmt_spans(spans) -> str:
    return " ∪ ".join(f"({a:.3g}, {b:.3g})" for a, b in spans) or "none"


def render_text(tables: dict) -> str:
    """The tables as aligned plain text."""
    out = []
    toy = tables["toy_model"]
    out.append(
        f"Toy model (diss. 5.1): x = {toy['x']:g}, sigma = {toy['sigma']:g}; exact posterior = "
        f"StepLogistic(logits {toy['posterior_logits']:.4f}, alpha {toy['posterior_alpha']:.4f}),"
        f" P(z>0|x) = {toy['prob_positive']:.4f}"
    )
    out.append(f"  {'fit':<14}{'parameter':>20}{'KL(q||p(z|x))':>16}{'P(z>0)':>10}")
    for f in toy["fits"]:
        par = f"{f['param_name']} = {f['param']:.5f}"
        kl = 0.0 if abs(f["kl"]) < 1e-12 else f["kl"]  # the exact fit's KL is 0 up to quadrature
        out.append(f"  {f['family']:<14}{par:>20}{kl:>16.6f}{f['prob_positive']:>10.4f}")
    out.append("")
    out.append("Table 5.1: KL to the Logistic(0,1) prior (nats); dissertation values in brackets")
    out.append(f"  {'mu':>6}{'Logistic(mu,1)':>18}{'Bernoulli(s(mu))':>20}{'ratio':>8}")
    for r in tables["table_5_1"]:
        dl = (
            f" [{r['dissertation_logistic']:.2f}]" if r["dissertation_logistic"] is not None else ""
        )
        db = (
            f" [{r['dissertation_bernoulli']:.2f}]"
            if r["dissertation_bernoulli"] is not None
            else ""
        )
        # 0/0 at mu = 0: no ratio; shown as the report's table shows it
        ratio = f"{r['ratio']:>8.3f}" if math.isfinite(r["ratio"]) else f"{'—':>8}"
        out.append(
            f"  {r['mu']:>6g}{r['kl_logistic']:>11.6f}{dl:>7}{r['kl_bernoulli']:>13.6f}{db:>7}"
            f"{ratio}"
        )
    out.append(
        "  (Logistic column: mu coth(mu/2) - 2, exact; the printed values are correctly rounded)"
    )
    out.append("")
    out.append("SmoothStepLogistic (eq. 5.8): P(z>0) = 1/2 + kappa(beta) (alpha/2 - 1/2)")
    out.append(f"  {'beta':>6}{'kappa':>10}{'P(z>0) at alpha=1.5':>22}{'alpha/2':>9}")
    for r in tables["smooth_step_probs"]:
        out.append(
            f"  {r['beta']:>6g}{r['kappa']:>10.5f}{r['probs']:>22.5f}{r['alpha_over_2']:>9.3f}"
        )
    out.append("")
    out.append("Eq. 5.9 (smooth CDF): derivative < 0 iff alpha < alpha_crit (z > 0) "
               "or alpha > 2 - alpha_crit (z < 0)")  # fmt: skip
    alphas = list(tables["eq_5_9_negative"][0]["negative_z_intervals"])
    out.append(
        f"  {'beta':>6}{'alpha_crit':>12}  "
        + "  ".join(("F' < 0 on z in, alpha=" + a).ljust(24) for a in alphas[:2])
    )
    for r in tables["eq_5_9_negative"]:
        spans = [_fmt_spans(r["negative_z_intervals"][a]) for a in alphas[:2]]
        out.append(
            f"  {r['beta']:>6g}{r['alpha_crit']:>12.4f}  " + "  ".join(f"{s:<22}" for s in spans)
        )
    out.append("")
    out.append("Eq. 5.11 (smooth inverse CDF): undefined (NaN) uniforms")
    out.append(f"  {'alpha':>6}{'undefined u':>16}{'P(undefined)':>14}  term")
    for r in tables["eq_5_11_undefined"]:
        iv = r["undefined_u"]
        iv = f"[{iv[0]:.2f}, {iv[1]:.2f}]" if iv else "none"
        out.append(f"  {r['alpha']:>6g}{iv:>16}{r['probability']:>14.3f}  {r['undefined_term']}")
    return "\n".join(out)


def write_tables(tables: dict, out_dir) -> list:
    """Write theory.json (everything), one CSV per flat table and the figure data as CSV.
    Returns the paths written."""
    import csv
    import io
    import json
    from pathlib import Path

    from binaryvae.storage import atomic_write_text  # each file replaced atomically

    out = Path(out_dir)
    written = []
    path = out / "theory.json"
    atomic_write_text(path, json.dumps(_jsonable(tables), indent=2) + "\n")
    written.append(path)

    def write_csv(name, rows):
        p = out / name
        keys = list(rows[0])
        fh = io.StringIO(newline="")
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: json.dumps(_jsonable(r[k])) if isinstance(r[k], dict | list | tuple)
                        else r[k] for k in keys})  # fmt: skip
        atomic_write_text(p, fh.getvalue())
        written.append(p)

    write_csv("table_5_1.csv", tables["table_5_1"])
    write_csv("toy_model_fits.csv", tables["toy_model"]["fits"])
    write_csv("smooth_step_probs.csv", tables["smooth_step_probs"])
    write_csv("eq_5_9_negative.csv", tables["eq_5_9_negative"])
    write_csv("eq_5_11_undefined.csv", tables["eq_5_11_undefined"])
    figures = {
        "figure_5_1.csv": figure_5_1_data(),
        "figure_5_3.csv": figure_5_3_data(),
        "figure_5_4_pdf.csv": {k: v for k, v in figure_5_4_data().items() if k in ("z", "pdf")},
        "figure_5_7.csv": figure_5_7_data(),
        "figure_5_8.csv": figure_5_8_data(),
    }
    for name, data in figures.items():
        cols = {
            k: v
            for k, v in data.items()
            if isinstance(v, np.ndarray) and v.shape == data["z"].shape
        }
        p = out / name
        fh = io.StringIO()
        np.savetxt(fh, np.column_stack(list(cols.values())), delimiter=",",
                   header=",".join(cols), comments="")  # fmt: skip
        atomic_write_text(p, fh.getvalue())
        written.append(p)
    return written
