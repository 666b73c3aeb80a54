"""Statistics for the report: where the neurons are, how the sets overlap, and the experiments' numbers.

Everything here reads the files of a run directory (NeuronSets, experiment summaries) and returns
plain numpy/pandas objects; :mod:`.plots` draws them and :mod:`.report` lays them out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..selection.neuronset import Neuron, NeuronSet, ordered_sites


def load_sets(run_dir: str | Path) -> dict[str, NeuronSet]:
    """The run's NeuronSets by file stem (``general``, ``specific-Iran``, ``random-0``, ...)."""
    folder = Path(run_dir) / "neurons"
    if not folder.is_dir():
        return {}
    return {p.stem: NeuronSet.load(p) for p in sorted(folder.glob("*.json"))}


def specific_sets(sets: Mapping[str, NeuronSet]) -> dict[str, NeuronSet]:
    """``{country: set}`` for the culture-specific sets."""
    return {ns.kind.split(":", 1)[1]: ns for name, ns in sets.items() if ns.kind.startswith("specific:")}


def layer_counts(ns: NeuronSet, num_layers: int | None = None) -> pd.DataFrame:
    """Neurons per layer (rows) and site (columns)."""
    n = num_layers or ns.num_layers or (int(ns.layers.max()) + 1 if len(ns) else 0)
    data = {}
    for site in ordered_sites(ns.site_names):
        counts = ns.layer_counts(site).numpy()
        full = np.zeros(n, dtype=np.int64)
        full[: min(n, counts.size)] = counts[:n]
        data[site] = full
    return pd.DataFrame(data, index=pd.RangeIndex(n, name="layer"))


def site_totals(sets: Mapping[str, NeuronSet]) -> pd.DataFrame:
    """Neurons per site (columns) for each set (rows), with the share of the pool when the widths are known."""
    rows = {}
    for name, ns in sets.items():
        rows[name] = {site: ns.site_counts().get(site, 0) for site in ordered_sites(ns.site_names)}
    return pd.DataFrame(rows).T.fillna(0).astype(int)


def _keyset(ns: NeuronSet) -> set[tuple[str, int, int]]:
    names = [ns.site_names[i] for i in ns.site_ids.tolist()]
    return set(zip(names, ns.layers.tolist(), ns.indices.tolist()))


def jaccard(sets: Mapping[str, NeuronSet]) -> pd.DataFrame:
    """Jaccard index |A ∩ B| / |A ∪ B| between every pair of sets (1 on the diagonal, 0 for two empty sets)."""
    keys = {name: _keyset(ns) for name, ns in sets.items()}
    names = list(keys)
    out = pd.DataFrame(0.0, index=names, columns=names)
    for a in names:
        for b in names:
            union = len(keys[a] | keys[b])
            out.loc[a, b] = len(keys[a] & keys[b]) / union if union else (1.0 if a == b else 0.0)
    return out


def top_neurons(ns: NeuronSet, n: int = 25) -> list[Neuron]:
    """The ``n`` neurons with the highest selection score (ties by site, layer, index)."""
    ranked = [x for x in ns.neurons if x.score is not None]
    ranked.sort(key=lambda x: -x.score)
    return ranked[:n]


def read_summary(run_dir: str | Path, experiment: str) -> dict[str, Any] | None:
    """``eval/<experiment>/summary.json`` of a run, or None."""
    path = Path(run_dir) / "eval" / experiment / "summary.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def read_matrix(run_dir: str | Path) -> pd.DataFrame | None:
    path = Path(run_dir) / "eval" / "cross-culture" / "matrix.csv"
    if not path.is_file():
        return None
    return pd.read_csv(path, index_col=0)


def experiment_bars(summary: Mapping[str, Any], split: str = "heldout") -> pd.DataFrame:
    """One row per benchmark: original, intervened and random-mean values with 95% CIs, and the p-values.

    ``split`` picks the held-out part where a benchmark has one (else all examples). The original
    and intervened CIs are bootstrap CIs of the accuracy; the random bar's CI is the paired
    bootstrap CI of the random change, placed at the random mean.
    """
    rows = []
    for bench, entry in summary["results"].items():
        part = split if split in entry else "all"
        block = entry[part]
        rnd = block.get("random_mean")
        rc = block.get("random_change") or {}
        diff = block.get("difference") or {}
        rows.append(
            {
                "benchmark": bench,
                "split": part,
                "n": block["original"]["n"],
                "metric": entry.get("metric", "accuracy"),
                "original": block["original"]["value"],
                "original_lo": block["original"]["ci_low"],
                "original_hi": block["original"]["ci_high"],
                "target": block["target"]["value"],
                "target_lo": block["target"]["ci_low"],
                "target_hi": block["target"]["ci_high"],
                "random": rnd,
                "random_lo": None if rnd is None or rc.get("ci_low") is None else rnd + rc["ci_low"] - rc["value"],
                "random_hi": None if rnd is None or rc.get("ci_high") is None else rnd + rc["ci_high"] - rc["value"],
                "random_seeds": list((block.get("random") or {}).values()),
                "difference": diff.get("value"),
                "p_one_sided": diff.get("p_one_sided"),
                "p_two_sided": diff.get("p_two_sided"),
            }
        )
    return pd.DataFrame(rows)


def stars(p: float | None) -> str:
    """Significance marks: * p<0.05, ** p<0.01, *** p<0.001, n.s. otherwise."""
    if p is None or (isinstance(p, float) and np.isnan(p)):
        return ""
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else "n.s."
