"""The reference code's neuron JSON: ``top_neurons`` with ``module_name``, ``layer_idx``,
``neuron_idx`` and ``attribute_score``, plus ``model_name`` and ``dataset_ids``.

These functions translate between that format and NeuronSet columns; the NeuronSet methods
:meth:`~culture_neurons.selection.NeuronSet.from_reference` and ``to_reference`` call them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError
from .parsing import as_int, row_problem, shape_of
from .sites import SITE_ORDER

# The reference code names modules by their Hugging Face projection; the last path component decides.
REFERENCE_MODULES = {
    "gate_proj": "mlp.gate",
    "up_proj": "mlp.up",
    "q_proj": "attn.q",
    "k_proj": "attn.k",
    "v_proj": "attn.v",
}
EXPORT_NAMES = {
    "mlp.gate": "mlp.gate_proj",
    "mlp.up": "mlp.up_proj",
    "attn.q": "self_attn.q_proj",
    "attn.k": "self_attn.k_proj",
    "attn.v": "self_attn.v_proj",
}


def reference_site(module_name: str, where: str = "reference neuron") -> str:
    """Map a reference ``module_name`` (``mlp.gate_proj``, ``model.layers.3.self_attn.q_proj``, or a
    canonical site name) to a canonical site."""
    if module_name in SITE_ORDER:
        return module_name
    last = module_name.rsplit(".", 1)[-1]
    if last in REFERENCE_MODULES:
        return REFERENCE_MODULES[last]
    raise InputError(
        f"{where}: unknown module_name {module_name!r}; expected one of {', '.join(EXPORT_NAMES.values())} "
        "(fused projections such as qkv_proj are not part of the reference format)"
    )


def reference_columns(data: dict[str, Any], where: str, shape: Any = None, kind: str = "reference") -> dict[str, Any]:
    """Keyword arguments of ``NeuronSet.from_columns`` for a parsed reference JSON object."""
    rows = data["top_neurons"]
    if not isinstance(rows, list):
        raise InputError(f"{where}: 'top_neurons' must be a list")
    sites, layers, indices, scores = [], [], [], []
    for i, r in enumerate(rows):
        problem = row_problem(r, ("module_name", "layer_idx", "neuron_idx"))
        if problem:
            raise InputError(
                f"{where}: top_neurons[{i}] needs module_name, layer_idx and neuron_idx (integers); {problem}: {r!r}"[
                    :400
                ]
            )
        sites.append(reference_site(str(r["module_name"]), f"{where}: top_neurons[{i}]"))
        layers.append(as_int(r["layer_idx"]))
        indices.append(as_int(r["neuron_idx"]))
        score = r.get("attribute_score")
        scores.append(None if score is None else float(score))
    num_layers, widths = shape_of(shape)
    model = {"name_or_path": data["model_name"]} if data.get("model_name") else {}
    if shape is not None and hasattr(shape, "model_id"):
        model = {**shape.model_id, **model}
    sources = {"reference_file": Path(where).name, "dataset_ids": data.get("dataset_ids")}
    return dict(
        sites=sites,
        layers=layers,
        indices=indices,
        scores=scores,
        kind=kind,
        num_layers=num_layers,
        widths=widths,
        model=model,
        params={"imported_from": "reference"},
        sources=sources,
        where=where,
    )


def reference_dict(
    neuron_set: Any, model_name: str | None = None, dataset_ids: Sequence[str] | None = None
) -> dict[str, Any]:
    """The reference JSON object of a NeuronSet."""
    ns = neuron_set
    unsupported = [s for s in ns.sites if s not in EXPORT_NAMES]
    if unsupported:
        raise InputError(
            f"the reference format has no module name for site(s) {unsupported}; it knows {', '.join(EXPORT_NAMES)}"
        )
    scores = [None if math.isnan(s) else s for s in ns.scores.tolist()]
    names = [EXPORT_NAMES[ns.site_names[i]] for i in ns.site_ids.tolist()]
    rows = [
        {"module_name": m, "layer_idx": la, "neuron_idx": ix, "attribute_score": sc}
        for m, la, ix, sc in zip(names, ns.layers.tolist(), ns.indices.tolist(), scores)
    ]
    if dataset_ids is None:
        dataset_ids = ns.sources.get("dataset_ids") or [
            t.get("dataset") for t in ns.sources.get("dataset_tables", []) if isinstance(t, dict)
        ]
    return {
        "model_name": model_name or ns.model.get("name_or_path"),
        "dataset_ids": list(dataset_ids or []),
        "top_neurons": rows,
    }
