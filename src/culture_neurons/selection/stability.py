"""Stability selection: the neurons a rule selects on most resamples of the data, with a bound on false selections.

Meinshausen & Bühlmann (2010): run the selection rule on K resamples (halves) of the data, count
for each neuron the fraction of resamples that select it (its *selection frequency*), and keep the
neurons whose frequency is at least ``pi``. With ``q`` the average number of neurons the rule
selects on one resample and ``p`` the number of candidates in the pool, the expected number of
false selections (null neurons kept) is at most::

    E[V] <= q**2 / ((2 pi - 1) p)        for 0.5 < pi <= 1

The bound assumes that the null neurons' selection indicators are exchangeable (no null neuron is
more likely to be selected than another) and that the rule is not worse than random guessing (a
null neuron is selected with probability at most q / p). Shah & Samworth (2013) showed that the
same bound holds when the halves come in complementary pairs (a half and the other half), which is
how :func:`complementary_halves` draws them.

The general rule selects each pool (MLP, attention) with its own fraction, so null neurons of
different pools are not exchangeable: the bound is computed per pool (with that pool's q and p)
and the set's bound is their sum. The specific rule has one pool per country.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import torch

from ..attribution.scoretable import ScoreTable
from ..errors import InputError
from .general import select_general
from .neuronset import NeuronSet
from .options import GENERAL, SPECIFIC, STABILITY, check_pi
from .ranking import Pool, merge_columns, top_indices
from .setops import check_same_shape
from .specific import select_specific_many

ASSUMPTIONS = (
    "exchangeable null neurons within a pool, and a rule no worse than random guessing "
    "(a null neuron is selected with probability at most q/p); halves drawn in complementary pairs"
)


@dataclass(frozen=True)
class Resample:
    """The tables of one resample, as a selector takes them.

    ``countryrc=None`` skips the CountryRC step on this resample (pass the full CountryRC table to
    every resample to filter as the plain rule does).
    """

    datasets: Sequence[ScoreTable]
    controls: Sequence[ScoreTable]
    countryrc: ScoreTable | None = None
    name: str = ""


@dataclass
class StableSelection:
    """A stability-selected set and how it was reached.

    Attributes:
        set: the kept neurons, each scored by its selection frequency (best first within each pool).
        bound: the Meinshausen–Bühlmann bound on the expected number of false selections (sum over pools).
        pi: the frequency threshold; ``resamples``: K; ``sizes``: the rule's set size on each resample.
        pools: per pool ``{name, sites, size (p), q, count, bound}``.
        counts: per pool, how many resamples selected each neuron (int64 ``[pool size]``, pool order).
    """

    set: NeuronSet
    bound: float
    pi: float
    resamples: int
    sizes: list[int]
    pools: list[dict[str, Any]]
    counts: list[tuple[Pool, torch.Tensor]] = field(repr=False, default_factory=list)

    def frequency_rows(self, plain: NeuronSet | None = None) -> list[dict[str, Any]]:
        """One row per neuron selected on at least one resample: ``site, layer, index, frequency, stable``
        (and ``in_plain`` when ``plain`` is given), in pool order."""
        kept = _key_set(self.set)
        in_plain = _key_set(plain) if plain is not None else None
        rows = []
        for pool, count in self.counts:
            flat = count.nonzero().squeeze(1)
            site, layer, index = pool.locate(flat)
            for s, ly, ix, c in zip(site.tolist(), layer.tolist(), index.tolist(), count[flat].tolist()):
                key = (pool.sites[s], ly, ix)
                row = {"site": key[0], "layer": ly, "index": ix, "frequency": c / self.resamples, "stable": key in kept}
                if in_plain is not None:
                    row["in_plain"] = key in in_plain
                rows.append(row)
        return rows

    def summary(self, plain: NeuronSet | None = None) -> dict[str, Any]:
        """Size, bound and the pools' numbers (plus the Jaccard with ``plain``), for summaries and logs."""
        out: dict[str, Any] = {
            "size": len(self.set),
            "bound": self.bound,
            "pi": self.pi,
            "resamples": self.resamples,
            "sizes": list(self.sizes),
            "pools": [dict(p) for p in self.pools],
        }
        if plain is not None:
            out["plain_size"] = len(plain)
            out["jaccard_plain"] = jaccard(self.set, plain)
        return out


def _key_set(ns: NeuronSet) -> set[tuple[str, int, int]]:
    names = [ns.site_names[i] for i in ns.site_ids.tolist()]
    return set(zip(names, ns.layers.tolist(), ns.indices.tolist()))


def jaccard(a: NeuronSet, b: NeuronSet) -> float:
    """``|A ∩ B| / |A ∪ B|`` by (site, layer, index); two empty sets give 1."""
    ka, kb = _key_set(a), _key_set(b)
    union = len(ka | kb)
    return len(ka & kb) / union if union else 1.0


def mb_bound(q: float, p: int, pi: float) -> float:
    """Meinshausen–Bühlmann: ``E[false selections] <= q**2 / ((2 pi - 1) p)`` (0 for an empty pool)."""
    pi = check_pi(pi)
    return q * q / ((2 * pi - 1) * p) if p else 0.0


