"""Means with bootstrap confidence intervals, and paired comparisons against random baselines.

Every interval is a 95% percentile bootstrap over examples (``n_boot`` resamples, fixed ``seed``).
Scores are per-example values in [0, 1] (correct = 1, or alignment / 100); reported metrics are
multiplied by 100 (accuracy in %, alignment on its 0-100 scale, changes in percentage points).

Paired comparisons resample the same example indices for every condition. The p-value of
"the targeted change is below the mean random change" is the centred bootstrap test
(Berg-Kirkpatrick et al., 2012): with D the observed mean of ``target_i - mean_s random_{s,i}``
and D* its bootstrap replicates, ``p = (1 + #{D* - D <= D}) / (1 + n_boot)``; the two-sided
version counts ``|D* - D| >= |D|``.

The random sets are a sample too (docs/evaluation.md, "Statistics against random sets"):
:func:`compare_to_random` also gives the target's rank among the ``m`` random sets with the
Monte-Carlo p-value ``(b + 1) / (m + 1)`` (Phipson & Smyth, 2010), a two-level bootstrap CI of the
excess that resamples items and random sets together, and the smallest excess its test would
detect at 80 % power (:mod:`.power`).

:func:`specificity_gap` compares two drops measured on *different* items (a cultural benchmark and
an NLU one): each drop is paired within its own items, and the two sides are resampled
independently.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from .power import ALPHA, POWER, detectable_excess, detectable_paired

LEVEL = 0.95
# Two changes closer than this (score units) are a tie: equal sums of 0/1 scores can differ in the
# last bit when numpy adds them in another order. Ties count against the target (a larger p).
TIE = 1e-9
# Elements of the temporary ``values[..., block]`` per bootstrap chunk (32 MiB of float64).
CHUNK_ELEMENTS = 1 << 22


def _indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def _boot_means(values: np.ndarray, idx: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Means of ``values`` (``[n]`` or ``[k, n]``) over each resample, ``[n_boot]`` or ``[n_boot, k]``."""
    out = []
    for start in range(0, idx.shape[0], chunk):
        block = idx[start : start + chunk]
        out.append(values[..., block].mean(-1).T if values.ndim > 1 else values[block].mean(-1))
    return np.concatenate(out)


def _interval(boot: np.ndarray) -> tuple[float, float]:
    lo, hi = np.quantile(boot, [(1 - LEVEL) / 2, 1 - (1 - LEVEL) / 2], axis=0)
    return float(lo), float(hi)


