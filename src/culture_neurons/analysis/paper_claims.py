"""The cross-culture claims beyond "own country hurt most": related cultures, and each country's set
against random sets of its size.

Both read the blocks :func:`culture_neurons.evaluation.experiments.cross_culture_summary` writes into
the cross-culture summary (``related`` and ``vs_random``; docs/evaluation.md, "Related cultures" and
"Cross-culture against random sets") and return a :class:`~.verdicts.Claim`, or None when the
summary has no such block (a run made before they existed, or no country with a related one).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import stats
from .verdicts import RANK_TEST, Claim, ci_verdict, finish, format_rank


def _pairs(table: Any) -> str:
    return ", ".join("–".join(str(c) for c in group) for group in table or []) or "none"


def related_claim(results: Mapping[str, Any] | None) -> Claim | None:
    """Culture-specific neurons support related cultures too: suppressing a country's set lowers its related
    cultures' accuracy more than its unrelated ones' (mean over countries, points; CI and p: the two-level
    bootstrap over countries and items)."""
    block = (results or {}).get("related") or {}
    if block.get("value") is None:
        return None
    value, lo, hi = block["value"], block.get("ci_low"), block.get("ci_high")
    k = int(block.get("countries") or 0)
    number = (
        f"drop on related cultures minus drop on unrelated ones {stats.format_ci(value, lo, hi)} points, "
        f"mean over {k} countr{'y' if k == 1 else 'ies'}"
    )
    claim = Claim(
        "related",
        "Culture-specific neurons support related cultures too",
        "cross-culture",
        ci_verdict(lo, hi, +1),
        number,
        value,
        lo,
        hi,
        f"related: {_pairs(block.get('table'))} (evaluate.related); CI: bootstrap over countries and items",
        p=block.get("p_one_sided"),
        p_test="bootstrap over countries and items (one-sided)" if block.get("p_one_sided") is not None else "",
        mde=block.get("mde"),
        effect="a related-minus-unrelated drop",
        n=k,
        n_unit="countries",
    )
    return finish(claim)


def own_country_random_claim(results: Mapping[str, Any] | None) -> Claim | None:
    """Each country's set hurts its own questions more than random sets of its size: the mean over countries
    of (own-country change − mean own-country change of its random sets), points; CI: normal from the
    countries' two-level SEs; p: the rank among pooled random replicates."""
    vs = (results or {}).get("vs_random") or {}
    pooled = vs.get("pooled") or {}
    if pooled.get("value") is None:
        return None
    value, lo, hi = pooled["value"], pooled.get("ci_low"), pooled.get("ci_high")
    per = vs.get("per_country") or {}
    first = sum(1 for b in per.values() if b.get("rank") == 1)
    m, k = pooled.get("m_random"), int(pooled.get("countries") or 0)
    ranked = pooled.get("p_mc") is not None and bool(m)
    number = f"own-country Δ vs random {stats.format_ci(value, lo, hi)} points, mean over {k} countries"
    if ranked:
        number += f", {format_rank(pooled.get('rank'), m)} (p_mc {stats.format_p(pooled['p_mc'])})"
    number += f"; the set drops more than all its {m or 0} random sets in {first} of {len(per)} countries"
    claim = Claim(
        "own-country-random",
        "Each country's culture-specific neurons hurt its own questions more than random sets of their size",
        "cross-culture",
        ci_verdict(lo, hi, -1),
        number,
        value,
        lo,
        hi,
        "random sets: layer-matched, one group per country; CI: normal from the countries' two-level SEs",
        p=pooled.get("p_mc") if ranked else None,
        p_test=RANK_TEST if ranked else "",
        rank=pooled.get("rank") if ranked else None,
        m_random=m if ranked else None,
        mde=pooled.get("mde"),
        effect="an own-country excess drop",
        n=pooled.get("n"),
    )
    return finish(claim)
