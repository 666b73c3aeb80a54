"""The selection scores, in float64 from the float32 tables.

- general score of a neuron: ``sum over datasets d of (S_d - S_c(d))`` where ``S`` is the sum over
  all groups divided by the table's number of examples, and ``c(d)`` is the control table paired
  with dataset ``d``;
- country score ``s_c``: ``sum over d of (X_d[c] / N_d - C_d[c] / N_c(d))`` with the *total*
  example counts as divisors (the paper's choice);
- CountryRC score: the plain sum over examples (all groups for the general rule, group ``c`` for
  the specific rule);
- exclusion score (``exclude=[(table, r)]``): the plain sum over all of the table's groups, for
  both rules. Such a table is meant to be scored on a general-ability (NLU) set, which has no
  countries, so its whole-dataset score is what "general ability" means.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..attribution.scoretable import ScoreTable
from .inputs import SelectionInputs
from .ranking import Pool, top_count, top_mask


def total_score(table: ScoreTable, site: str) -> torch.Tensor:
    """Sum over groups, float64 ``[L, W]``."""
    return table.scores[site].sum(-1, dtype=torch.float64)


def general_score(inp: SelectionInputs, site: str) -> torch.Tensor:
    """The general score of every neuron of ``site``, float64 ``[L, W]``."""
    total = torch.zeros(inp.num_layers, inp.widths[site], dtype=torch.float64)
    for (_, d), (_, c) in zip(inp.datasets, inp.controls):
        total += total_score(d, site) / max(d.num_examples, 1) - total_score(c, site) / max(c.num_examples, 1)
    return total


def country_column(inp: SelectionInputs, pool: Pool, country: str) -> torch.Tensor:
    """``s_c`` of one country for every neuron of ``pool``, float64 ``[pool size]``."""
    out = torch.zeros(pool.size, dtype=torch.float64)
    for (_, d), (_, c) in zip(inp.datasets, inp.controls):
        di, ci = d.group_index(country), c.group_index(country)
        out += pool.flatten({s: d.scores[s][..., di].double() for s in pool.sites}) / max(d.num_examples, 1)
        out -= pool.flatten({s: c.scores[s][..., ci].double() for s in pool.sites}) / max(c.num_examples, 1)
    return out


def country_rows(inp: SelectionInputs, pool: Pool, flat: torch.Tensor, countries: Sequence[str]) -> torch.Tensor:
    """``s_c`` of every country for the neurons at pool positions ``flat``, float64 ``[n, countries]``.

    The arithmetic matches :func:`country_column` operation for operation, so column ``j`` equals
    the column of country ``j`` exactly.
    """
    site, layer, index = pool.locate(flat)
    out = torch.zeros(flat.numel(), len(countries), dtype=torch.float64)

    def gather(table: ScoreTable) -> torch.Tensor:
        cols = torch.tensor([table.group_index(g) for g in countries])
        vals = torch.zeros(flat.numel(), len(countries), dtype=torch.float64)
        for sid, name in enumerate(pool.sites):
            m = site == sid
            vals[m] = table.scores[name][layer[m], index[m]].index_select(1, cols).double()
        return vals

    for (_, d), (_, c) in zip(inp.datasets, inp.controls):
        out += gather(d) / max(d.num_examples, 1)
        out -= gather(c) / max(c.num_examples, 1)
    return out


def drop_excluded(
    inp: SelectionInputs, pool: Pool, top: torch.Tensor, countryrc: torch.Tensor | None, r: float
) -> tuple[torch.Tensor, dict[str, int]]:
    """Remove from ``top`` (pool positions) the neurons banned by CountryRC and by each exclusion table.

    Args:
        countryrc: the pool's CountryRC score (``[pool size]``), or None to skip that step.
        r: the CountryRC fraction.

    Returns:
        The kept positions (order preserved) and the counts for the set's ``pools`` record:
        ``countryrc_excluded`` always, ``exclude_dropped`` (the further neurons the exclusion
        tables removed) only when there are exclusion tables.
    """
    stats = {"countryrc_excluded": 0}
    if countryrc is not None:
        keep = ~top_mask(countryrc, top_count(r, pool.size))[top]
        stats["countryrc_excluded"] = int((~keep).sum())
        top = top[keep]
    if inp.exclude:
        before = top.numel()
        for ex in inp.exclude:
            banned = top_mask(
                pool.flatten({s: total_score(ex.table, s) for s in pool.sites}), top_count(ex.r, pool.size)
            )
            top = top[~banned[top]]
        stats["exclude_dropped"] = before - int(top.numel())
    return top, stats
