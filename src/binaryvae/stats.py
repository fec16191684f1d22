"""The statistics every table quotes: mean ± s.e., t intervals, paired tests, Holm's note.

One convention throughout (the sweep report, ``compare --seeds``, the study tables of bench/):

- **Values.** Only finite numbers count: ``None``, NaN, ±inf and non-numbers are dropped first
  (a diverged seed has no number to average); ``n`` is the number of values that remain.
- **Standard error.** ``s / sqrt(n)`` with ``s`` the sample standard deviation (denominator
  ``n - 1``, ``ddof=1``; scipy.stats.sem). One value has a mean and no standard error (None).
- **Intervals.** Student-t 95%: ``mean ± t(0.975, n - 1) · s.e.`` (4.30 for 3 seeds, 2.78 for
  5, 2.26 for 10: few seeds give wide intervals); none below two values.
- **Paired differences.** Two measurements matched by a key (the seed): the differences of the
  keys both have, then their mean, s.e., t interval, the paired t test's p-value
  (scipy.stats.ttest_rel) and the Wilcoxon signed-rank test's p-value (`wilcoxon_p`), which
  does not assume the differences are normal. With n seeds the exact rank test can never give
  a two-sided p below ``2 / 2^n`` (0.25 for 3 seeds, 0.0625 for 5, 0.002 for 10).
- **Many comparisons.** A table that makes k pairwise claims at 5% each expects about 0.05 k
  false positives when no difference is real; `multiple_comparison_note` says so and gives
  Holm's step-down adjusted p-values (`holm`), which control the chance of any false claim.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "finite",
    "format_p",
    "holm",
    "mean_se",
    "multiple_comparison_note",
    "paired",
    "t975",
    "t_interval",
    "t_test_p",
    "wilcoxon_p",
]


def finite(values: Iterable[Any]) -> list[float]:
    """The finite numbers among ``values`` as floats, in order (None, NaN, ±inf, bools and
    non-numbers dropped)."""
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        if math.isfinite(v):
            out.append(float(v))
    return out


def mean_se(values: Iterable[Any]) -> tuple[float | None, float | None]:
    """(mean, standard error of the mean) of the finite ``values``.

    s.e. = sample standard deviation (ddof=1) / sqrt(n). For one value: (that value, None),
    since one value says nothing about its spread; for none: (None, None).
    """
    xs = finite(values)
    if not xs:
        return None, None
    if len(xs) == 1:
        return xs[0], None
    return statistics.fmean(xs), statistics.stdev(xs) / math.sqrt(len(xs))


def t975(df: int) -> float:
    """The two-sided 95% Student-t quantile t(0.975, df) (scipy.stats.t.ppf): 12.71 for df = 1,
    4.30 for df = 2, 1.96 as df grows. ValueError for df < 1."""
    if df < 1:
        raise ValueError(f"t quantile needs df >= 1, got {df}")
    from scipy.stats import t

    return float(t.ppf(0.975, df))


def t_test_p(mean: float, se: float, n: int) -> float:
    """Two-sided p-value of the one-sample t test of mean = 0 (the paired t test when the
    values are paired differences): 2 P(T_{n-1} > |mean / se|); 1.0 when mean = se = 0, 0.0
    when only se = 0."""
    if n < 2:
        raise ValueError(f"a t test needs n >= 2, got {n}")
    if se == 0:
        return 1.0 if mean == 0 else 0.0
    from scipy.stats import t

    return float(2.0 * t.sf(abs(mean / se), n - 1))


def t_interval(values: Iterable[Any]) -> dict[str, Any]:
    """Mean, s.e. and Student-t 95% interval of the finite ``values``.

    Returns ``{"mean", "se", "n"}`` (`mean_se`'s mean and s.e.; None where it gives None) and,
    from two values on, ``"t"`` (t(0.975, n - 1)) and ``"ci95"`` ([low, high] = mean ± t s.e.).
    """
    xs = finite(values)
    mean, se = mean_se(xs)
    out: dict[str, Any] = {"mean": mean, "se": se, "n": len(xs)}
    if se is not None:
        t = t975(len(xs) - 1)
        out.update(t=t, ci95=[mean - t * se, mean + t * se])
    return out


def wilcoxon_p(differences: Iterable[Any]) -> float | None:
    """Two-sided p-value of the Wilcoxon signed-rank test that the finite ``differences`` are
    symmetric about 0 (scipy.stats.wilcoxon).

    - Zeros: dropped before ranking (Wilcoxon's own rule, ``zero_method="wilcox"``); the test
      is of the nonzero differences.
    - Ties among the |differences|: average ranks.
    - Exact where n is small: without ties or zeros and n <= 50, scipy's exact null
      distribution; with ties or zeros and n <= 13, the exact permutation distribution over all
      2^n sign assignments (`scipy.stats.PermutationMethod`, which enumerates them all when
      2^n <= its 9,999 resamples); beyond that the normal approximation with continuity
      correction.
    - Returns None when fewer than two finite differences are given or all of them are zero:
      no rank test is possible (a table prints "—").

    With n nonzero differences the smallest possible p is 2 / 2^n (0.25 for n = 3).
    """
    import numpy as np
    from scipy import stats

    d = np.asarray(finite(differences), dtype=np.float64)
    if len(d) < 2 or not np.any(d != 0):
        return None
    nonzero = np.abs(d[d != 0])
    ties = len(np.unique(nonzero)) < len(nonzero)
    zeros = len(nonzero) < len(d)
    if not (ties or zeros) and len(d) <= 50:
        method: Any = "exact"
    elif len(d) <= 13:
        method = stats.PermutationMethod()
    else:
        method = "asymptotic"
    result = stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided", method=method)
    return float(min(1.0, result.pvalue))


def paired(x: Mapping[Any, Any], y: Mapping[Any, Any]) -> dict[str, Any]:
    """``x - y`` paired by key (e.g. seed -> value): the keys where both have a finite value,
    in ``x``'s order.

    Returns ``{"keys", "diffs", "n", "mean", "se"}`` and from two pairs on ``"t"``, ``"ci95"``
    (`t_interval` of the differences), ``"p_t"`` (paired t test, as scipy.stats.ttest_rel)
    and ``"wilcoxon_p"`` (`wilcoxon_p`; None when every difference is zero).
    """
    keys = [k for k in x if k in y and finite([x[k]]) and finite([y[k]])]
    diffs = [float(x[k]) - float(y[k]) for k in keys]
    out: dict[str, Any] = {"keys": keys, "diffs": diffs}
    out.update(t_interval(diffs))
    if out["n"] >= 2:
        out["p_t"] = t_test_p(out["mean"], out["se"], out["n"])
        out["wilcoxon_p"] = wilcoxon_p(diffs)
    return out


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values, in the order given (None stays None and is not
    counted).

    With the m p-values sorted ascending, p_(1) <= ... <= p_(m), the adjusted value of p_(i) is
    max over j <= i of min(1, (m - j + 1) p_(j)). Rejecting every hypothesis whose adjusted p is
    below alpha keeps the chance of any false rejection at most alpha (Holm 1979).
    """
    present = [(p, i) for i, p in enumerate(pvalues) if p is not None]
    m = len(present)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for j, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (m - j) * p))
        out[i] = running
    return out