def mean_ci(
    values: Sequence[float] | np.ndarray, n_boot: int = 1000, seed: int = 0, scale: float = 100.0
) -> dict[str, Any]:
    """``{value, ci_low, ci_high, n}`` for the mean of ``values`` (times ``scale``)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {"value": None, "ci_low": None, "ci_high": None, "n": 0}
    lo, hi = _interval(_boot_means(v, _indices(v.size, n_boot, seed))) if n_boot > 0 else (float("nan"),) * 2
    return {"value": float(v.mean()) * scale, "ci_low": lo * scale, "ci_high": hi * scale, "n": int(v.size)}


def paired_change(
    before: np.ndarray, after: np.ndarray, n_boot: int = 1000, seed: int = 0, scale: float = 100.0
) -> dict[str, Any]:
    """Mean of ``after - before`` over paired examples, with a bootstrap CI (times ``scale``), and ``mde``:
    the smallest mean change a two-sided paired t-test at this n and SD detects at 80 % power
    (:func:`~.power.detectable_paired`; None below 2 examples)."""
    diff = np.asarray(after, np.float64) - np.asarray(before, np.float64)
    out = mean_ci(diff, n_boot, seed, scale)
    mde = detectable_paired(float(diff.std(ddof=1)), diff.size) if diff.size >= 2 else None
    out["mde"] = None if mde is None else mde * scale
    return out


def rank_among_random(target_change: float, random_changes: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """Where the target's mean change ranks among ``m`` random sets' mean changes, with Monte-Carlo p-values.

    ``rank`` counts from the largest drop: with ``b`` the random sets whose drop is at least the
    target's (change ``<=`` the target's change, ties included), ``rank = b + 1`` and
    ``p_mc = (b + 1) / (m + 1)``, the one-sided p of "the target drops more than random sets do"
    (Phipson & Smyth, 2010). ``rank_rise`` and ``p_mc_rise`` are the same from the largest rise
    (the enhancement direction). With ``m`` random sets no p can go below ``1 / (m + 1)``.
    All None when there are no random sets.
    """
    rc = np.asarray(random_changes, np.float64).ravel()
    m = int(rc.size)
    if m == 0:
        return {"rank": None, "m_random": 0, "p_mc": None, "rank_rise": None, "p_mc_rise": None}
    b_drop = int((rc <= target_change + TIE).sum())
    b_rise = int((rc >= target_change - TIE).sum())
    return {
        "rank": b_drop + 1,
        "m_random": m,
        "p_mc": (b_drop + 1) / (m + 1),
        "rank_rise": b_rise + 1,
        "p_mc_rise": (b_rise + 1) / (m + 1),
    }


def two_level_replicates(item_boot: np.ndarray, set_means_boot: np.ndarray, set_idx: np.ndarray) -> np.ndarray:
    """Excess replicates of the two-level bootstrap: each replicate's target change minus the mean of its
    resampled random sets.

    Args:
        item_boot: the target's mean change over each item resample, ``[n_boot]``.
        set_means_boot: each random set's mean change over the same item resample, ``[n_boot, m]``.
        set_idx: the random sets drawn (with replacement) for each replicate, ``[n_boot, m]``.
    """
    return item_boot - np.take_along_axis(set_means_boot, set_idx, axis=1).mean(axis=1)


def _excess_power(diff: np.ndarray, per_set: np.ndarray, scale: float) -> tuple[float | None, dict[str, Any]]:
    """The MDE of the excess (points) and what it rests on: the per-item and per-set SDs, n and m."""
    n, m = int(diff.size), int(per_set.size)
    sd_items = float(diff.std(ddof=1)) if n >= 2 else None
    sd_sets = float(per_set.std(ddof=1)) if m >= 2 else None
    mde = detectable_excess(sd_items, n, sd_sets, m)
    parts = {
        "sd_items": None if sd_items is None else sd_items * scale,
        "sd_sets": None if sd_sets is None else sd_sets * scale,
        "n": n,
        "m": m,
        "alpha": ALPHA,
        "power": POWER,
    }
    return (None if mde is None else mde * scale), parts


def compare_to_random(
    original: np.ndarray,
    target: np.ndarray,
    randoms: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    scale: float = 100.0,
) -> dict[str, Any]:
    """Targeted intervention vs random ones on the same examples.

    Args:
        original, target: per-example scores ``[n]`` without and with the targeted intervention.
        randoms: per-example scores under each random set, ``[seeds, n]``.

    Returns:
        ``change`` (target - original, CI), ``random_change`` (mean random - original, CI),
        ``random_changes`` (per seed), ``difference`` (target - mean random, item-bootstrap CI, one-
        and two-sided p-values) and ``fraction_random_smaller_drop``: the fraction of seeds whose
        drop is smaller than the targeted drop. Then the random sets as a sample
        (:func:`rank_among_random`: ``rank``, ``m_random``, ``p_mc``, ``rank_rise``, ``p_mc_rise``),
        ``excess_ci_two_level`` (the same difference with a CI that resamples items and random sets
        together: ``value, ci_low, ci_high, se, p_one_sided, p_two_sided``; None without random sets),
        ``mde`` (the smallest excess detectable at 80 % power, points) and ``mde_parts``.

    One generator seeded with ``seed`` draws the item resamples ``[n_boot, n]`` (the same as every
    item-only CI here), then the random-set resamples ``[n_boot, m]``.
    """
    original = np.asarray(original, np.float64)
    target = np.asarray(target, np.float64)
    randoms = np.asarray(randoms, np.float64).reshape(-1, original.size)
    n, m = original.size, randoms.shape[0]
    if n == 0:
        return {"n": 0}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    set_idx = rng.integers(0, m, size=(n_boot, m)) if m else None
    change = target - original
    rnd_mean = randoms.mean(0) if randoms.size else np.full(n, np.nan)
    rnd_change = rnd_mean - original
    diff = target - rnd_mean
    values = np.vstack([change, rnd_change, diff, randoms - original])
    boot = _boot_means(values, idx, chunk=max(1, CHUNK_ELEMENTS // values.size))  # [n_boot, 3 + m]
    d = float(diff.mean())
    centred = boot[:, 2] - d
    p_one = (1 + int((centred <= d).sum())) / (1 + n_boot)
    p_two = (1 + int((np.abs(centred) >= abs(d)).sum())) / (1 + n_boot)
    per_seed = (randoms - original).mean(1) if randoms.size else np.zeros(0)
    drop_target = -float(change.mean())
    mde, mde_parts = _excess_power(diff, per_seed, scale) if m else (None, None)
    return {
        "n": n,
        "change": {"value": float(change.mean()) * scale, **_ci(boot[:, 0], scale)},
        "random_change": {"value": float(rnd_change.mean()) * scale, **_ci(boot[:, 1], scale)},
        "random_changes": [float(x) * scale for x in per_seed],
        "difference": {"value": d * scale, **_ci(boot[:, 2], scale), "p_one_sided": p_one, "p_two_sided": p_two},
        "fraction_random_smaller_drop": float(np.mean(-per_seed < drop_target)) if per_seed.size else None,
        **rank_among_random(float(change.mean()), per_seed),
        "excess_ci_two_level": _two_level(
            boot[:, 0], boot[:, 3:], set_idx, float(change.mean() - per_seed.mean()), scale
        )
        if m
        else None,
        "mde": mde,
        "mde_parts": mde_parts,
    }


def _two_level(
    item_boot: np.ndarray, set_means_boot: np.ndarray, set_idx: np.ndarray, excess: float, scale: float
) -> dict[str, Any]:
    reps = two_level_replicates(item_boot, set_means_boot, set_idx)
    centred = reps - excess
    n_boot = reps.size
    return {
        "value": excess * scale,
        **_ci(reps, scale),
        "se": float(reps.std(ddof=1)) * scale if n_boot > 1 else None,
        "p_one_sided": (1 + int((centred <= excess).sum())) / (1 + n_boot),
        "p_two_sided": (1 + int((np.abs(centred) >= abs(excess)).sum())) / (1 + n_boot),
    }


def _ci(boot: np.ndarray, scale: float) -> dict[str, float]:
    lo, hi = _interval(boot)
    return {"ci_low": lo * scale, "ci_high": hi * scale}


def format_p(p: float | None) -> str:
    """The one p-value format of the terminal and the report: ``0.012``, ``<0.001``, ``-`` when unknown."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _side(base: Sequence[float] | np.ndarray, intervened: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    b, i = np.asarray(base, np.float64).ravel(), np.asarray(intervened, np.float64).ravel()
    if b.shape != i.shape:
        raise InputError(
            f"specificity gap: {name} base and intervened scores differ in length ({b.size} vs {i.size}); "
            "they must be paired"
        )
    if not (np.isfinite(b).all() and np.isfinite(i).all()):
        raise InputError(f"specificity gap: {name} scores contain NaN or infinite values")
    return b - i  # per-item drop: positive when the intervention hurts


