"""A checked claim as a record, its verdict from the CI and the p-value, Holm over the table, and the verdict in words.

A verdict compares the CI with the direction the paper predicts and, where the row has a p-value,
asks for significance too:

- ``holds``: the whole CI lies on the predicted side, and the row's p (Holm-adjusted over the
  claims table) is below 0.05;
- ``does not hold``: the whole CI lies on the other side;
- ``not significant``: anything else (the CI contains the null value, there is no CI, or the CI
  is on the predicted side but the p-value is not small enough, e.g. with too few random sets).

Every "not significant" says what its test could have seen (:func:`reading`): the smallest effect
it detects at 80 % power (``Claim.mde``, :mod:`culture_neurons.evaluation.power`), and whether that
rules out the effects that matter or the run had too few items or random sets to do so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..evaluation.metrics import format_p
from ..evaluation.power import ALPHA, POWER

HOLDS = "holds"
FAILS = "does not hold"
NOT_SIGNIFICANT = "not significant"
VERDICTS = (HOLDS, FAILS, NOT_SIGNIFICANT)

# Points: an MDE at most this large makes a null result informative ("rules out ..."); a larger one is
# reported as too few items. It is the replication study's power target (docs/evaluation.md, "Power"),
# never tuned to a run's numbers.
INFORMATIVE_MDE = 5.0
RANK_TEST = "rank among random sets (Monte-Carlo p)"  # Claim.p_test of a row whose p is the rank p


@dataclass(frozen=True)
class Claim:
    """One checked claim: what the paper says, on which benchmark, the verdict and the numbers behind it."""

    key: str  # cultural-drop | nlu-spared | own-country | own-country-random | related | enhancement | layers
    title: str  # the claim in words
    scope: str  # where it was tested ("blend (heldout)"), "" when run-wide
    verdict: str  # one of VERDICTS
    number: str  # the measured number with its CI, ready to print
    value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    note: str = ""  # a caveat (baseline at chance, how the CI was computed)
    p: float | None = None  # the row's raw p, one-sided in the predicted direction; None when it has none
    p_test: str = ""  # which test gave p
    p_holm: float | None = None  # p adjusted by Holm over the rows of the table that have a p
    rank: int | None = None  # against random sets: place among itself and m_random sets (1 = furthest as predicted)
    m_random: int | None = None
    mde: float | None = None  # the smallest effect its test detects at 80 % power, in `unit`
    unit: str = "points"  # the unit of mde ("points", or "share" for a proportion in [0, 1])
    effect: str = ""  # the effect mde is about, as a noun phrase ("an excess drop")
    n: int | None = None  # how many items (countries, neurons) the test rests on
    n_unit: str = "items"
    ci_verdict: str = ""  # the verdict of the CIs alone, before the p-value is asked
    reading: str = ""  # the verdict in words, with the power
    at_chance: bool = False  # its benchmark's baseline is not above chance beyond noise (the overall verdict skips it)


def ci_verdict(low: float | None, high: float | None, expect: int, null: float = 0.0) -> str:
    """The verdict of a CI against ``null`` when the paper expects the value above (``expect=+1``) or below (``-1``)
    it."""
    if low is None or high is None or any(isinstance(v, float) and math.isnan(v) for v in (low, high)):
        return NOT_SIGNIFICANT
    above, below = low > null, high < null
    if (above and expect > 0) or (below and expect < 0):
        return HOLDS
    if above or below:
        return FAILS
    return NOT_SIGNIFICANT


def decide(by_ci: str, p: float | None, alpha: float = ALPHA) -> str:
    """The final verdict: the CIs' verdict, except that ``holds`` also needs ``p < alpha`` where there is a p."""
    if by_ci == HOLDS and p is not None and not p < alpha:
        return NOT_SIGNIFICANT
    return by_ci


def ordinal(k: int) -> str:
    """``1st``, ``2nd``, ``3rd``, ``4th``, ``11th``, ``21st``."""
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def format_rank(rank: int | None, m_random: int | None) -> str:
    """``3rd of 21`` (the set among itself and 20 random sets), ``-`` without random sets."""
    if rank is None or not m_random:
        return "-"
    return f"{ordinal(int(rank))} of {int(m_random) + 1}"


