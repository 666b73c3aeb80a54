"""The culture-general, culture-specific and random selectors (pure tensor code over ScoreTables).

Scores (float64, from the float32 tables):

- general score of a neuron: ``sum over datasets d of (S_d - S_c(d))`` where ``S`` is the sum over
  all groups divided by the table's number of examples, and ``c(d)`` is the control table paired
  with dataset ``d``;
- country score ``s_c``: ``sum over d of (X_d[c] / N_d - C_d[c] / N_c(d))`` with the *total*
  example counts as divisors (the paper's choice);
- CountryRC score: the plain sum over examples (all groups for the general rule, group ``c`` for
  the specific rule).

A pool is a set of sites; its neurons are flattened in the order (site, layer, index), with sites
in canonical order (``mlp.gate, mlp.up, mlp.in, attn.q, attn.k, attn.v``). "The top fraction t of
a pool" is the ``floor(t * pool size)`` neurons with the highest score; equal scores are broken by
that order (lower site rank, layer, index first), so every selection is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..attribution.scoretable import ScoreTable
from ..errors import InputError, TableError
from .neuronset import NeuronSet, _shape_of, ordered_sites

GENERAL_DEFAULTS = {
    "t_mlp": 0.01,
    "t_attn": 0.002,
    "r": 0.01,
    "mlp_sites": ("mlp.gate",),
    "attn_sites": ("attn.q", "attn.k", "attn.v"),
}
SPECIFIC_DEFAULTS = {"t": 0.003, "r": 0.01, "z": 0.5, "sites": ("mlp.gate", "attn.q", "attn.k", "attn.v")}


# ---------------------------------------------------------------------------------------------
# pools and ranking


@dataclass(frozen=True)
class Pool:
    """Sites flattened into one index space ordered by (site, layer, index)."""

    sites: tuple[str, ...]
    num_layers: int
    widths: tuple[int, ...]

    @classmethod
    def of(cls, sites: Sequence[str], num_layers: int, widths: Mapping[str, int]) -> Pool:
        names = tuple(ordered_sites(sites))
        return cls(names, int(num_layers), tuple(int(widths[s]) for s in names))

    @property
    def offsets(self) -> torch.Tensor:
        sizes = torch.tensor([0, *(self.num_layers * w for w in self.widths)], dtype=torch.int64)
        return sizes.cumsum(0)

    @property
    def size(self) -> int:
        return self.num_layers * sum(self.widths)

    def flatten(self, per_site: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Concatenate ``{site: [L, W, ...]}`` into ``[size, ...]`` in pool order."""
        parts = [
            per_site[s].reshape(self.num_layers * w, *per_site[s].shape[2:]) for s, w in zip(self.sites, self.widths)
        ]
        return torch.cat(parts) if len(parts) > 1 else parts[0]

    def locate(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pool positions -> (site id in ``self.sites``, layer, index)."""
        offsets = self.offsets
        site = torch.searchsorted(offsets[1:], flat, right=True)
        local = flat - offsets[site]
        width = torch.tensor(self.widths, dtype=torch.int64)[site]
        return site, local // width, local % width


def top_count(fraction: float, n: int) -> int:
    """How many neurons "the top ``fraction``" of ``n`` is: ``floor(fraction * n)`` (robust to float error)."""
    return min(n, int(math.floor(fraction * n + 1e-9)))


def top_indices(values: torch.Tensor, k: int) -> torch.Tensor:
    """Positions of the ``k`` largest values, best first; ties go to the lower position."""
    n = values.numel()
    k = max(0, min(k, n))
    if k == 0:
        return torch.zeros(0, dtype=torch.int64)
    kth = torch.topk(values, k, sorted=False).values.min()
    above = (values > kth).nonzero().squeeze(1)
    tied = (values == kth).nonzero().squeeze(1)[: k - above.numel()]
    idx = torch.cat([above, tied]).sort().values
    return idx[torch.sort(values[idx], descending=True, stable=True).indices]


def top_mask(values: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of :func:`top_indices`."""
    mask = torch.zeros(values.numel(), dtype=torch.bool)
    mask[top_indices(values, k)] = True
    return mask


# ---------------------------------------------------------------------------------------------
# input checks


def _name(table: ScoreTable, role: str) -> str:
    dataset = table.meta.get("dataset")
    return f"{role} ({dataset!r})" if dataset else role


def _check_fraction(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= float(value) <= 1.0:
        raise InputError(f"{name} must be a fraction between 0 and 1 (0.01 = 1%), got {value!r}")
    return float(value)


@dataclass
class _Inputs:
    datasets: list[tuple[str, ScoreTable]]
    controls: list[tuple[str, ScoreTable]]  # paired with datasets
    countryrc: tuple[str, ScoreTable] | None
    num_layers: int
    widths: dict[str, int]
    model: dict[str, Any]

    def all(self) -> list[tuple[str, ScoreTable]]:
        seen, out = set(), []
        for name, t in [*self.datasets, *self.controls, *([self.countryrc] if self.countryrc else [])]:
            if id(t) not in seen:
                seen.add(id(t))
                out.append((name, t))
        return out

    def sources(self) -> dict[str, Any]:
        hashes: dict[int, str] = {}

        def describe(t: ScoreTable) -> dict[str, Any]:
            if id(t) not in hashes:
                hashes[id(t)] = t.content_hash()
            return {
                "dataset": t.meta.get("dataset"),
                "split": t.meta.get("split"),
                "examples": t.num_examples,
                "sha256": hashes[id(t)],
            }

        return {
            "dataset_tables": [describe(t) for _, t in self.datasets],
            "control_tables": [describe(t) for _, t in self.controls],
            "countryrc_table": describe(self.countryrc[1]) if self.countryrc else None,
        }


def _inputs(
    dataset_tables: Sequence[ScoreTable],
    control_tables: Sequence[ScoreTable],
    countryrc_table: ScoreTable | None,
    sites: Sequence[str],
) -> _Inputs:
    if isinstance(dataset_tables, ScoreTable) or isinstance(control_tables, ScoreTable):
        raise InputError("dataset_tables and control_tables must be lists of ScoreTables (wrap a single table in [ ])")
    dataset_tables, control_tables = list(dataset_tables), list(control_tables)
    if not dataset_tables:
        raise InputError("selection needs at least one dataset ScoreTable")
    if len(control_tables) not in (1, len(dataset_tables)):
        raise InputError(
            f"got {len(dataset_tables)} dataset table(s) and {len(control_tables)} control table(s); "
            "give one control per dataset (paired in order) or a single control for all"
        )
    for i, t in enumerate([*dataset_tables, *control_tables, countryrc_table]):
        if t is not None and not isinstance(t, ScoreTable):
            raise InputError(f"expected ScoreTables, got {type(t).__name__}")
    datasets = [(_name(t, f"dataset_tables[{i}]"), t) for i, t in enumerate(dataset_tables)]
    controls = [(_name(t, f"control_tables[{i}]"), t) for i, t in enumerate(control_tables)]
    if len(controls) == 1 and len(datasets) > 1:
        controls = controls * len(datasets)
    for name, t in datasets:
        if t.options.get("control") is True:
            raise InputError(f"{name} was scored as a control set (clamped at 0); pass it in control_tables")
    for name, t in controls:
        if t.options.get("control") is False:
            raise InputError(
                f"{name} was not scored as a control set (score it with --control); pass it in dataset_tables"
            )
    crc = (_name(countryrc_table, "countryrc_table"), countryrc_table) if countryrc_table is not None else None
    first_name, first = datasets[0]
    want = ordered_sites(sites)
    if not want:
        raise InputError("no sites to select from")
    for name, t in [*datasets, *controls, *([crc] if crc else [])]:
        missing = [s for s in want if s not in t.scores]
        if missing:
            raise InputError(
                f"site(s) {', '.join(missing)} not in {name}, which has {', '.join(t.sites)}; choose the pool's sites from those"
            )
        a, b = first.model_id.get("config_sha256"), t.model_id.get("config_sha256")
        if a and b and a != b:
            raise TableError(
                f"a ScoreTable from another model used for selection: {name} was scored on {t.model_id.get('name_or_path')!r}, "
                f"{first_name} on {first.model_id.get('name_or_path')!r} (config hashes differ)"
            )
        for s in want:
            if t.scores[s].shape[:2] != first.scores[s].shape[:2]:
                raise TableError(
                    f"a ScoreTable from another model used for selection: {name} has {s} of shape {list(t.scores[s].shape[:2])}, "
                    f"{first_name} has {list(first.scores[s].shape[:2])} (layers x channels)"
                )
    widths = {s: int(w) for s, w in first.widths.items()}
    return _Inputs(datasets, controls, crc, first.num_layers, widths, {**first.model_id})


def _site_tuple(sites: str | Sequence[str]) -> tuple[str, ...]:
    return (sites,) if isinstance(sites, str) else tuple(sites)


def _total(t: ScoreTable, site: str) -> torch.Tensor:
    """Sum over groups, float64 ``[L, W]``."""
    return t.scores[site].sum(-1, dtype=torch.float64)


def general_scores(
    dataset_tables: Sequence[ScoreTable], control_tables: Sequence[ScoreTable], site: str
) -> torch.Tensor:
    """The general score ``sum_d (S_d - S_c(d))`` of one site, float64 ``[L, W]`` (controls paired or shared)."""
    inp = _inputs(dataset_tables, control_tables, None, [site])
    return _general(inp, site)


def _general(inp: _Inputs, site: str) -> torch.Tensor:
    total = torch.zeros(inp.num_layers, inp.widths[site], dtype=torch.float64)
    for (_, d), (_, c) in zip(inp.datasets, inp.controls):
        total += _total(d, site) / max(d.num_examples, 1) - _total(c, site) / max(c.num_examples, 1)
    return total


def _countries(inp: _Inputs) -> list[str]:
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


def _country_column(inp: _Inputs, pool: Pool, country: str) -> torch.Tensor:
    """``s_c`` of one country for every neuron of ``pool``, float64 ``[pool size]``."""
    out = torch.zeros(pool.size, dtype=torch.float64)
    for (_, d), (_, c) in zip(inp.datasets, inp.controls):
        di, ci = d.group_index(country), c.group_index(country)
        out += pool.flatten({s: d.scores[s][..., di].double() for s in pool.sites}) / max(d.num_examples, 1)
        out -= pool.flatten({s: c.scores[s][..., ci].double() for s in pool.sites}) / max(c.num_examples, 1)
    return out


def _country_rows(inp: _Inputs, pool: Pool, flat: torch.Tensor, countries: Sequence[str]) -> torch.Tensor:
    """``s_c`` of every country for the neurons at pool positions ``flat``, float64 ``[n, countries]``.

    The arithmetic matches :func:`_country_column` operation for operation, so column ``j`` equals
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


def _records(pool: Pool, flat: torch.Tensor) -> tuple[list[str], torch.Tensor, torch.Tensor, torch.Tensor]:
    site, layer, index = pool.locate(flat)
    return list(pool.sites), site, layer, index


def _merge(
    parts: list[tuple[list[str], torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]],
) -> tuple[list[str], torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    names = ordered_sites(s for p in parts for s in p[0])
    ids, layers, indices, scores = [], [], [], []
    for sites, site, layer, index, score in parts:
        remap = torch.tensor([names.index(s) for s in sites], dtype=torch.int64)
        ids.append(remap[site])
        layers.append(layer)
        indices.append(index)
        scores.append(score)
    cat = lambda xs, dt: torch.cat(xs) if xs else torch.zeros(0, dtype=dt)  # noqa: E731
    return names, cat(ids, torch.int64), cat(layers, torch.int64), cat(indices, torch.int64), cat(scores, torch.float64)


# ---------------------------------------------------------------------------------------------
# the selectors


def select_general(
    dataset_tables: Sequence[ScoreTable],
    control_tables: Sequence[ScoreTable],
    countryrc_table: ScoreTable | None,
    t_mlp: float = 0.01,
    t_attn: float = 0.002,
    r: float = 0.01,
    mlp_sites: Sequence[str] = ("mlp.gate",),
    attn_sites: Sequence[str] = ("attn.q", "attn.k", "attn.v"),
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

    Returns:
        A NeuronSet of kind ``general``, MLP pool first, each pool ordered best first.
    """
    t_mlp, t_attn, r = _check_fraction("t_mlp", t_mlp), _check_fraction("t_attn", t_attn), _check_fraction("r", r)
    pools_spec = [("mlp", _site_tuple(mlp_sites), t_mlp), ("attn", _site_tuple(attn_sites), t_attn)]
    inp = _inputs(dataset_tables, control_tables, countryrc_table, [s for _, sites, _ in pools_spec for s in sites])
    parts, stats = [], []
    for label, sites, frac in pools_spec:
        if not sites:
            continue
        pool = Pool.of(sites, inp.num_layers, inp.widths)
        score = pool.flatten({s: _general(inp, s) for s in pool.sites})
        top = top_indices(score, top_count(frac, pool.size))
        excluded = 0
        if inp.countryrc is not None:
            crc = inp.countryrc[1]
            banned = top_mask(pool.flatten({s: _total(crc, s) for s in pool.sites}), top_count(r, pool.size))
            keep = ~banned[top]
            excluded = int((~keep).sum())
            top = top[keep]
        parts.append((*_records(pool, top), score[top]))
        stats.append(
            {
                "name": label,
                "sites": list(pool.sites),
                "size": pool.size,
                "fraction": frac,
                "top": top_count(frac, pool.size),
                "countryrc_excluded": excluded,
                "count": int(top.numel()),
            }
        )
    names, ids, layers, indices, scores = _merge(parts)
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


def select_specific(
    dataset_tables: Sequence[ScoreTable],
    control_tables: Sequence[ScoreTable],
    countryrc_table: ScoreTable | None,
    country: str,
    t: float = 0.003,
    r: float = 0.01,
    z: float = 0.5,
    sites: Sequence[str] = ("mlp.gate", "attn.q", "attn.k", "attn.v"),
) -> NeuronSet:
    """Select the culture-specific neurons of one country (the paper's rule).

    In one pool of ``sites``: keep the top ``t`` by the country score ``s_c``; drop those in the
    top ``r`` by the country's CountryRC score; keep those with ``z >= z`` where
    ``z = (s_c - mean over countries) / population std over countries`` (0 when every country
    scores the neuron the same). The countries are the groups common to all dataset tables.

    Raises:
        InputError: the country is missing from a dataset, control or CountryRC table
            (``countryrc_table=None`` skips the CountryRC step).
    """
    return select_specific_many(dataset_tables, control_tables, countryrc_table, [country], t=t, r=r, z=z, sites=sites)[
        country
    ]


def select_specific_many(
    dataset_tables: Sequence[ScoreTable],
    control_tables: Sequence[ScoreTable],
    countryrc_table: ScoreTable | None,
    countries: Sequence[str] | None = None,
    t: float = 0.003,
    r: float = 0.01,
    z: float = 0.5,
    sites: Sequence[str] = ("mlp.gate", "attn.q", "attn.k", "attn.v"),
) -> dict[str, NeuronSet]:
    """:func:`select_specific` for several countries at once (default: every country of the
    CountryRC table that the datasets have, or every dataset country without a CountryRC table),
    sharing the score matrix."""
    t, r = _check_fraction("t", t), _check_fraction("r", r)
    if isinstance(z, bool) or not isinstance(z, (int, float)) or math.isnan(z):
        raise InputError(f"z must be a number, got {z!r}")
    if isinstance(countries, str):
        countries = [countries]
    sites = _site_tuple(sites)
    inp = _inputs(dataset_tables, control_tables, countryrc_table, sites)
    common = _countries(inp)
    crc = inp.countryrc
    if countries is None:
        countries = [g for g in common if crc is None or g in crc[1].groups]
        if not countries:
            raise InputError(
                f"no country is in both the dataset tables ({', '.join(common)}) and the CountryRC table ({', '.join(crc[1].groups)})"
            )
    for c in countries:
        if c not in common:
            lacking = next(name for name, tb in inp.datasets if c not in tb.groups)
            raise InputError(f"a country missing from one table: {lacking} has no group {c!r}")
        if crc is not None and c not in crc[1].groups:
            raise InputError(
                f"a country missing from one table: {crc[0]} has no group {c!r} (it has {', '.join(crc[1].groups)}); "
                "pass countryrc_table=None to skip the CountryRC exclusion"
            )
    pool = Pool.of(sites, inp.num_layers, inp.widths)
    k, k_r = top_count(t, pool.size), top_count(r, pool.size)
    sources = inp.sources()
    out = {}
    for c in countries:
        j = common.index(c)
        column = _country_column(inp, pool, c)
        top = top_indices(column, k)
        excluded = 0
        if crc is not None:
            gi = crc[1].group_index(c)
            banned = top_mask(pool.flatten({s: crc[1].scores[s][..., gi].double() for s in pool.sites}), k_r)
            keep = ~banned[top]
            excluded = int((~keep).sum())
            top = top[keep]
        rows = _country_rows(inp, pool, top, common)
        dev = rows - rows.mean(1, keepdim=True)
        std = dev.pow(2).mean(1).sqrt()
        flat = rows.amax(1) == rows.amin(1)
        zs = torch.where(
            flat | (std == 0), torch.zeros_like(std), dev[:, j] / torch.where(std == 0, torch.ones_like(std), std)
        )
        passed = zs >= z
        top = top[passed]
        names, ids, layers, indices, scores = _merge([(*_records(pool, top), column[top])])
        params = {
            "rule": "specific",
            "country": c,
            "t": t,
            "r": r,
            "z": float(z),
            "sites": list(sites),
            "countries": common,
            "countryrc": crc is not None,
            "pools": [
                {
                    "name": "all",
                    "sites": list(pool.sites),
                    "size": pool.size,
                    "fraction": t,
                    "top": k,
                    "countryrc_excluded": excluded,
                    "z_dropped": int((~passed).sum()),
                    "count": int(top.numel()),
                }
            ],
        }
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


def select_random(
    like: NeuronSet,
    seed: int,
    pool: Sequence[str] | Sequence[Sequence[str]] | None = None,
    layer_matched: bool = False,
    shape: Any = None,
) -> NeuronSet:
    """Draw a random set of the same size as ``like``, uniformly and without replacement.

    Args:
        like: the set to imitate.
        seed: the draw's seed (the same seed always gives the same set).
        pool: sites to draw from: a tuple of sites (one pool), or a tuple of such tuples (several
            pools, each receiving as many neurons as ``like`` has in it). Default: the pools
            ``like`` was selected from (a general set's MLP and attention pools), else the sites
            ``like`` uses.
        layer_matched: also match ``like``'s number of neurons per (pool, layer).
        shape: (num_layers, widths), a ScoreTable or a ModelAdapter, for sets that do not record
            their model's shape (imported reference sets).

    Returns:
        A NeuronSet of kind ``random:<seed>``, ordered by (site, layer, index).
    """
    if not isinstance(like, NeuronSet):
        raise InputError(f"like must be a NeuronSet, got {type(like).__name__}")
    if len(like) == 0:
        raise InputError(f"NeuronSet {like.kind!r} is empty; a random baseline of size 0 is meaningless")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError(f"seed must be an integer, got {seed!r}")
    num_layers, widths = _shape_of(shape) if shape is not None else (like.num_layers, like.widths)
    if num_layers is None or widths is None:
        raise InputError(
            f"NeuronSet {like.kind!r} does not record its model's shape; pass shape=(num_layers, widths), a ScoreTable or an adapter"
        )
    if isinstance(pool, str):
        pool = (pool,)
    if pool is None:
        recorded = [tuple(p["sites"]) for p in like.params.get("pools", []) if isinstance(p, dict) and p.get("sites")]
        pools = recorded or [tuple(like.sites)]
    elif all(isinstance(p, str) for p in pool):
        pools = [tuple(pool)]
    else:
        pools = [tuple(p) for p in pool]
    flat_sites = [s for p in pools for s in p]
    if len(set(flat_sites)) != len(flat_sites):
        raise InputError(f"random pools overlap: {pools}")
    unknown = [s for s in flat_sites if s not in widths]
    if unknown:
        raise InputError(f"random pool site(s) {unknown} not in the model (sites: {', '.join(widths)})")
    outside = [s for s in like.sites if s not in flat_sites]
    if outside:
        raise InputError(f"NeuronSet {like.kind!r} has neurons in {outside}, outside the random pool(s) {pools}")
    if int(like.layers.max()) >= num_layers:
        raise InputError(
            f"NeuronSet {like.kind!r} has neurons in layer {int(like.layers.max())} but the model has {num_layers} layers"
        )
    generator = torch.Generator().manual_seed(seed)
    like_sites = [like.site_names[i] for i in range(len(like.site_names))]
    parts, stats = [], []
    for sites in pools:
        p = Pool.of(sites, num_layers, widths)
        member = torch.tensor([s in p.sites for s in like_sites], dtype=torch.bool)[like.site_ids]
        if layer_matched:
            # Draw layer by layer (a loop over layers, not neurons): within one layer the pool's
            # neurons are numbered site after site.
            need = torch.bincount(like.layers[member], minlength=num_layers)
            widths_t = torch.tensor(p.widths, dtype=torch.int64)
            in_layer = torch.cat([torch.zeros(1, dtype=torch.int64), widths_t.cumsum(0)])
            drawn = []
            for layer in need.nonzero().squeeze(1).tolist():
                local = torch.randperm(int(in_layer[-1]), generator=generator)[: int(need[layer])]
                sid = torch.searchsorted(in_layer[1:], local, right=True)
                drawn.append(p.offsets[sid] + layer * widths_t[sid] + (local - in_layer[sid]))
            chosen = torch.cat(drawn) if drawn else torch.zeros(0, dtype=torch.int64)
        else:
            chosen = torch.randperm(p.size, generator=generator)[: int(member.sum())]
        chosen = chosen.sort().values
        parts.append((*_records(p, chosen), torch.full((chosen.numel(),), float("nan"), dtype=torch.float64)))
        stats.append({"sites": list(p.sites), "size": p.size, "count": int(chosen.numel())})
    names, ids, layers, indices, scores = _merge(parts)
    params = {"rule": "random", "seed": seed, "layer_matched": bool(layer_matched), "pools": stats}
    sources = {
        "like": {"kind": like.kind, "sha256": like.content_hash(), "count": len(like)},
        **{k: v for k, v in like.sources.items() if k != "like"},
    }
    return NeuronSet(
        names,
        ids,
        layers,
        indices,
        scores,
        kind=f"random:{seed}",
        num_layers=num_layers,
        widths=widths,
        model=like.model,
        params=params,
        sources=sources,
    )
