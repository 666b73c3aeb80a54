"""Overlap statistics between NeuronSets: Jaccard, its expectation for random sets, selection frequency.

A neuron is keyed by ``(site, layer, index)``. The random baseline for the overlap of two sets of
sizes ``a`` and ``b`` drawn uniformly without replacement from a pool of ``N`` neurons is exact:
the intersection is hypergeometric, so ``J = I / (a + b - I)`` has a computable distribution.
Sets selected from several pools (the general set's MLP and attention pools) are compared with
random sets drawn per pool with the same per-pool sizes; the pools' intersections are independent,
so the distribution of the total intersection is the convolution of the per-pool ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..selection.neuronset import NeuronSet

Key = tuple[str, int, int]


def keys(ns: NeuronSet) -> set[Key]:
    """The set's neurons as ``(site, layer, index)`` tuples."""
    names = [ns.site_names[i] for i in ns.site_ids.tolist()]
    return set(zip(names, ns.layers.tolist(), ns.indices.tolist()))


def _codes(ns: NeuronSet, vocab: Mapping[str, int], width: int) -> torch.Tensor:
    """One int64 code per neuron (site id, layer, index packed), for vectorised set algebra."""
    site = (
        torch.tensor([vocab[s] for s in ns.site_names], dtype=torch.int64)[ns.site_ids]
        if len(ns)
        else torch.zeros(0, dtype=torch.int64)
    )
    return (site * 4096 + ns.layers) * width + ns.indices


def intersection_size(a: NeuronSet, b: NeuronSet) -> int:
    """``|A ∩ B|`` without building Python tuples (sets of ~10^5 neurons stay fast)."""
    vocab = {s: i for i, s in enumerate(sorted(set(a.site_names) | set(b.site_names)))}
    width = 1 + max([int(a.indices.max()) if len(a) else 0, int(b.indices.max()) if len(b) else 0])
    ca, cb = _codes(a, vocab, width).unique(), _codes(b, vocab, width).unique()
    return int(torch.isin(ca, cb).sum())


def jaccard_index(a: NeuronSet, b: NeuronSet) -> float:
    """``|A ∩ B| / |A ∪ B|``; two empty sets give 1."""
    inter = intersection_size(a, b)
    union = len(a) + len(b) - inter
    return inter / union if union else 1.0


def hypergeom_pmf(pool: int, a: int, b: int) -> np.ndarray:
    """P(|A ∩ B| = i) for i = 0..min(a, b), A and B uniform subsets of sizes a and b of a pool
    (``scipy.stats.hypergeom``)."""
    if not 0 <= a <= pool or not 0 <= b <= pool:
        raise ValueError(f"set sizes {a}, {b} must lie in [0, pool={pool}]")
    from scipy.stats import hypergeom  # imported here: scipy.stats costs ~0.7 s and the CLI loads this module

    p = hypergeom(pool, a, b).pmf(np.arange(min(a, b) + 1))
    return p / p.sum()


def random_jaccard(pools: Sequence[tuple[int, int, int]]) -> dict[str, float]:
    """Distribution of the Jaccard index of two random sets drawn per pool.

    Args:
        pools: one ``(pool size, size of A in it, size of B in it)`` per pool.

    Returns:
        ``{expected, ci_low, ci_high}``: the mean and the central 95% interval of J.
    """
    dist = np.ones(1)
    total = 0
    for pool, a, b in pools:
        dist = np.convolve(dist, hypergeom_pmf(pool, a, b))
        total += a + b
    inter = np.arange(dist.size)
    union = total - inter
    j = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    cdf = np.cumsum(dist)
    lo = j[min(int(np.searchsorted(cdf, 0.025)), j.size - 1)]
    hi = j[min(int(np.searchsorted(cdf, 0.975)), j.size - 1)]
    return {"expected": float((dist * j).sum()), "ci_low": float(lo), "ci_high": float(hi)}


def pool_sites(ns: NeuronSet) -> list[tuple[str, ...]]:
    """The pools a set was selected from (recorded in its params), else one pool of its own sites."""
    recorded = [tuple(p["sites"]) for p in ns.params.get("pools", []) if isinstance(p, dict) and p.get("sites")]
    return recorded or [tuple(ns.sites)]


def pool_counts(ns: NeuronSet, pools: Sequence[Sequence[str]]) -> list[int]:
    """How many of the set's neurons fall in each pool."""
    names = [ns.site_names[i] for i in ns.site_ids.tolist()]
    return [sum(1 for s in names if s in set(p)) for p in pools]


def pool_sizes(ns: NeuronSet, pools: Sequence[Sequence[str]]) -> list[int]:
    """Number of neurons in each pool (needs the set's recorded model shape)."""
    if ns.num_layers is None or not ns.widths:
        raise ValueError(f"NeuronSet {ns.kind!r} does not record its model's shape")
    return [ns.num_layers * sum(ns.widths[s] for s in p) for p in pools]


def overlap(a: NeuronSet, b: NeuronSet) -> dict[str, Any]:
    """Jaccard of two sets next to the Jaccard two random sets of the same per-pool sizes would have."""
    pools = pool_sites(a)
    sizes = pool_sizes(a, pools)
    spec = list(zip(sizes, pool_counts(a, pools), pool_counts(b, pools)))
    rnd = random_jaccard(spec)
    return {
        "jaccard": jaccard_index(a, b),
        "intersection": intersection_size(a, b),
        "size_a": len(a),
        "size_b": len(b),
        "random": rnd,
        "above_random": jaccard_index(a, b) > rnd["ci_high"],
    }


def selection_frequency(sets: Sequence[NeuronSet]) -> dict[Key, float]:
    """Fraction of ``sets`` that contain each neuron (over the union of the sets)."""
    counts: dict[Key, int] = {}
    for ns in sets:
        for k in keys(ns):
            counts[k] = counts.get(k, 0) + 1
    n = max(len(sets), 1)
    return {k: c / n for k, c in sorted(counts.items())}


def layer_distribution(ns: NeuronSet) -> dict[str, Any]:
    """Neurons per layer (all sites together), and the share in the first, middle and last third of the layers."""
    num_layers = ns.num_layers or (int(ns.layers.max()) + 1 if len(ns) else 0)
    counts = torch.bincount(ns.layers, minlength=num_layers).tolist() if len(ns) else [0] * num_layers
    total = max(sum(counts), 1)
    edges = [0, math.ceil(num_layers / 3), math.ceil(2 * num_layers / 3), num_layers]
    thirds = [sum(counts[edges[i] : edges[i + 1]]) / total for i in range(3)]
    mean_depth = float(sum(i * c for i, c in enumerate(counts)) / total / max(num_layers - 1, 1))
    return {
        "per_layer": counts,
        "shallow": thirds[0],
        "middle": thirds[1],
        "deep": thirds[2],
        "mean_relative_depth": mean_depth,
    }
