"""Paired comparisons across seeds: t-interval, t-test, Hedges' g_av, TOST and Holm's correction.

The confirmatory benchmark (``benchmarks/PREREGISTRATION_v2.md``) compares two arms trained with
the same seeds — the same data order and backbone initialisation — so each seed gives one paired
difference. The verdict rules live in :func:`verdict`; the arithmetic follows Lakens (2013, 2017):

* the 95 % paired t-interval of the mean difference and the two-sided paired t-test;
* Hedges' ``g_av``: the mean difference over the average of the two arms' standard deviations
  (Cohen's ``d_av``), times the small-sample correction ``1 − 3 / (4 (n_a + n_b) − 9)`` with
  ``n_a = n_b = n`` — Lakens (2013)'s eq. 4 applied to ``d_av``. (Another convention uses the
  paired degrees of freedom, ``1 − 3 / (4 (n − 1) − 1)``; verdicts do not depend on ``g_av``.);
* the paired two one-sided tests (TOST) against ``±SESOI``: ``p = max(p_lower, p_upper)``;
* Holm's step-down adjustment of a family of p-values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

__all__ = ["PairedResult", "paired", "holm", "verdict", "seeds_for_half_width", "VERDICTS"]

VERDICTS = ("supported", "contradicted", "equivalent", "inconclusive")


@dataclass
class PairedResult:
    """One paired comparison ``a − b`` (points)."""

    n: int
    delta: float
    sd_diff: float
    ci95: tuple[float, float]
    t: float
    p: float
    g_av: float
    p_tost: float
    sesoi: float

    def to_dict(self) -> dict:
        return asdict(self)


def paired(a: Sequence[float], b: Sequence[float], *, sesoi: float) -> PairedResult:
    """Compare per-seed values ``a[i]`` and ``b[i]`` (same seeds, same order).

    Raises:
        ValueError: fewer than 2 pairs, lengths differ, or ``sesoi <= 0``.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired values need equal 1-D lengths, got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError(f"paired values must be finite, got {a.tolist()} and {b.tolist()}")
    n = len(a)
    if n < 2:
        raise ValueError(f"a paired comparison needs at least 2 seeds, got {n}")
    if sesoi <= 0:
        raise ValueError(f"the smallest effect of interest must be positive, got {sesoi}")
    d = a - b
    delta = float(d.mean())
    sd = float(d.std(ddof=1))
    df = n - 1
    se = sd / math.sqrt(n)
    half = float(stats.t.ppf(0.975, df)) * se
    if se > 0:
        t = delta / se
        p = float(2 * stats.t.sf(abs(t), df))
        p_low = float(stats.t.sf((delta + sesoi) / se, df))  # H0: delta <= -sesoi
        p_up = float(stats.t.cdf((delta - sesoi) / se, df))  # H0: delta >= +sesoi
        p_tost = max(p_low, p_up)
    else:  # every seed gave the same difference
        t = math.copysign(math.inf, delta) if delta else 0.0
        p = 0.0 if delta else 1.0
        p_tost = 0.0 if abs(delta) < sesoi else 1.0
    s_av = (float(a.std(ddof=1)) + float(b.std(ddof=1))) / 2
    correction = 1 - 3 / (4 * (2 * n) - 9)
    g = delta / s_av * correction if s_av > 0 else math.copysign(math.inf, delta) if delta else 0.0
    return PairedResult(n=n, delta=delta, sd_diff=sd, ci95=(delta - half, delta + half), t=float(t), p=p,
                        g_av=float(g), p_tost=p_tost, sesoi=sesoi)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order (monotone, capped at 1)."""
    p = np.asarray(pvalues, float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def verdict(delta: float, p_holm: float, p_tost_holm: float, *, alpha: float = 0.05) -> str:
    """The pre-registered verdict of one claim whose paper direction is ``a > b``.

    * ``supported`` / ``contradicted``: Holm-adjusted ``p < alpha`` with the difference for / against
      the paper;
    * ``equivalent``: otherwise, Holm-adjusted TOST ``p < alpha`` (the difference lies within ±SESOI);
    * ``inconclusive``: neither.
    """
    if p_holm < alpha:
        return "supported" if delta > 0 else "contradicted"
    if p_tost_holm < alpha:
        return "equivalent"
    return "inconclusive"


def seeds_for_half_width(sd_diff: float, half_width: float, *, minimum: int = 5, maximum: int = 100) -> int:
    """The fewest seeds whose 95 % paired t-interval has half-width ``≤ half_width`` given ``sd_diff``;
    ``maximum + 1`` when even ``maximum`` seeds do not reach it (the caller reports "unpowered")."""
    for n in range(max(2, minimum), maximum + 1):
        if stats.t.ppf(0.975, n - 1) * sd_diff / math.sqrt(n) <= half_width:
            return n
    return maximum + 1
