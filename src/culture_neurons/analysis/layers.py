"""The layer claim: are the culture-general neurons in the shallow-to-middle layers more than their pool is?

A set selected as the top fraction of a pool can only sit where the pool has neurons, so "most of
them are in the lower layers" means something only against the pool's own spread over the layers.
With ``L`` layers, the lower part is layers ``0 .. floor(2L/3) - 1``. The statistic is the set's share
of neurons there minus the share the pool would give a set of the same composition:

    expected = sum over pools p of (k_p / k) * (pool p's neurons in the lower layers / pool p's neurons),

``k_p`` the set's neurons in pool ``p`` (each pool, e.g. MLP and attention, is ranked on its own,
so its count is fixed by the rule). Under the null "the set is ``k_p`` neurons drawn at random from
each pool", the count in the lower layers is a sum of hypergeometric counts, one per pool; its upper
tail is the p-value (``scipy.stats.hypergeom``, convolved over the pools: exact). The CI is the
Wilson interval of the set's share minus ``expected`` (neurons counted as independent draws); the
power is the smallest share above ``expected`` the test detects at 80 %
(:func:`~culture_neurons.evaluation.power.detectable_share`), minus ``expected``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..evaluation.power import detectable_share
from .claim_numbers import wilson_interval
from .verdicts import Claim, ci_verdict, finish


def pool_layers(neuron_set: Any) -> list[dict[str, Any]] | None:
    """Per pool the set was selected from: its ``sites``, its neurons per layer (``pool``) and the set's
    neurons per layer in it (``set``); None when the set does not record its model's shape.

    The pools are those the set records (``params["pools"]``), else the sites it uses; sites of the
    set outside every recorded pool form one more pool.
    """
    layers, widths = neuron_set.num_layers, neuron_set.widths
    if layers is None or widths is None:
        return None
    recorded = [
        tuple(p["sites"]) for p in neuron_set.params.get("pools", []) if isinstance(p, Mapping) and p.get("sites")
    ]
    used = list(dict.fromkeys(neuron_set.sites))
    pools = recorded or [tuple(used)]
    outside = tuple(s for s in used if all(s not in p for p in pools))
    if outside:
        pools.append(outside)
    site_of = np.array([neuron_set.site_names[i] for i in neuron_set.site_ids.tolist()], dtype=object)
    at = neuron_set.layers.numpy()
    out = []
    for sites in pools:
        member = np.isin(site_of, list(sites)) if len(site_of) else np.zeros(0, bool)
        out.append(
            {
                "sites": list(sites),
                "pool": [int(sum(widths.get(s, 0) for s in sites))] * int(layers),
                "set": np.bincount(at[member], minlength=int(layers))[: int(layers)].astype(int).tolist(),
            }
        )
    return out


def uniform_pool(counts: Sequence[int]) -> list[dict[str, Any]]:
    """One pool with the same number of neurons in every layer (what a set without its model's shape is
    compared with), holding the set's per-layer ``counts``."""
    return [{"sites": [], "pool": None, "set": [int(c) for c in counts]}]


def lower_layers(num_layers: int) -> int:
    """How many layers count as shallow-to-middle: ``floor(2L / 3)``."""
    return (2 * int(num_layers)) // 3


def expected_share(pools: Sequence[Mapping[str, Any]], lower: int) -> float:
    """The share of the set's neurons in layers ``0 .. lower - 1`` that its pools would give (see the module)."""
    total = sum(sum(p["set"]) for p in pools)
    share = 0.0
    for p in pools:
        size = p["pool"] or [1] * len(p["set"])
        share += sum(p["set"]) / total * sum(size[:lower]) / sum(size)
    return share


def p_at_least(pools: Sequence[Mapping[str, Any]], lower: int, hits: int) -> float:
    """``P(X >= hits)``, ``X`` the sum over pools of ``Hypergeom(pool size, pool neurons below, set neurons in it)``;
    a pool whose size is unknown counts as a binomial draw at its lower share."""
    from scipy.stats import binom, hypergeom

    pmf = np.ones(1)
    for p in pools:
        k = int(sum(p["set"]))
        ks = np.arange(k + 1)
        if p["pool"] is None:
            part = binom.pmf(ks, k, lower / len(p["set"]))
        else:
            part = hypergeom.pmf(ks, int(sum(p["pool"])), int(sum(p["pool"][:lower])), k)
        pmf = np.convolve(pmf, part)
    return float(min(1.0, max(0.0, pmf[hits:].sum())))


def layer_claim_of(pools: Sequence[Mapping[str, Any]] | None) -> Claim | None:
    """The shallow-to-middle claim against the pools' own spread (None without neurons, or with one layer)."""
    if not pools:
        return None
    layers = len(pools[0]["set"])
    total = sum(sum(p["set"]) for p in pools)
    lower = lower_layers(layers)
    if total == 0 or lower == 0 or lower == layers:
        return None
    hits = sum(sum(p["set"][:lower]) for p in pools)
    expected = expected_share(pools, lower)
    lo, hi = wilson_interval(hits, total)
    value = 100 * (hits / total - expected)
    low, high = 100 * (lo - expected), 100 * (hi - expected)
    where = "layer 0" if lower == 1 else f"layers 0–{lower - 1}"
    known = all(p["pool"] is not None for p in pools)
    against = "of the pool's neurons there" if known else "for a uniform spread (the pool's sizes are unknown)"
    number = (
        f"{100 * hits / total:.0f}% of {total} neurons in {where} of {layers}, against {100 * expected:.0f}% "
        f"{against}: {value:+.1f} [{low:+.1f}, {high:+.1f}] points"
    )
    detectable = detectable_share(expected, total)
    claim = Claim(
        "layers",
        "The culture-general neurons sit in shallow-to-middle layers",
        "general set",
        ci_verdict(low, high, +1),
        number,
        value,
        low,
        high,
        "CI: Wilson interval minus the pool's share, neurons counted as independent draws",
        p=p_at_least(pools, lower, hits),
        p_test="hypergeometric test against the pool (one-sided)" if known else "binomial test (one-sided)",
        mde=None if detectable is None else 100 * (detectable - expected),
        effect=f"an excess share in {where}",
        n=total,
        n_unit="neurons",
    )
    return finish(claim)