def pool_positions(ns: NeuronSet, pool: Pool) -> torch.Tensor:
    """Positions in ``pool``'s index space of the set's neurons that lie in the pool (int64)."""
    names = list(ns.site_names)
    offsets = pool.offsets
    parts = []
    for j, (site, width) in enumerate(zip(pool.sites, pool.widths)):
        if site not in names:
            continue
        mask = ns.site_ids == names.index(site)
        parts.append(offsets[j] + ns.layers[mask] * width + ns.indices[mask])
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.int64)


def _check_sets(sets: list[NeuronSet]) -> NeuronSet:
    if len(sets) < 2:
        raise InputError(f"stability selection needs at least 2 resamples, got {len(sets)}")
    first = sets[0]
    if first.num_layers is None or not first.widths:
        raise InputError(f"NeuronSet {first.kind!r} does not record its model's shape; stability selection needs it")
    for ns in sets[1:]:
        check_same_shape(first, ns)
    return first


def _pool_counts(sets: Sequence[NeuronSet], pool: Pool) -> tuple[torch.Tensor, list[int]]:
    """How many sets hold each neuron of ``pool`` (int64 ``[pool size]``), and each set's count in the pool."""
    count = torch.zeros(pool.size, dtype=torch.int64)
    per_set = []
    for ns in sets:
        pos = pool_positions(ns, pool)
        count.index_add_(0, pos, torch.ones_like(pos))
        per_set.append(pos.numel())
    return count, per_set


def stable_set(
    sets: Sequence[NeuronSet],
    pools: Sequence[tuple[str, Sequence[str]]],
    pi: float = STABILITY.pi,
    *,
    kind: str = "stable",
    params: Mapping[str, Any] | None = None,
    sources: Mapping[str, Any] | None = None,
) -> StableSelection:
    """Keep the neurons that at least a fraction ``pi`` of ``sets`` (one per resample) contain.

    Args:
        sets: the rule's set on each resample (same model shape; at least 2).
        pools: ``(name, sites)`` of the pools the rule selects from separately (the bound is per pool).
        pi: the frequency threshold in (0.5, 1]; a neuron is kept when ``count >= ceil(pi * K)``.
        kind, params, sources: recorded in the returned set; ``params`` gains ``stability`` and ``pools``.
    """
    pi = check_pi(pi)
    sets = list(sets)
    first = _check_sets(sets)
    k = len(sets)
    need = math.ceil(pi * k - 1e-9)  # float-safe: pi = 0.6 of K = 5 resamples is 3, not 4
    parts, pool_stats, counts, placed = [], [], [], 0
    for name, sites in pools:
        if not sites:
            continue
        pool = Pool.of(sites, first.num_layers, first.widths)
        count, per_set = _pool_counts(sets, pool)
        placed += sum(per_set)
        freq = count.double() / k
        top = top_indices(freq, int((count >= need).sum()))
        q = sum(per_set) / k
        parts.append(pool.columns(top, freq[top]))
        counts.append((pool, count))
        pool_stats.append(
            {"name": name, "sites": list(pool.sites), "size": pool.size, "q": q, "count": int(top.numel())}
        )
        pool_stats[-1]["bound"] = mb_bound(q, pool.size, pi)
    sizes = [len(ns) for ns in sets]
    if placed != sum(sizes):
        raise InputError(f"NeuronSet {first.kind!r} has neurons outside the pools {[list(s) for _, s in pools]}")
    bound = sum(p["bound"] for p in pool_stats)
    stability = {
        "resamples": k,
        "pi": pi,
        "min_count": need,
        "bound": bound,
        "q": sum(sizes) / k,
        "p": sum(p["size"] for p in pool_stats),
        "sizes": sizes,
        "assumptions": ASSUMPTIONS,
    }
    ns = NeuronSet(
        *merge_columns(parts),
        kind=kind,
        num_layers=first.num_layers,
        widths=first.widths,
        model=first.model,
        params={**dict(params or {}), "stability": stability, "pools": pool_stats},
        sources=dict(sources or {}),
    )
    return StableSelection(ns, bound, pi, k, sizes, pool_stats, counts)


def _base_params(ns: NeuronSet, rule: str) -> dict[str, Any]:
    params = {k: v for k, v in ns.params.items() if k != "pools"}
    params["rule"] = rule
    return params


def _sources(resamples: Sequence[Resample], sets: Sequence[NeuronSet]) -> dict[str, Any]:
    return {"resamples": [{"name": r.name, **ns.sources} for r, ns in zip(resamples, sets)]}


def _with_plain(result: StableSelection, plain: NeuronSet | None) -> StableSelection:
    if plain is not None:
        result.set.params["stability"]["plain"] = {
            "size": len(plain),
            "jaccard": jaccard(result.set, plain),
            "sha256": plain.content_hash(),
        }
    return result


