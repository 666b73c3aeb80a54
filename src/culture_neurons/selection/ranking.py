"""Pools of neurons and deterministic top-k ranking over them.

A pool is a set of sites; its neurons are flattened in the order (site, layer, index), with sites
in canonical order (``mlp.gate, mlp.up, mlp.in, attn.q, attn.k, attn.v``). "The top fraction t of
a pool" is the ``floor(t * pool size)`` neurons with the highest score; equal scores are broken by
that order (lower site rank, layer, index first), so every selection is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from .sites import ordered_sites

# (site vocabulary, site id, layer, index, score): the columns a NeuronSet is built from.
Columns = tuple[list[str], torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class Pool:
    """Sites flattened into one index space ordered by (site, layer, index)."""

    sites: tuple[str, ...]
    num_layers: int
    widths: tuple[int, ...]

    @classmethod
    def of(cls, sites: Sequence[str], num_layers: int, widths: Mapping[str, int]) -> Pool:
        """The pool of ``sites`` (any order) of a model with ``num_layers`` and per-site ``widths``."""
        names = tuple(ordered_sites(sites))
        return cls(names, int(num_layers), tuple(int(widths[s]) for s in names))

    @property
    def offsets(self) -> torch.Tensor:
        """Start of each site's block in the pool index space (int64 ``[sites + 1]``)."""
        sizes = torch.tensor([0, *(self.num_layers * w for w in self.widths)], dtype=torch.int64)
        return sizes.cumsum(0)

    @property
    def size(self) -> int:
        """Number of neurons in the pool."""
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

    def columns(self, flat: torch.Tensor, scores: torch.Tensor) -> Columns:
        """NeuronSet columns of the neurons at pool positions ``flat``."""
        site, layer, index = self.locate(flat)
        return list(self.sites), site, layer, index, scores


def top_count(fraction: float, n: int) -> int:
    """How many neurons "the top ``fraction``" of ``n`` is: ``floor(fraction * n)`` (robust to float error)."""
    return min(n, math.floor(fraction * n + 1e-9))


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


def merge_columns(parts: list[Columns]) -> Columns:
    """Concatenate the columns of several pools into one site vocabulary (canonical order)."""
    names = ordered_sites(s for p in parts for s in p[0])
    ids, layers, indices, scores = [], [], [], []
    for sites, site, layer, index, score in parts:
        remap = torch.tensor([names.index(s) for s in sites], dtype=torch.int64)
        ids.append(remap[site])
        layers.append(layer)
        indices.append(index)
        scores.append(score)

    def cat(xs: list[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
        return torch.cat(xs) if xs else torch.zeros(0, dtype=dtype)

    return names, cat(ids, torch.int64), cat(layers, torch.int64), cat(indices, torch.int64), cat(scores, torch.float64)