def specificity_gap(
    culture_base: Sequence[float] | np.ndarray,
    culture_int: Sequence[float] | np.ndarray,
    nlu_base: Sequence[float] | np.ndarray,
    nlu_int: Sequence[float] | np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    scale: float = 100.0,
) -> dict[str, Any]:
    """(cultural drop) - (NLU drop), with a bootstrap CI and p-value (times ``scale``: percentage points).

    Each drop is the mean of ``base - intervened`` over its own paired items (pass the per-item
    mean over random sets as ``*_base`` to measure drops against random). The culture and NLU
    items are resampled independently (one generator seeded with ``seed``: first the culture
    indices ``[n_boot, n_culture]``, then the NLU ones). The p-value tests "the cultural drop
    exceeds the NLU drop" with the centred bootstrap: ``p = (1 + #{G* - G >= G}) / (1 + n_boot)``;
    ``p_two_sided`` counts ``|G* - G| >= |G|``.

    Returns:
        ``gap, ci_low, ci_high, p_value, p_two_sided, culture_drop, nlu_drop, n_culture, n_nlu``
        (values None when either side has no items).
    """
    c = _side(culture_base, culture_int, "culture")
    u = _side(nlu_base, nlu_int, "NLU")
    out: dict[str, Any] = {"n_culture": int(c.size), "n_nlu": int(u.size)}
    if c.size == 0 or u.size == 0:
        return {
            **out,
            **dict.fromkeys(("gap", "ci_low", "ci_high", "p_value", "p_two_sided", "culture_drop", "nlu_drop")),
        }
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise InputError(f"n_boot must be a positive integer, got {n_boot!r}")
    rng = np.random.default_rng(seed)
    idx_c = rng.integers(0, c.size, size=(n_boot, c.size))
    idx_u = rng.integers(0, u.size, size=(n_boot, u.size))
    gap = float(c.mean() - u.mean())
    boot = _boot_means(c, idx_c) - _boot_means(u, idx_u)
    centred = boot - gap
    lo, hi = _interval(boot)
    return {
        **out,
        "gap": gap * scale,
        "ci_low": lo * scale,
        "ci_high": hi * scale,
        "p_value": (1 + int((centred >= gap).sum())) / (1 + n_boot),
        "p_two_sided": (1 + int((np.abs(centred) >= abs(gap)).sum())) / (1 + n_boot),
        "culture_drop": float(c.mean()) * scale,
        "nlu_drop": float(u.mean()) * scale,
    }
