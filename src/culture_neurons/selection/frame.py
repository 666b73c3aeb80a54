"""A NeuronSet as a table for pandas, and where each neuron lives in other tools' naming.

Columns of :func:`neuron_frame`:

- ``site``, ``layer``, ``index``, ``score``: the set itself (``score`` NaN where a set has none);
- ``hf_module``: the Hugging Face module path whose output holds the neuron
  (``model.layers.3.mlp.gate_proj``);
- ``channel``: the neuron's output channel within that module. It equals ``index`` except for
  fused projections (Phi-3 ``qkv_proj``/``gate_up_proj``, GPT-2 ``c_attn``, GPT-NeoX
  ``query_key_value``), where it is resolved through the adapter's slice of the fused output;
- ``tl_hook``: the TransformerLens hook whose activation holds the neuron, where TransformerLens
  has one for this model and site: ``blocks.{layer}.mlp.hook_pre`` (the gate of a gated MLP, or
  the input projection of a plain one), ``blocks.{layer}.mlp.hook_pre_linear`` (the up projection),
  ``blocks.{layer}.attn.hook_q|hook_k|hook_v``. In an attention hook, whose shape is
  ``[batch, pos, head, d_head]``, the neuron is at ``divmod(index, d_head)``. None otherwise.

The three model columns need the model (or its adapter); without one they are None.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError
from ..fileio import atomic_path
from ..models.adapters import ModelAdapter, get_adapter

COLUMNS = ("site", "layer", "index", "score", "hf_module", "channel", "tl_hook")

TL_HOOKS = {
    "mlp.gate": "mlp.hook_pre",
    "mlp.in": "mlp.hook_pre",
    "mlp.up": "mlp.hook_pre_linear",
    "attn.q": "attn.hook_q",
    "attn.k": "attn.hook_k",
    "attn.v": "attn.hook_v",
}
# Architectures TransformerLens implements (HF model_type, or the adapter family when only the
# adapter is known). The project's "llama" family also covers types TransformerLens lacks, so a
# bare adapter of that family is an approximation; pass the model for an exact answer.
TL_MODEL_TYPES = frozenset(
    {
        "llama",
        "mistral",
        "mixtral",
        "qwen",
        "qwen2",
        "qwen3",
        "gemma",
        "gemma2",
        "gemma3",
        "gemma3_text",
        "olmo",
        "olmo2",
        "phi",
        "phi3",
        "gpt2",
        "gpt_neox",
    }
)


def _adapter(model: Any) -> tuple[Any, str | None]:
    """(adapter, model_type) from a model or an adapter."""
    if isinstance(model, ModelAdapter):
        return model, model.family
    if isinstance(model, torch.nn.Module):
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        return get_adapter(model), model_type
    raise InputError(f"to_frame(model=...) needs a model or its ModelAdapter, got {type(model).__name__}")


def _channels(site: Any, indices: torch.Tensor) -> list[int]:
    if isinstance(site.channels, slice):
        return (indices + (site.channels.start or 0)).tolist()
    return site.channels[indices].tolist()


def neuron_frame(neuron_set: Any, model: Any = None) -> Any:
    """One row per neuron of ``neuron_set``, with the columns in :data:`COLUMNS` (pandas DataFrame)."""
    import pandas as pd

    ns = neuron_set
    names = [ns.site_names[i] for i in ns.site_ids.tolist()]
    layers, indices = ns.layers.tolist(), ns.indices.tolist()
    hf: list[str | None] = [None] * len(ns)
    channel: list[int | None] = [None] * len(ns)
    tl: list[str | None] = [None] * len(ns)
    if model is not None and len(ns):
        adapter, model_type = _adapter(model)
        missing = [s for s in ns.sites if s not in adapter.sites]
        if missing:
            raise InputError(f"NeuronSet {ns.kind!r} has site(s) {missing} that this {adapter.family} model lacks")
        if int(ns.layers.max()) >= adapter.num_layers:
            raise InputError(
                f"NeuronSet {ns.kind!r} has layer {int(ns.layers.max())}; the model has {adapter.num_layers}"
            )
        tl_ok = model_type in TL_MODEL_TYPES
        for sid, site_name in enumerate(ns.site_names):
            rows = (ns.site_ids == sid).nonzero().squeeze(1)
            if not rows.numel():
                continue
            site = adapter.sites[site_name]
            for row, ch in zip(rows.tolist(), _channels(site, ns.indices[rows])):
                hf[row] = site.module_paths[layers[row]]
                channel[row] = ch
                if tl_ok and site_name in TL_HOOKS:
                    tl[row] = f"blocks.{layers[row]}.{TL_HOOKS[site_name]}"
    frame = pd.DataFrame(
        {
            "site": names,
            "layer": layers,
            "index": indices,
            "score": ns.scores.tolist(),
            "hf_module": hf,
            "channel": pd.array(channel, dtype="Int64"),
            "tl_hook": tl,
        }
    )
    return frame[list(COLUMNS)]


def write_parquet(frame: Any, path: str | os.PathLike) -> Path:
    """Write a DataFrame as Parquet, atomically; a missing engine is a one-line error saying what to install."""
    if importlib.util.find_spec("pyarrow") is None:  # the engine pandas needs for Parquet
        raise InputError("writing Parquet needs pyarrow: pip install pyarrow")
    path = Path(path)
    with atomic_path(path, suffix=".parquet") as tmp:
        frame.to_parquet(tmp, index=False)
    return path
