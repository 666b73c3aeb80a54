"""The NeuronSet JSON file format (``culture-neurons/neuron-set`` v1): building it and reading it back.

:meth:`NeuronSet.to_dict <culture_neurons.selection.NeuronSet.to_dict>` and ``from_dict`` call these;
the format itself is described in :mod:`culture_neurons.selection.neuronset`. A reference
``top_neurons`` JSON handed to the reader is passed on to :mod:`culture_neurons.selection.reference`.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import InputError
from ..version import __version__
from .columns import NeuronColumns
from .parsing import as_int, row_problem
from .reference import reference_columns

FORMAT = "culture-neurons/neuron-set"
FORMAT_VERSION = 1


def neuron_set_dict(ns: NeuronColumns) -> dict[str, Any]:
    """The JSON form of ``ns`` (NaN scores become ``null``)."""
    scores = [None if math.isnan(s) else s for s in ns.scores.tolist()]
    names = [ns.site_names[i] for i in ns.site_ids.tolist()]
    neurons = [
        {"site": s, "layer": la, "index": ix, "score": sc}
        for s, la, ix, sc in zip(names, ns.layers.tolist(), ns.indices.tolist(), scores)
    ]
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": ns.kind,
        "model": ns.model,
        "num_layers": ns.num_layers,
        "widths": ns.widths,
        "params": ns.params,
        "sources": ns.sources,
        "package_version": __version__,
        "count": len(ns),
        "neurons": neurons,
    }


def neuron_set_columns(data: Any, where: str = "neuron set") -> dict[str, Any]:
    """The keyword arguments of ``NeuronSet.from_columns`` for a set's JSON form (or a reference
    ``top_neurons`` JSON); malformed input raises :class:`InputError` naming ``where``."""
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(data).__name__}")
    if "top_neurons" in data and "neurons" not in data:
        return reference_columns(data, where)
    if data.get("format") != FORMAT:
        raise InputError(
            f"{where}: not a culture-neurons neuron set (format {data.get('format')!r}; "
            f"expected {FORMAT!r} or the reference 'top_neurons' JSON)"
        )
    version = data.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
        raise InputError(
            f"{where}: neuron-set format v{data.get('format_version')} is newer than this package "
            f"supports (v{FORMAT_VERSION})"
        )
    rows = data.get("neurons")
    if not isinstance(rows, list):
        raise InputError(f"{where}: key 'neurons' (a list) is missing")
    for i, r in enumerate(rows):
        problem = row_problem(r, ("site", "layer", "index"))
        if problem is None and r.get("score") is not None and not isinstance(r["score"], (int, float)):
            problem = f"score: not a number: {r['score']!r}"
        if problem:
            raise InputError(f"{where}: neuron #{i} needs site, layer and index (integers); {problem}: {r!r}"[:400])
    if "count" in data and (isinstance(data["count"], bool) or data["count"] != len(rows)):
        raise InputError(f"{where}: says count={data['count']} but lists {len(rows)} neurons (truncated file?)")
    return dict(
        sites=[str(r["site"]) for r in rows],
        layers=[as_int(r["layer"]) for r in rows],
        indices=[as_int(r["index"]) for r in rows],
        scores=[None if r.get("score") is None else float(r["score"]) for r in rows],
        kind=str(data.get("kind", "custom")),
        num_layers=data.get("num_layers"),
        widths=data.get("widths"),
        model=data.get("model"),
        params=data.get("params"),
        sources=data.get("sources"),
        where=where,
    )
