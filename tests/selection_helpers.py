"""Synthetic ScoreTables and slow, obviously-correct selection oracles for the selection tests."""

from __future__ import annotations

import math

import torch

from culture_neurons import ScoreTable

SITE_RANK = {"mlp.gate": 0, "mlp.up": 1, "mlp.in": 2, "attn.q": 3, "attn.k": 4, "attn.v": 5}
SMALL = {"mlp.gate": 20, "mlp.up": 20, "attn.q": 8, "attn.k": 4, "attn.v": 4}


def synthetic_table(
    groups,
    seed=0,
    num_layers=3,
    widths=None,
    integer=False,
    control=False,
    dataset="blend",
    model="synthetic",
    config="cfg-a",
    counts=None,
) -> ScoreTable:
    """A random table; ``integer=True`` draws small integers so that many scores tie exactly."""
    widths = widths or SMALL
    g = torch.Generator().manual_seed(seed)
    scores = {}
    for site, w in widths.items():
        if integer:
            t = torch.randint(-3, 4, (num_layers, w, len(groups)), generator=g).float()
        else:
            t = torch.randn(num_layers, w, len(groups), generator=g)
        if control:
            t = t.clamp(min=0)
        scores[site] = t
    counts = torch.tensor(counts or [3 + i for i in range(len(groups))], dtype=torch.int64)
    meta = {
        "model": {"name_or_path": model, "config_sha256": config},
        "dataset": dataset,
        "options": {"control": control},
    }
    return ScoreTable(scores, counts, torch.zeros(len(groups), dtype=torch.float64), list(groups), meta)


def _cell(table, site, layer, index, group):
    return float(table.scores[site][layer, index, table.groups.index(group)])


def _top(rows, k):
    """rows: (score, site, layer, index); best first, ties by (site rank, layer, index)."""
    return sorted(rows, key=lambda r: (-r[0], SITE_RANK[r[1]], r[2], r[3]))[:k]


def _k(frac, n):
    return min(n, math.floor(frac * n + 1e-9))


def _excluded(exclude, sites, n):
    """Neurons banned by the exclusion tables: each table's top r (of the pool size n) by its total score."""
    banned = set()
    for table, r in exclude:
        rows = [
            (sum(_cell(table, s, layer, i, g) for g in table.groups), s, layer, i)
            for s in sites
            for layer in range(table.scores[s].shape[0])
            for i in range(table.scores[s].shape[1])
        ]
        banned |= {row[1:] for row in _top(rows, _k(r, n))}
    return banned


def oracle_general(ds, cs, crc, t_mlp, t_attn, r, mlp_sites, attn_sites, exclude=()):
    """A list of (site, layer, index, score), MLP pool first, each pool best first."""
    if len(cs) == 1:
        cs = cs * len(ds)
    out = []
    for sites, frac in ((mlp_sites, t_mlp), (attn_sites, t_attn)):
        rows, crc_rows = [], []
        for s in sites:
            layers, width = ds[0].scores[s].shape[:2]
            for layer in range(layers):
                for i in range(width):
                    total = 0.0
                    for d, c in zip(ds, cs):
                        sd = sum(_cell(d, s, layer, i, g) for g in d.groups) / d.num_examples
                        sc = sum(_cell(c, s, layer, i, g) for g in c.groups) / c.num_examples
                        total += sd - sc
                    rows.append((total, s, layer, i))
                    if crc is not None:
                        crc_rows.append((sum(_cell(crc, s, layer, i, g) for g in crc.groups), s, layer, i))
        if not rows:
            continue
        kept = _top(rows, _k(frac, len(rows)))
        if crc is not None:
            banned = {row[1:] for row in _top(crc_rows, _k(r, len(rows)))}
            kept = [row for row in kept if row[1:] not in banned]
        banned = _excluded(exclude, sites, len(rows))
        kept = [row for row in kept if row[1:] not in banned]
        out += [(s, layer, i, score) for score, s, layer, i in kept]
    return out


def oracle_specific(ds, cs, crc, country, t, r, z, sites, exclude=()):
    if len(cs) == 1:
        cs = cs * len(ds)
    countries = [g for g in ds[0].groups if all(g in d.groups for d in ds)]
    rows, crc_rows, per_country = [], [], {}
    for s in sites:
        layers, width = ds[0].scores[s].shape[:2]
        for layer in range(layers):
            for i in range(width):
                values = []
                for g in countries:
                    v = 0.0
                    for d, c in zip(ds, cs):
                        v += _cell(d, s, layer, i, g) / d.num_examples
                        v -= _cell(c, s, layer, i, g) / c.num_examples
                    values.append(v)
                per_country[(s, layer, i)] = values
                rows.append((values[countries.index(country)], s, layer, i))
                if crc is not None:
                    crc_rows.append((_cell(crc, s, layer, i, country), s, layer, i))
    kept = _top(rows, _k(t, len(rows)))
    if crc is not None:
        banned = {row[1:] for row in _top(crc_rows, _k(r, len(rows)))}
        kept = [row for row in kept if row[1:] not in banned]
    banned = _excluded(exclude, sites, len(rows))
    kept = [row for row in kept if row[1:] not in banned]
    out = []
    for score, s, layer, i in kept:
        values = per_country[(s, layer, i)]
        if max(values) == min(values):
            zval = 0.0
        else:
            mean = sum(values) / len(values)
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
            zval = (score - mean) / std
        if zval >= z:
            out.append((s, layer, i, score))
    return out


def as_rows(neuron_set):
    return [(n.site, n.layer, n.index, n.score) for n in neuron_set.neurons]
