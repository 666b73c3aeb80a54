"""Analysis 2: stability of the general set across disjoint folds and across instruction templates.

Each fold (and each template) is selected on its own table, with the same thresholds as the
default set. Overlaps are reported next to the distribution of the Jaccard index of random sets of
the same per-pool sizes (exact, hypergeometric), so "0.3" can be read against "0.004 expected".
The fold tables and fold NeuronSets are kept in ``validity/folds/``; the stable sets (the neurons
chosen in most fold x template cells, :mod:`.stable`) in ``validity/stable*.json``.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any

from ..selection.neuronset import NeuronSet
from .overlap import overlap, selection_frequency
from .stable import stable_sets
from .study import Study


def _pairs(sets: dict[str, NeuronSet], default: NeuronSet) -> dict[str, Any]:
    names = list(sets)
    between = [
        {"a": a, "b": b, **overlap(sets[a], sets[b])}
        for a, b in combinations(names, 2)
        if len(sets[a]) and len(sets[b])
    ]
    with_full = [{"name": n, **overlap(sets[n], default)} for n in names if len(sets[n])]
    values = [p["jaccard"] for p in between]
    rnd = [p["random"]["expected"] for p in between]
    summary = {
        "jaccard": sum(values) / len(values) if values else None,
        "range": [min(values), max(values)] if values else None,
        "random_expected": sum(rnd) / len(rnd) if rnd else None,
        "random_ci": [min(p["random"]["ci_low"] for p in between), max(p["random"]["ci_high"] for p in between)]
        if between
        else None,
    }
    return {"sets": {n: len(s) for n, s in sets.items()}, "pairs": between, "with_full": with_full, "summary": summary}


def _save(sets: dict[str, NeuronSet], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, ns in sets.items():
        ns.save(folder / f"{name}.json")


def frequency_rows(sets: dict[str, NeuronSet], default: NeuronSet) -> list[dict[str, Any]]:
    """Per neuron of the union: how many of the sets select it, and whether the full set does."""
    full = set(_keys(default))
    freq = selection_frequency(list(sets.values()))
    return [
        {"site": s, "layer": layer, "index": i, "frequency": f, "in_full": (s, layer, i) in full}
        for (s, layer, i), f in freq.items()
    ]


def _keys(ns: NeuronSet) -> list[tuple[str, int, int]]:
    return [(n.site, n.layer, n.index) for n in ns.neurons]


def stability(study: Study) -> dict[str, Any]:
    """The stability section of ``validity/summary.json`` (plus the per-neuron frequency rows)."""
    default = study.default_set
    folder = study.out / "folds"
    folds = {f"fold{k}": study.general(table) for k, table in study.folds.items()}
    _save(folds, folder)
    out: dict[str, Any] = {"folds": _pairs(folds, default), "k": study.options.folds}
    freq = frequency_rows(folds, default)
    n_full = len(default)
    in_all = sum(1 for r in freq if r["in_full"] and r["frequency"] == 1.0)
    out["folds"]["full_in_every_fold"] = in_all / n_full if n_full else None
    templates = study.templates
    if study.options.per_template and len(templates) > 1:
        per = {f"template-{name}": study.general(table, template=name) for name, table in templates.items()}
        _save(per, folder)
        out["templates"] = _pairs(per, default)
    else:
        out["templates"] = None
        out["templates_note"] = (
            "one template only: nothing to compare" if len(templates) <= 1 else "per-template selection disabled"
        )
    out["stable"] = stable_sets(study)
    out["frequency"] = freq
    return out
