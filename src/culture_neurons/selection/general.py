"""The culture-general selector (the paper's rule, plus optional exclusion tables)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..attribution.scoretable import ScoreTable
from .inputs import SelectionInputs, check_fraction, gather_inputs, site_tuple
from .neuronset import NeuronSet
from .options import GENERAL
from .ranking import Columns, Pool, merge_columns, top_count, top_indices
from .scores import drop_excluded, general_score, total_score


def select_general(
    dataset_tables: Sequence[ScoreTable],
    control_tables: Sequence[ScoreTable],
    countryrc_table: ScoreTable | None,
    t_mlp: float = GENERAL.t_mlp,
    t_attn: float = GENERAL.t_attn,
    r: float = GENERAL.r,
    mlp_sites: Sequence[str] = tuple(GENERAL.mlp_sites),
    attn_sites: Sequence[str] = tuple(GENERAL.attn_sites),
    exclude: Sequence[tuple[ScoreTable, float]] = (),
) -> NeuronSet:
    """Select culture-general neurons (the paper's rule).

    In the MLP pool keep the top ``t_mlp`` by general score, in the attention pool the top
    ``t_attn``; then drop from each pool the neurons that are in that pool's top ``r`` by
    CountryRC score (summed over all countries). ``countryrc_table=None`` skips that step.

    Args:
        dataset_tables: ScoreTables of the cultural datasets; their control-subtracted scores are summed.
        control_tables: one control table per dataset (paired in order), or one for all.
        countryrc_table: the CountryRC ScoreTable, or None.
        t_mlp, t_attn, r: fractions (0.01 = 1%).
        mlp_sites, attn_sites: the two pools' sites; an empty tuple skips a pool. Non-gated
            models (GPT-2, NeoX) need ``mlp_sites=("mlp.in",)``.
        exclude: ``(table, r)`` pairs: also drop the neurons in each pool's top ``r`` by the
            table's score summed over all its groups (the CountryRC rule for any table, e.g. one
            scored on an NLU set, to keep general-ability neurons out).

    Returns:
        A NeuronSet of kind ``general``, MLP pool first, each pool ordered best first.
    """
    t_mlp, t_attn, r = check_fraction("t_mlp", t_mlp), check_fraction("t_attn", t_attn), check_fraction("r", r)
    pools_spec = [("mlp", site_tuple(mlp_sites), t_mlp), ("attn", site_tuple(attn_sites), t_attn)]
    inp = gather_inputs(
        dataset_tables, control_tables, countryrc_table, [s for _, sites, _ in pools_spec for s in sites], exclude
    )
    parts, stats = [], []
    for label, sites, frac in pools_spec:
        if sites:
            columns, stat = _select_pool(inp, label, sites, frac, r)
            parts.append(columns)
            stats.append(stat)
    names, ids, layers, indices, scores = merge_columns(parts)
    params = {
        "rule": "general",
        "t_mlp": t_mlp,
        "t_attn": t_attn,
        "r": r,
        "mlp_sites": list(mlp_sites),
        "attn_sites": list(attn_sites),
        "countryrc": inp.countryrc is not None,
        "pools": stats,
    }
    if inp.exclude:
        params["exclude"] = [{"table": e.name, "r": e.r} for e in inp.exclude]
    return NeuronSet(
        names,
        ids,
        layers,
        indices,
        scores,
        kind="general",
        num_layers=inp.num_layers,
        widths=inp.widths,
        model=inp.model,
        params=params,
        sources=inp.sources(),
    )


def _select_pool(
    inp: SelectionInputs, label: str, sites: tuple[str, ...], frac: float, r: float
) -> tuple[Columns, dict[str, Any]]:
    """One pool's kept neurons (top ``frac`` by general score, less the CountryRC and exclusion tops) and its stats."""
    pool = Pool.of(sites, inp.num_layers, inp.widths)
    score = pool.flatten({s: general_score(inp, s) for s in pool.sites})
    top = top_indices(score, top_count(frac, pool.size))
    crc = pool.flatten({s: total_score(inp.countryrc[1], s) for s in pool.sites}) if inp.countryrc else None
    top, dropped = drop_excluded(inp, pool, top, crc, r)
    stat = {
        "name": label,
        "sites": list(pool.sites),
        "size": pool.size,
        "fraction": frac,
        "top": top_count(frac, pool.size),
        **dropped,
        "count": int(top.numel()),
    }
    return pool.columns(top, score[top]), stat
