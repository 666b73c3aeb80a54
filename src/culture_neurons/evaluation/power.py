"""The smallest effect a test would detect: minimal detectable effects (MDE) at 80 % power, alpha 0.05.

A verdict of "not significant" says little until it says what the test could have seen. Every
function here answers: with this many items (and random sets), and this much noise, how large must
the true effect be for the test to find it in ``power`` of repeated runs? The derivations are in
docs/evaluation.md ("Power"). In short, for an estimate with standard error ``SE`` tested two-sided
at level ``alpha`` (equivalently: its 95 % CI excludes 0 on the predicted side),

    MDE = (z_{1 - alpha/2} + z_{power}) * SE        (2.80 * SE at the defaults),

where for the excess drop against random sets ``SE^2 = s_d^2 / n + s_r^2 / m``: ``s_d`` is the SD
over the ``n`` items of the paired difference (target minus the mean random set), ``s_r`` the SD
over the ``m`` random sets of each set's mean change. A plain paired mean (no random sets) uses the
exact noncentral t power of ``statsmodels.stats.power.TTestPower`` instead of the normal quantiles.
"""

from __future__ import annotations

import math

import numpy as np

# scipy.stats and statsmodels are imported inside the functions: this module is loaded by every CLI
# start (through evaluation.metrics), and importing scipy.stats costs about 0.7 s there.

ALPHA = 0.05
POWER = 0.80


def _finite(*values: float | None) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def z_factor(alpha: float = ALPHA, power: float = POWER) -> float:
    """``z_{1 - alpha/2} + z_{power}``: the MDE in standard errors of a two-sided normal test (2.80 at the defaults)."""
    from scipy.stats import norm

    return float(norm.ppf(1 - alpha / 2) + norm.ppf(power))


def detectable_excess(
    sd_items: float | None,
    n: int,
    sd_sets: float | None = None,
    m: int = 0,
    alpha: float = ALPHA,
    power: float = POWER,
) -> float | None:
    """The MDE of an excess (target minus the mean of ``m`` random sets, over ``n`` paired items).

    ``sd_items`` is the SD of the per-item paired difference, ``sd_sets`` the SD of the random sets'
    mean changes (left out when ``m < 2``: one random set cannot show how much sets vary). Normal
    approximation; None when ``n`` is 0, an SD is missing, or nothing varies (an SD of 0 measured
    on a handful of identical items says nothing about the noise, so no MDE is claimed).
    """
    if n <= 0 or not _finite(sd_items):
        return None
    var = sd_items**2 / n
    if m >= 2 and _finite(sd_sets):
        var += sd_sets**2 / m
    return z_factor(alpha, power) * math.sqrt(var) if var > 0 else None


def detectable_paired(sd: float | None, n: int, alpha: float = ALPHA, power: float = POWER) -> float | None:
    """The MDE of a paired mean change over ``n`` items with SD ``sd`` (two-sided one-sample t-test).

    ``TTestPower`` solves for the standardised effect ``d`` with the noncentral t distribution;
    the MDE is ``d * sd``. None for fewer than 2 items, no SD, or an SD of 0 (every difference
    equal: the sample shows no noise to size the test by).
    """
    if n < 2 or not _finite(sd) or sd == 0:
        return None
    from statsmodels.stats.power import TTestPower

    d = TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power, alternative="two-sided")
    # For some n (73, 87, 92, 109, 117, 120, ...) statsmodels' fallback root finder returns a 1-element array,
    # which float() refuses, holding the negative root (the two-sided power is symmetric in d).
    return abs(float(np.ravel(d)[0])) * sd


def detectable_share(p0: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float | None:
    """The smallest share above ``p0`` that a test of ``n`` binomial draws would detect (a proportion, not a gap).

    Solved on the arcsine scale (Cohen's ``h = 2 asin(sqrt p1) - 2 asin(sqrt p0)``) with
    ``NormalIndPower`` for one sample (``ratio=0``), then mapped back to ``p1``; None when ``n`` is
    0 or ``p0`` is not inside (0, 1). Capped at 1: a share that high may still be undetectable.
    """
    if n <= 0 or not 0 < p0 < 1:
        return None
    from statsmodels.stats.power import NormalIndPower

    h = NormalIndPower().solve_power(
        effect_size=None, nobs1=n, alpha=alpha, power=power, ratio=0, alternative="two-sided"
    )
    angle = math.asin(math.sqrt(p0)) + float(h) / 2
    return 1.0 if angle >= math.pi / 2 else math.sin(angle) ** 2
