"""Random baseline sets: uniform draws without replacement, the size of a selected set."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InputError
from .neuronset import NeuronSet, shape_of
from .ranking import Pool, merge_columns


def _pools(like: NeuronSet, pool: Sequence[str] | Sequence[Sequence[str]] | None) -> list[tuple[str, ...]]:
    if isinstance(pool, str):
        pool = (pool,)
    if pool is None:
        recorded = [tuple(p["sites"]) for p in like.params.get("pools", []) if isinstance(p, dict) and p.get("sites")]
        return recorded or [tuple(like.sites)]
    if all(isinstance(p, str) for p in pool):
        return [tuple(pool)]  # type: ignore[arg-type]
    return [tuple(p) for p in pool]


def _check(like: NeuronSet, pools: list[tuple[str, ...]], num_layers: int, widths: dict[str, int]) -> None:
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
            f"NeuronSet {like.kind!r} has neurons in layer {int(like.layers.max())} "
            f"but the model has {num_layers} layers"
        )


def _draw_layer_matched(p: Pool, need: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    # Draw layer by layer (a loop over layers, not neurons): within one layer the pool's neurons
    # are numbered site after site.
    widths_t = torch.tensor(p.widths, dtype=torch.int64)
    in_layer = torch.cat([torch.zeros(1, dtype=torch.int64), widths_t.cumsum(0)])
    drawn = []
    for layer in need.nonzero().squeeze(1).tolist():
        local = torch.randperm(int(in_layer[-1]), generator=generator)[: int(need[layer])]
        sid = torch.searchsorted(in_layer[1:], local, right=True)
        drawn.append(p.offsets[sid] + layer * widths_t[sid] + (local - in_layer[sid]))
    return torch.cat(drawn) if drawn else torch.zeros(0, dtype=torch.int64)


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
    num_layers, widths = shape_of(shape) if shape is not None else (like.num_layers, like.widths)
    if num_layers is None or widths is None:
        raise InputError(
            f"NeuronSet {like.kind!r} does not record its model's shape; "
            "pass shape=(num_layers, widths), a ScoreTable or an adapter"
        )
    pools = _pools(like, pool)
    _check(like, pools, num_layers, widths)
    generator = torch.Generator().manual_seed(seed)
    like_sites = list(like.site_names)
    parts, stats = [], []
    for sites in pools:
        p = Pool.of(sites, num_layers, widths)
        member = torch.tensor([s in p.sites for s in like_sites], dtype=torch.bool)[like.site_ids]
        if layer_matched:
            chosen = _draw_layer_matched(p, torch.bincount(like.layers[member], minlength=num_layers), generator)
        else:
            chosen = torch.randperm(p.size, generator=generator)[: int(member.sum())]
        chosen = chosen.sort().values
        parts.append(p.columns(chosen, torch.full((chosen.numel(),), float("nan"), dtype=torch.float64)))
        stats.append({"sites": list(p.sites), "size": p.size, "count": int(chosen.numel())})
    names, ids, layers, indices, scores = merge_columns(parts)
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


@dataclass(frozen=True)
class RandomBaseline:
    """The random sets an experiment compares a selected set against.

    Attributes:
        seeds: how many sets (seeds ``0..N-1``) or the seeds themselves.
        layer_matched: also match the selected set's per-layer counts (see :func:`select_random`).
        sets: ready-made random sets to use instead of drawing (each must be the selected set's size).
    """

    seeds: int | Sequence[int] = 10
    layer_matched: bool = False
    sets: Sequence[NeuronSet] | None = None

    def seed_list(self) -> list[int]:
        """The seeds drawn, in order."""
        return list(range(self.seeds)) if isinstance(self.seeds, int) else [int(s) for s in self.seeds]

    def draw(self, like: NeuronSet) -> list[NeuronSet]:
        """The random sets for ``like``: :attr:`sets` after a size check, else one draw per seed."""
        if self.sets is not None:
            sets = list(self.sets)
            bad = [s.kind for s in sets if len(s) != len(like)]
            if bad:
                raise InputError(f"random set(s) {bad} differ in size from {like.kind!r} ({len(like)} neurons)")
            return sets
        return [select_random(like, s, layer_matched=self.layer_matched) for s in self.seed_list()]
