"""Related cultures: which countries count as related, and the statistic of the paper's claim that
culture-specific neurons "support related cultures too".

**The table.** A relatedness table is a list of groups, each a list of two or more countries that are
all related to one another (``[["UK", "USA"], ["Spain", "Mexico"]]``); relatedness is symmetric,
and a country may be in several groups. :data:`DEFAULT_RELATED` is the documented default among
the paper's 8 target countries (docs/evaluation.md, "Related cultures" says why each pair is in and
what was left out). Names are any spelling :func:`~culture_neurons.data.countries.resolve_country`
knows.

**The statistic.** When country ``c``'s specific set is suppressed, ``drop(c, e)`` is the mean over
country ``e``'s items of ``original - suppressed`` (points; positive = hurt). With ``R(c)`` the
evaluated countries related to ``c`` and ``U(c)`` the other evaluated countries (``c`` itself in
neither),

    excess(c) = mean_{e in R(c)} drop(c, e) - mean_{e in U(c)} drop(c, e),

and the statistic is the mean of ``excess(c)`` over the countries that have both a related and an
unrelated evaluated country. The paper predicts it is positive. Its CI is a two-level bootstrap:
each replicate resamples the items of every evaluated country (the same indices under every
suppressed set: the rows are paired) and then the countries with replacement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from ..data.countries import resolve_country
from ..errors import InputError
from .power import z_factor

#: Shared language: UK–USA (English), Spain–Mexico (Spanish); shared region: China–South Korea (East Asia).
DEFAULT_RELATED: tuple[tuple[str, ...], ...] = (("UK", "USA"), ("Spain", "Mexico"), ("China", "South Korea"))
LEVEL = 0.95


def check_groups(groups: Sequence[Sequence[str]] | None, where: str = "related") -> tuple[tuple[str, ...], ...]:
    """The groups with every name resolved to its canonical country key (``None``: :data:`DEFAULT_RELATED`).

    Raises :class:`InputError` naming ``where`` for a group that is not a list of at least two
    different known countries.
    """
    if groups is None:
        groups = DEFAULT_RELATED
    if isinstance(groups, str) or not isinstance(groups, Sequence):
        raise InputError(f'{where} must be a list of country groups like [["UK", "USA"]], got {groups!r}')
    out = []
    for i, group in enumerate(groups):
        if isinstance(group, str) or not isinstance(group, Sequence) or len(group) < 2:
            raise InputError(
                f'{where}[{i}] must be a list of two or more related countries (e.g. ["UK", "USA"]), got {group!r}'
            )
        keys = tuple(resolve_country(str(name), where=f"{where}[{i}]") for name in group)
        if len(set(keys)) != len(keys):
            raise InputError(f"{where}[{i}] names the same country twice: {list(group)!r}")
        out.append(keys)
    return tuple(out)


def related_to(groups: Sequence[Sequence[str]] | None = None) -> dict[str, frozenset[str]]:
    """``{country: the countries related to it}`` from a table of groups (``None``: the default table)."""
    out: dict[str, set[str]] = {}
    for group in check_groups(groups):
        for country in group:
            out.setdefault(country, set()).update(c for c in group if c != country)
    return {c: frozenset(v) for c, v in out.items()}


@lru_cache(maxsize=1024)
def _key(name: str) -> str:
    """A country's canonical key, so that ``United Kingdom`` and ``UK`` meet; a name no table knows stays as it is."""
    try:
        return resolve_country(name)
    except InputError:
        return name


def partition(
    sets: Sequence[str], evals: Sequence[str], related: Mapping[str, frozenset[str]]
) -> tuple[list[tuple[str, list[str], list[str]]], dict[str, str]]:
    """``[(country, related, unrelated)]`` of the suppressed countries the statistic uses, and
    ``{country: why it is left out}`` for the others (no related or no unrelated evaluated country)."""
    used, left_out = [], {}
    for c in sets:
        mine = related.get(_key(c), frozenset())
        near = [e for e in evals if _key(e) != _key(c) and _key(e) in mine]
        far = [e for e in evals if _key(e) != _key(c) and _key(e) not in mine]
        if not near:
            left_out[c] = "no related country among the evaluated ones"
        elif not far:
            left_out[c] = "no unrelated country among the evaluated ones"
        else:
            used.append((c, near, far))
    return used, left_out


