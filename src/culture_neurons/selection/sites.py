"""Site names and their canonical order (the tie-break order of every selection)."""

from __future__ import annotations

from collections.abc import Iterable

# Canonical site order; ties between equal scores are broken by (site rank, layer, index).
SITE_ORDER = ("mlp.gate", "mlp.up", "mlp.in", "attn.q", "attn.k", "attn.v")


def site_rank(site: str) -> tuple[int, str]:
    """Sort key of a site name: canonical sites first in :data:`SITE_ORDER`, others alphabetically."""
    return (SITE_ORDER.index(site), "") if site in SITE_ORDER else (len(SITE_ORDER), site)


def ordered_sites(sites: Iterable[str]) -> list[str]:
    """Distinct site names in canonical order."""
    return sorted(set(sites), key=site_rank)