def format_mde(claim: Claim) -> str:
    """The MDE in the claim's unit: ``3.9 points``, ``78%``; ``-`` when unknown."""
    if claim.mde is None or not math.isfinite(claim.mde):
        return "-"
    return f"{100 * claim.mde:.0f}%" if claim.unit == "share" else f"{claim.mde:.1f} points"


def _few_random_sets(c: Claim) -> bool:
    """Whether the row's p is the rank p and its ``m`` random sets are too few for ``(b + 1) / (m + 1)`` ever to go
    below alpha."""
    m = c.m_random
    return c.p_test == RANK_TEST and m is not None and m > 0 and 1 / (m + 1) >= ALPHA


def _power_words(c: Claim) -> str:
    """What a test that found nothing could have seen."""
    effect = c.effect or "an effect"
    power = f"{round(100 * POWER)}% power"
    if _few_random_sets(c):
        m = int(c.m_random or 0)
        alone = f" (the excess test alone would detect {format_mde(c)} at {power})" if c.mde is not None else ""
        return f"too few random sets ({m}) to rule out {effect}: the rank p cannot go below 1/{m + 1}{alone}"
    if c.mde is None or not math.isfinite(c.mde):
        return f"its power is unknown (no spread among the {c.n_unit} to size the test by)"
    if c.unit == "share":
        return f"rules out a share of {format_mde(c)} or more ({power})"
    if c.mde <= INFORMATIVE_MDE:
        counted = f", n={c.n} {c.n_unit}" if c.n is not None else ""
        return f"rules out {effect} larger than {c.mde:.1f} points ({power}{counted})"
    counted = f" (n={c.n})" if c.n is not None else ""
    return (
        f"too few {c.n_unit}{counted} to rule out {effect} of up to {c.mde:.1f} points "
        f"({power}; the target is {INFORMATIVE_MDE:g} points or less)"
    )


def reading(c: Claim) -> str:
    """The verdict in words: significance after Holm, or what a null result rules out."""
    p_used = c.p_holm if c.p_holm is not None else c.p
    ps = f"p {format_p(c.p)}" + (f", Holm p {format_p(c.p_holm)}" if c.p_holm is not None else "")
    if c.verdict == HOLDS:
        return f"{HOLDS}: {ps}" if p_used is not None else HOLDS
    if c.verdict == FAILS:
        return f"{FAILS}: the 95% CI lies on the other side of the null"
    if (c.ci_verdict or c.verdict) == HOLDS and p_used is not None:
        ranked = c.p_test == RANK_TEST and c.rank is not None
        where = f"ranks {format_rank(c.rank, c.m_random)} among random sets, " if ranked else ""
        tail = f"; {_power_words(c)}" if _few_random_sets(c) else f" (needs < {ALPHA:g})"
        return f"{NOT_SIGNIFICANT}: the CI is on the predicted side, but it {where}{ps}{tail}"
    return f"{NOT_SIGNIFICANT}; {_power_words(c)}"


def reading_tail(c: Claim) -> str:
    """The reading without its leading verdict: what follows ``holds:``, ``not significant;`` and so on."""
    text = c.reading
    if text.startswith(c.verdict):
        text = text[len(c.verdict) :].lstrip(":; ")
    return text


def finish(claim: Claim, p_used: float | None = None) -> Claim:
    """``claim`` with its final verdict and reading, deciding with ``p_used`` (default: Holm p, else raw p)."""
    by_ci = claim.ci_verdict or claim.verdict
    p = p_used if p_used is not None else claim.p_holm if claim.p_holm is not None else claim.p
    done = replace(claim, ci_verdict=by_ci, verdict=decide(by_ci, p))
    return replace(done, reading=reading(done))


def adjust(claims: Sequence[Claim], alpha: float = ALPHA) -> list[Claim]:
    """The claims with Holm-adjusted p-values (over the rows that have a p) and their verdicts decided on them."""
    from statsmodels.stats.multitest import multipletests  # imported here: statsmodels is slow to import

    with_p = [i for i, c in enumerate(claims) if c.p is not None and math.isfinite(c.p)]
    adjusted = multipletests([claims[i].p for i in with_p], alpha=alpha, method="holm")[1] if with_p else []
    out = list(claims)
    for i, q in zip(with_p, adjusted):
        out[i] = replace(claims[i], p_holm=float(q))
    return [finish(c) for c in out]
