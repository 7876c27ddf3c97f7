import math

import numpy as np
import pytest
from scipy import stats as sps

from gald import stats


def test_paired_matches_scipy_and_the_textbook_interval():
    a = [70.1, 71.3, 69.8, 72.0, 70.6]
    b = [69.0, 70.9, 69.9, 70.2, 69.1]
    r = stats.paired(a, b, sesoi=1.0)
    ref = sps.ttest_rel(a, b)
    assert r.t == pytest.approx(ref.statistic) and r.p == pytest.approx(ref.pvalue)
    d = np.subtract(a, b)
    half = sps.t.ppf(0.975, 4) * d.std(ddof=1) / math.sqrt(5)
    assert r.ci95 == pytest.approx((d.mean() - half, d.mean() + half))
    assert r.delta == pytest.approx(d.mean()) and r.n == 5


def test_hedges_g_av():
    a, b = [3.0, 4.0, 5.0, 6.0], [1.0, 2.0, 4.0, 5.0]
    r = stats.paired(a, b, sesoi=1.0)
    s_av = (np.std(a, ddof=1) + np.std(b, ddof=1)) / 2
    assert r.g_av == pytest.approx(1.5 / s_av * (1 - 3 / (4 * 8 - 9)))


def test_tost_declares_equivalence_only_inside_the_bounds():
    rng = np.random.default_rng(0)
    base = rng.normal(70, 2, 12)
    tiny = stats.paired(base + rng.normal(0.05, 0.1, 12), base, sesoi=1.0)
    assert tiny.p_tost < 0.05
    big = stats.paired(base + rng.normal(1.5, 0.1, 12), base, sesoi=1.0)
    assert big.p_tost > 0.5 and big.p < 0.001


def test_constant_differences_are_handled():
    r = stats.paired([2.0, 3.0, 4.0], [1.0, 2.0, 3.0], sesoi=0.5)
    assert r.p == 0 and r.ci95 == (1.0, 1.0) and r.p_tost == 1.0
    same = stats.paired([1.0, 2.0], [1.0, 2.0], sesoi=0.5)
    assert same.p == 1.0 and same.p_tost == 0.0 and same.g_av == 0.0


def test_bad_input():
    with pytest.raises(ValueError, match="at least 2"):
        stats.paired([1.0], [2.0], sesoi=1)
    with pytest.raises(ValueError, match="equal"):
        stats.paired([1.0, 2.0], [2.0], sesoi=1)
    with pytest.raises(ValueError, match="positive"):
        stats.paired([1.0, 2.0], [2.0, 3.0], sesoi=0)


def test_holm():
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert stats.holm([]) == []


@pytest.mark.parametrize(
    ("delta", "p", "p_tost", "expected"),
    [(2.0, 0.01, 0.9, "supported"), (-2.0, 0.01, 0.9, "contradicted"), (0.1, 0.6, 0.01, "equivalent"),
     (0.5, 0.2, 0.2, "inconclusive")],
)
def test_verdict(delta, p, p_tost, expected):
    assert stats.verdict(delta, p, p_tost) == expected


def test_seeds_for_half_width():
    n = stats.seeds_for_half_width(2.0, 1.5)
    assert sps.t.ppf(0.975, n - 1) * 2.0 / math.sqrt(n) <= 1.5 < sps.t.ppf(0.975, n - 2) * 2.0 / math.sqrt(n - 1)
    assert stats.seeds_for_half_width(0.1, 10.0) == 5  # the floor
    assert stats.seeds_for_half_width(100.0, 0.1, maximum=20) == 21
