"""The numbers the claims rest on, read off the summaries, and the library-backed tests they use.

Kept apart from :mod:`.claims` (which builds the claims) so that each module has one job: here,
how a set-vs-random block becomes a CI, a p and a power, the specificity gap from two sides' CIs,
and the Wilson interval, binomial tail and bootstrap CI of the run-wide claims.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import stats
from .verdicts import RANK_TEST, format_rank

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_interval(hits: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion ``hits / n`` (95% at the default ``z``; ``(0, 1)`` when ``n``
    is 0), from ``statsmodels.stats.proportion.proportion_confint``."""
    if n <= 0:
        return 0.0, 1.0
    from scipy.stats import norm
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(hits, n, alpha=2 * float(norm.sf(z)), method="wilson")
    return max(0.0, float(lo)), min(1.0, float(hi))


def binomial_p_at_least(hits: int, n: int, p: float) -> float:
    """One-sided binomial p-value ``P(X >= hits)`` for ``X ~ Binomial(n, p)`` (``scipy.stats.binom``)."""
    from scipy.stats import binom

    return float(min(1.0, binom.sf(hits - 1, n, p)))


def vs_random_numbers(block: Mapping[str, Any], expect: int, legacy_p: str) -> dict[str, Any]:
    """A set-vs-random block's numbers for a claim: the CI (two-level where the summary has it), the p (the rank p in
    the direction ``expect``, else the item bootstrap's ``legacy_p``), rank, m, MDE and n."""
    diff = block.get("difference") or {}
    ci = excess_ci(block)
    rank_key, p_key = ("rank", "p_mc") if expect < 0 else ("rank_rise", "p_mc_rise")
    rank, p_mc, m = block.get(rank_key), block.get(p_key), block.get("m_random")
    ranked = p_mc is not None and bool(m)
    se = ci.get("se")
    if se is None and ci.get("ci_low") is not None and ci.get("ci_high") is not None:
        se = (ci["ci_high"] - ci["ci_low"]) / (2 * Z95)
    return {
        "value": ci.get("value", diff.get("value")),
        "ci_low": ci.get("ci_low"),
        "ci_high": ci.get("ci_high"),
        "se": se,
        "two_level": ci is not diff,
        "p": p_mc if ranked else diff.get(legacy_p),
        "p_test": RANK_TEST if ranked else f"paired bootstrap ({legacy_p.removeprefix('p_').replace('_', '-')})",
        "rank": rank if ranked else None,
        "m_random": m if ranked else None,
        "mde": block.get("mde"),
        "n": (block.get("original") or {}).get("n") or block.get("n"),
    }


def vs_random_text(nums: Mapping[str, Any]) -> str:
    """``Δ -6.1 [-10.4, -1.6] points vs random, 1st of 21 (p_mc 0.048)``; the old summaries' ``..., p 0.010``."""
    delta = f"Δ {stats.format_ci(nums['value'], nums['ci_low'], nums['ci_high'])} points vs random"
    if nums["rank"] is not None:
        return f"{delta}, {format_rank(nums['rank'], nums['m_random'])} (p_mc {stats.format_p(nums['p'])})"
    return f"{delta}, p {stats.format_p(nums['p'])}"


def specificity_gap(
    culture: Mapping[str, Any], nlu: Mapping[str, Any]
) -> tuple[float | None, float | None, float | None]:
    """(cultural drop) − (NLU drop) against random, in points, with a 95% CI from the two sides' CIs.

    The two benchmarks' items are disjoint, so the sides are independent: each side's standard error
    is read off its CI (half-width / 1.96; the two-level CI over items and random sets where the
    summary has it, else the item bootstrap's) and the two add in quadrature.
    """
    c, n = excess_ci(culture), excess_ci(nlu)
    if c.get("value") is None or n.get("value") is None:
        return None, None, None
    gap = n["value"] - c["value"]  # drop = −difference, so drop_c − drop_n = diff_n − diff_c
    if None in (c.get("ci_low"), c.get("ci_high"), n.get("ci_low"), n.get("ci_high")):
        return gap, None, None
    se = math.hypot((c["ci_high"] - c["ci_low"]) / (2 * Z95), (n["ci_high"] - n["ci_low"]) / (2 * Z95))
    return gap, gap - Z95 * se, gap + Z95 * se


def excess_ci(block: Mapping[str, Any]) -> Mapping[str, Any]:
    """The excess drop's numbers (``value, ci_low, ci_high``): the two-level CI where the block has it, else the
    item bootstrap's ``difference``."""
    two = block.get("excess_ci_two_level") or {}
    return two if two.get("ci_low") is not None and two.get("ci_high") is not None else block.get("difference") or {}


def gap_p(gap: float | None, lo: float | None, hi: float | None) -> float | None:
    """One-sided normal p of "the cultural drop exceeds the NLU drop", from the gap and its normal CI."""
    if gap is None or lo is None or hi is None:
        return None
    se = (hi - lo) / (2 * Z95)
    if se <= 0:
        return None
    from scipy.stats import norm

    return float(norm.sf(gap / se))


def bootstrap_mean_ci(values: Sequence[float], n_boot: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile 95% bootstrap CI of the mean of ``values`` (fixed seed: the same numbers give the same CI)."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(n_boot, data.size))].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))