def stable_general(
    resamples: Sequence[Resample],
    pi: float = STABILITY.pi,
    t_mlp: float = GENERAL.t_mlp,
    t_attn: float = GENERAL.t_attn,
    r: float = GENERAL.r,
    mlp_sites: Sequence[str] = tuple(GENERAL.mlp_sites),
    attn_sites: Sequence[str] = tuple(GENERAL.attn_sites),
    exclude: Sequence[tuple[ScoreTable, float]] = (),
    plain: NeuronSet | None = None,
) -> StableSelection:
    """Stability selection of the general rule: :func:`select_general` on each resample, then :func:`stable_set`.

    ``plain`` (the rule's set on all the data) is compared with the stable set in its params
    (``stability.plain``: size, Jaccard, hash). The set's kind is ``stable:general``.
    """
    check_pi(pi)
    sets = [
        select_general(
            list(rs.datasets),
            list(rs.controls),
            rs.countryrc,
            t_mlp=t_mlp,
            t_attn=t_attn,
            r=r,
            mlp_sites=mlp_sites,
            attn_sites=attn_sites,
            exclude=exclude,
        )
        for rs in resamples
    ]
    if not sets:
        raise InputError("stability selection needs at least 2 resamples, got 0")
    result = stable_set(
        sets,
        [("mlp", tuple(mlp_sites)), ("attn", tuple(attn_sites))],
        pi,
        kind="stable:general",
        params=_base_params(sets[0], "stable:general"),
        sources=_sources(resamples, sets),
    )
    return _with_plain(result, plain)


def stable_specific_many(
    resamples: Sequence[Resample],
    pi: float = STABILITY.pi,
    countries: Sequence[str] | str | None = SPECIFIC.countries,
    t: float = SPECIFIC.t,
    r: float = SPECIFIC.r,
    z: float = SPECIFIC.z,
    sites: Sequence[str] = tuple(SPECIFIC.sites),
    exclude: Sequence[tuple[ScoreTable, float]] = (),
    plain: Mapping[str, NeuronSet] | None = None,
) -> dict[str, StableSelection]:
    """Stability selection of the specific rule, per country: :func:`select_specific_many` on each resample.

    Each country's set keeps the kind ``specific:<country>`` (cross-culture and the report read the
    country from it); its params say ``rule: stable:specific`` and carry ``stability``.
    """
    check_pi(pi)
    per = [
        select_specific_many(
            list(rs.datasets), list(rs.controls), rs.countryrc, countries, t=t, r=r, z=z, sites=sites, exclude=exclude
        )
        for rs in resamples
    ]
    if not per:
        raise InputError("stability selection needs at least 2 resamples, got 0")
    chosen = list(per[0])
    for rs, sets in zip(resamples, per):
        if list(sets) != chosen:
            raise InputError(
                f"resample {rs.name or '?'} selects countries {list(sets)}, another {chosen}; "
                "every resample must be scored with the same groups"
            )
    out = {}
    for c in chosen:
        sets = [p[c] for p in per]
        result = stable_set(
            sets,
            [("all", tuple(sites))],
            pi,
            kind=f"specific:{c}",
            params=_base_params(sets[0], "stable:specific"),
            sources=_sources(resamples, sets),
        )
        out[c] = _with_plain(result, (plain or {}).get(c))
    return out


def complementary_halves(blocks: int, resamples: int, seed: int = STABILITY.seed) -> list[tuple[int, ...]]:
    """``resamples`` halves of ``range(blocks)``, in complementary pairs (a half, then the other half).

    The pairs are distinct and drawn uniformly, deterministically from ``seed``. ``blocks`` must be even
    and ``resamples / 2`` at most the number of distinct pairs, ``comb(blocks, blocks / 2) / 2``.
    """
    if blocks < 2 or blocks % 2:
        raise InputError(f"stability blocks must be an even integer of at least 2, got {blocks}")
    if resamples < 2 or resamples % 2:
        raise InputError(f"stability resamples must be an even integer of at least 2, got {resamples}")
    pairs = math.comb(blocks, blocks // 2) // 2
    need = resamples // 2
    if need > pairs:
        raise InputError(
            f"stability resamples = {resamples} needs {need} distinct complementary pairs of halves, but "
            f"{blocks} blocks give only {pairs}; raise blocks or lower resamples"
        )
    everything = tuple(range(blocks))
    g = torch.Generator().manual_seed(int(seed))
    if pairs <= 100_000:
        # Each pair once: the halves that hold block 0 (their complements do not).
        canon = [(0, *rest) for rest in combinations(everything[1:], blocks // 2 - 1)]
        chosen = [canon[i] for i in torch.randperm(len(canon), generator=g)[:need].tolist()]
    else:
        seen: set[tuple[int, ...]] = set()
        chosen = []
        while len(chosen) < need:
            half = tuple(sorted(torch.randperm(blocks, generator=g)[: blocks // 2].tolist()))
            key = half if 0 in half else tuple(b for b in everything if b not in half)
            if key not in seen:
                seen.add(key)
                chosen.append(key)
    out = []
    for half in chosen:
        out += [half, tuple(b for b in everything if b not in half)]
    return out