def format_p(p: float | None) -> str:
    """A p-value for a table: two significant digits ("0.031"), "< 0.001" below 0.001, "—"
    for None (no test)."""
    if p is None:
        return "—"
    return f"{p:.2g}" if p >= 0.001 else "< 0.001"


def multiple_comparison_note(
    pvalues: Sequence[float | None],
    labels: Sequence[str],
    *,
    alpha: float = 0.05,
    test: str = "paired t tests",
) -> str:
    """The note under a table that makes several pairwise claims: how many, how many false
    positives to expect at ``alpha`` each if no difference were real, and Holm's adjusted
    p-values of ``test`` (one per label; a None p-value is left out). "" below two comparisons.

    Example: "6 pairwise comparisons; at a 5% level each, about 0.3 false positives would be
    expected if no difference were real. Holm-adjusted p-values (paired t tests): a 0.012,
    ...; a difference is significant at 5% over the whole table where its adjusted p < 0.05."
    """
    if len(labels) != len(pvalues):
        raise ValueError(f"{len(labels)} labels for {len(pvalues)} p-values")
    kept = [(label, p) for label, p in zip(labels, pvalues, strict=True) if p is not None]
    k = len(kept)
    if k < 2:
        return ""
    adjusted = holm([p for _, p in kept])
    level = f"{100 * alpha:g}%"
    names = [label for label, _ in kept]
    listed = "; ".join(f"{n} {format_p(q)}" for n, q in zip(names, adjusted, strict=True))
    return (
        f"{k} pairwise comparisons; at a {level} level each, about {alpha * k:.2g} false "
        f"positives would be expected if no difference were real. Holm-adjusted p-values "
        f"({test}): {listed}; a difference is significant at {level} over the whole table "
        f"where its adjusted p < {alpha:g}."
    )
