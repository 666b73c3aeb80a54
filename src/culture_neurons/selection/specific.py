"""The culture-specific selector (the paper's rule, plus optional exclusion tables) and its country plan."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ..attribution.scoretable import ScoreTable
from ..data.countries import TARGET_COUNTRIES
from ..errors import InputError
from .inputs import SelectionInputs, check_fraction, gather_inputs, site_tuple
from .neuronset import NeuronSet
from .options import SPECIFIC
from .ranking import Pool, merge_columns, top_count, top_indices
from .scores import country_column, country_rows, drop_excluded


@dataclass
class CountryPlan:
    """Which countries get a set, and which were left out and why (``{country: reason}``)."""

    common: list[str]
    chosen: list[str]
    dropped: dict[str, str] = field(default_factory=dict)


def _common(inp: SelectionInputs) -> list[str]:
    common = [g for g in inp.datasets[0][1].groups if all(g in t.groups for _, t in inp.datasets)]
    if not common:
        raise InputError(
            "the dataset tables share no group (country); culture-specific selection needs common countries"
        )
    for name, c in inp.controls:
        missing = [g for g in common if g not in c.groups]
        if missing:
            raise InputError(
                f"a country missing from one table: {name} has no group {missing[0]!r} (it has {', '.join(c.groups)})"
            )
    return common


def plan_countries(inp: SelectionInputs, countries: Sequence[str] | str | None) -> CountryPlan:
    """Resolve ``countries`` against the tables.

    ``None`` takes every country the dataset tables share that the CountryRC table also has, and
    records each other country seen in any table with the reason it was left out. Named countries
    (or ``"targets"``, the paper's 8) must all be present: a missing one is an error.
    """
    common = _common(inp)
    crc = inp.countryrc
    if countries is None:
        chosen = [g for g in common if crc is None or g in crc[1].groups]
        dropped: dict[str, str] = {}
        for _, t in inp.datasets:
            for g in t.groups:
                if g not in common and g not in dropped:
                    lacking = next(n for n, tb in inp.datasets if g not in tb.groups)
                    dropped[g] = f"not in {lacking}"
        for g in common:
            if g not in chosen:
                dropped[g] = f"not in the CountryRC table {crc[0]}" if crc else "not in every table"
        if not chosen:
            raise InputError(
                f"no country is in both the dataset tables ({', '.join(common)}) and the CountryRC table "
                f"({', '.join(crc[1].groups) if crc else ''})"
            )
        return CountryPlan(common, chosen, dropped)
    if isinstance(countries, str):
        if countries == "targets":
            countries = list(TARGET_COUNTRIES)
        else:
            countries = [countries]
    for c in countries:
        if c not in common:
            lacking = next(name for name, tb in inp.datasets if c not in tb.groups)
            raise InputError(f"a country missing from one table: {lacking} has no group {c!r}")
        if crc is not None and c not in crc[1].groups:
            raise InputError(
                f"a country missing from one table: {crc[0]} has no group {c!r} (it has {', '.join(crc[1].groups)}); "
                "pass countryrc_table=None to skip the CountryRC exclusion"
            )
    return CountryPlan(common, list(countries))


def select_specific(
    dataset_tables: Sequence[ScoreTable],
    control_tables: Sequence[ScoreTable],
    countryrc_table: ScoreTable | None,
    country: str,
    t: float = SPECIFIC.t,
    r: float = SPECIFIC.r,
    z: float = SPECIFIC.z,
    sites: Sequence[str] = tuple(SPECIFIC.sites),
    exclude: Sequence[tuple[ScoreTable, float]] = (),
) -> NeuronSet:
    """Select the culture-specific neurons of one country (the paper's rule).

    In one pool of ``sites``: keep the top ``t`` by the country score ``s_c``; drop those in the
    top ``r`` by the country's CountryRC score, and those in the top ``r`` of each ``exclude``
    table (its score summed over all its groups); keep those with ``z >= z`` where
    ``z = (s_c - mean over countries) / population std over countries`` (0 when every country
    scores the neuron the same). The countries are the groups common to all dataset tables.

    Raises:
        InputError: the country is missing from a dataset, control or CountryRC table
            (``countryrc_table=None`` skips the CountryRC step).
    """
    return select_specific_many(
        dataset_tables, control_tables, countryrc_table, [country], t=t, r=r, z=z, sites=sites, exclude=exclude
    )[country]


def _z_scores(rows: torch.Tensor, j: int) -> torch.Tensor:
    dev = rows - rows.mean(1, keepdim=True)
    std = dev.pow(2).mean(1).sqrt()
    flat = rows.amax(1) == rows.amin(1)
    safe = torch.where(std == 0, torch.ones_like(std), std)
    return torch.where(flat | (std == 0), torch.zeros_like(std), dev[:, j] / safe)


def select_specific_many(
    dataset_tables: Sequence[ScoreTable],
    control_tables: Sequence[ScoreTable],
    countryrc_table: ScoreTable | None,
    countries: Sequence[str] | str | None = SPECIFIC.countries,
    t: float = SPECIFIC.t,
    r: float = SPECIFIC.r,
    z: float = SPECIFIC.z,
    sites: Sequence[str] = tuple(SPECIFIC.sites),
    exclude: Sequence[tuple[ScoreTable, float]] = (),
) -> dict[str, NeuronSet]:
    """:func:`select_specific` for several countries at once, sharing the score matrix.

    ``countries=None`` takes every country of the CountryRC table that the datasets have (or every
    dataset country without a CountryRC table); the others are listed with their reason in each
    set's ``params["dropped_countries"]`` (see :func:`plan_countries`).
    """
    t, r = check_fraction("t", t), check_fraction("r", r)
    if isinstance(z, bool) or not isinstance(z, (int, float)) or math.isnan(z):
        raise InputError(f"z must be a number, got {z!r}")
    sites = site_tuple(sites)
    inp = gather_inputs(dataset_tables, control_tables, countryrc_table, sites, exclude)
    plan = plan_countries(inp, countries)
    pool = Pool.of(sites, inp.num_layers, inp.widths)
    k = top_count(t, pool.size)
    sources = inp.sources()
    crc = inp.countryrc
    out = {}
    for c in plan.chosen:
        column = country_column(inp, pool, c)
        top = top_indices(column, k)
        crc_col = None
        if crc is not None:
            gi = crc[1].group_index(c)
            crc_col = pool.flatten({s: crc[1].scores[s][..., gi].double() for s in pool.sites})
        top, dropped = drop_excluded(inp, pool, top, crc_col, r)
        passed = _z_scores(country_rows(inp, pool, top, plan.common), plan.common.index(c)) >= z
        top = top[passed]
        names, ids, layers, indices, scores = merge_columns([pool.columns(top, column[top])])
        params = {
            "rule": "specific",
            "country": c,
            "t": t,
            "r": r,
            "z": float(z),
            "sites": list(sites),
            "countries": plan.common,
            "countryrc": crc is not None,
            "pools": [
                {
                    "name": "all",
                    "sites": list(pool.sites),
                    "size": pool.size,
                    "fraction": t,
                    "top": k,
                    **dropped,
                    "z_dropped": int((~passed).sum()),
                    "count": int(top.numel()),
                }
            ],
        }
        if inp.exclude:
            params["exclude"] = [{"table": e.name, "r": e.r} for e in inp.exclude]
        if plan.dropped:
            params["dropped_countries"] = dict(plan.dropped)
        out[c] = NeuronSet(
            names,
            ids,
            layers,
            indices,
            scores,
            kind=f"specific:{c}",
            num_layers=inp.num_layers,
            widths=inp.widths,
            model=inp.model,
            params=params,
            sources=sources,
        )
    return out