def _weights(used: list[tuple[str, list[str], list[str]]], evals: Sequence[str]) -> np.ndarray:
    """``[K, E]``: ``+1/|R(c)|`` on c's related countries, ``-1/|U(c)|`` on its unrelated ones."""
    col = {e: j for j, e in enumerate(evals)}
    w = np.zeros((len(used), len(evals)))
    for k, (_, near, far) in enumerate(used):
        w[k, [col[e] for e in near]] = 1.0 / len(near)
        w[k, [col[e] for e in far]] = -1.0 / len(far)
    return w


def related_effect(
    drops: Mapping[str, np.ndarray],
    sets: Sequence[str],
    related: Mapping[str, frozenset[str]],
    n_boot: int = 1000,
    seed: int = 0,
    scale: float = 100.0,
) -> dict[str, Any]:
    """The related-culture statistic with its two-level bootstrap CI.

    Args:
        drops: ``{evaluated country: per-item drops [len(sets), n_e]}`` (``original - suppressed``
            under each suppressed set, in the order of ``sets``), in the evaluated countries' order.
        sets: the suppressed countries.
        related: ``{country: related countries}`` (:func:`related_to`).

    Returns:
        ``value, ci_low, ci_high, se, p_one_sided`` ("the related drop exceeds the unrelated one",
        centred bootstrap), ``p_two_sided``, ``mde`` (the smallest excess detectable at 80 % power,
        ``2.80 * se``), ``countries`` (how many enter), ``per_country`` (each one's related and
        unrelated countries and drops, and its excess) and ``left_out``; values None when no
        country enters. One generator seeded with ``seed`` draws, for each evaluated country in
        order, its item indices ``[n_boot, n_e]``, then the country indices ``[n_boot, K]``.
    """
    evals = list(drops)
    used, left_out = partition(sets, evals, related)
    out: dict[str, Any] = {"countries": len(used), "left_out": left_out, "n_boot": n_boot}
    if not used:
        return {**out, **dict.fromkeys(("value", "ci_low", "ci_high", "se", "p_one_sided", "p_two_sided", "mde"))}
    rows = [list(sets).index(c) for c, _, _ in used]
    w = _weights(used, evals)
    means = np.stack([np.asarray(drops[e], np.float64)[rows].mean(1) for e in evals], axis=1)  # [K, E]
    excess = (means * w).sum(1)
    rng = np.random.default_rng(seed)
    boot = np.empty((n_boot, len(used), len(evals)))
    for j, e in enumerate(evals):
        d = np.asarray(drops[e], np.float64)[rows]
        idx = rng.integers(0, d.shape[1], size=(n_boot, d.shape[1]))
        for start in range(0, n_boot, 256):  # chunks bound the [K, chunk, n_e] temporary
            boot[start : start + 256, :, j] = d[:, idx[start : start + 256]].mean(-1).T
    per_rep = (boot * w).sum(-1)  # [n_boot, K]
    picks = rng.integers(0, len(used), size=(n_boot, len(used)))
    reps = np.take_along_axis(per_rep, picks, axis=1).mean(1)
    value = float(excess.mean())
    centred = reps - value
    lo, hi = np.quantile(reps, [(1 - LEVEL) / 2, 1 - (1 - LEVEL) / 2])
    se = float(reps.std(ddof=1)) if n_boot > 1 else None
    return {
        **out,
        "value": value * scale,
        "ci_low": float(lo) * scale,
        "ci_high": float(hi) * scale,
        "se": None if se is None else se * scale,
        "p_one_sided": (1 + int((centred >= value).sum())) / (1 + n_boot),
        "p_two_sided": (1 + int((np.abs(centred) >= abs(value)).sum())) / (1 + n_boot),
        "mde": z_factor() * se * scale if se else None,
        "per_country": {
            c: {
                "related": near,
                "unrelated": far,
                "related_drop": float(means[k][w[k] > 0].mean()) * scale,
                "unrelated_drop": float(means[k][w[k] < 0].mean()) * scale,
                "excess": float(excess[k]) * scale,
            }
            for k, (c, near, far) in enumerate(used)
        },
    }
