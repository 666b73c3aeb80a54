"""Column work behind NeuronSet: ordering keys for (site, layer, index) triples, the same-model
check before combining sets, and the columns of a union.

Kept apart from :mod:`culture_neurons.selection.neuronset` so that module holds the class and its
views; these functions only read a set's tensors and shape attributes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import InputError
from .columns import NeuronColumns
from .sites import ordered_sites


def triple_keys(site_ids: torch.Tensor, layers: torch.Tensor, indices: torch.Tensor, n_sites: int) -> torch.Tensor:
    """Int64 keys ordered like (site id, layer, index): the packed number where it fits in 62 bits,
    else the rank among the distinct triples (huge indices must not overflow into false duplicates)."""
    if not site_ids.numel():
        return torch.zeros(0, dtype=torch.int64)
    stride_i = int(indices.max()) + 1
    stride_l = (int(layers.max()) + 1) * stride_i
    if max(n_sites, 1) * stride_l < 2**62:
        return site_ids * stride_l + layers * stride_i + indices
    return torch.unique(torch.stack([site_ids, layers, indices], 1), dim=0, return_inverse=True)[1]


def check_same_shape(a: NeuronColumns, b: NeuronColumns) -> None:
    """Raise :class:`InputError` when ``a`` and ``b`` were selected on models of different shape or config."""
    if a.num_layers is not None and b.num_layers is not None and a.num_layers != b.num_layers:
        raise InputError(
            f"cannot combine NeuronSets of different models: {a.kind!r} has {a.num_layers} layers, "
            f"{b.kind!r} has {b.num_layers}"
        )
    if a.widths is not None and b.widths is not None:
        clash = {s: (a.widths[s], b.widths[s]) for s in set(a.widths) & set(b.widths) if a.widths[s] != b.widths[s]}
        if clash:
            raise InputError(
                f"cannot combine NeuronSets of different models: widths differ {clash} ({a.kind!r} vs {b.kind!r})"
            )
    ha, hb = a.model.get("config_sha256"), b.model.get("config_sha256")
    if ha and hb and ha != hb:
        raise InputError(
            f"cannot combine NeuronSets of different models "
            f"({a.model.get('name_or_path')!r} vs {b.model.get('name_or_path')!r})"
        )


def union_columns(
    sets: Sequence[NeuronColumns],
) -> tuple[list[str], torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(site_names, site_ids, layers, indices, scores)`` of every neuron of ``sets``, each once, in
    order of first appearance; a neuron listed by several sets keeps the first score seen."""
    names = ordered_sites(s for ns in sets for s in ns.site_names)
    remap = [torch.tensor([names.index(s) for s in ns.site_names], dtype=torch.int64) for ns in sets]
    site_ids = torch.cat([m[ns.site_ids] if len(ns) else ns.site_ids for m, ns in zip(remap, sets)])
    layers = torch.cat([ns.layers for ns in sets])
    indices = torch.cat([ns.indices for ns in sets])
    scores = torch.cat([ns.scores for ns in sets])
    n = site_ids.numel()
    _, inverse = triple_keys(site_ids, layers, indices, len(names)).unique(return_inverse=True)
    first = torch.full((int(inverse.max()) + 1 if n else 0,), n, dtype=torch.int64)
    first.scatter_reduce_(0, inverse, torch.arange(n), reduce="amin")
    keep = first.sort().values
    return names, site_ids[keep], layers[keep], indices[keep], scores[keep]
