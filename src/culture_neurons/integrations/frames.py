"""Neurons in other tools' terms: pandas frames, TransformerLens activations, nnsight module paths.

- :func:`score_frame`: a ScoreTable site as a DataFrame, with the Hugging Face module, the output
  channel within it and the TransformerLens hook (the same columns as ``NeuronSet.to_frame``).
- :func:`tl_index`: where a neuron sits in a TransformerLens cached activation
  (``cache[tl_hook][batch, pos, *tl_index(...)]``).
- :func:`attribute_path` / :func:`resolve_path`: the Hugging Face module path written as the
  attribute chain that nnsight (and plain PyTorch) use, ``model.layers[3].mlp.gate_proj``, and the
  object it names on a model or an nnsight ``LanguageModel``.

Nothing here imports TransformerLens or nnsight; they are only named.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import InputError

_INDEX = re.compile(r"^\d+$")


def score_frame(table: Any, site: str, model: Any = None, groups: bool = False, top: int | None = None) -> Any:
    """One ScoreTable site as a DataFrame: ``site, layer, index, score`` (S_d), with ``groups`` a
    ``score:<group>`` column per group, and with ``model`` (a model or its adapter) also ``hf_module``,
    ``channel`` and ``tl_hook``. ``top`` keeps the ``top`` highest-scoring rows, best first."""
    from ..selection.frame import neuron_frame
    from ..selection.neuronset import NeuronSet

    frame = table.to_frame(site, groups=groups)
    if top is not None:
        if top < 1:
            raise InputError(f"top must be at least 1, got {top}")
        frame = frame.sort_values(["score", "layer", "index"], ascending=[False, True, True], kind="stable").head(top)
    if model is not None:
        ns = NeuronSet.from_columns(
            [site] * len(frame),
            frame["layer"].tolist(),
            frame["index"].tolist(),
            num_layers=table.num_layers,
            widths=table.widths,
        )
        located = neuron_frame(ns, model)
        for column in ("hf_module", "channel", "tl_hook"):
            frame[column] = located[column].to_numpy()
    return frame.reset_index(drop=True)


def tl_index(tl_hook: str | None, index: int, d_head: int | None = None) -> tuple[int, ...]:
    """The trailing index of a neuron in a TransformerLens activation.

    MLP hooks (``hook_pre``, ``hook_pre_linear``) are ``[batch, pos, d_mlp]``: ``(index,)``.
    Attention hooks (``hook_q|k|v``) are ``[batch, pos, head, d_head]``: ``divmod(index, d_head)``.
    """
    if tl_hook is None:
        raise InputError(
            "this neuron has no TransformerLens hook (the model or site has no TransformerLens equivalent)"
        )
    if ".attn.hook_" in tl_hook:
        if not d_head:
            raise InputError(f"{tl_hook} is per head: pass d_head (the model's head dimension)")
        return divmod(int(index), int(d_head))
    return (int(index),)


def attribute_path(hf_module: str) -> str:
    """``model.layers.3.mlp.gate_proj`` -> ``model.layers[3].mlp.gate_proj`` (nnsight's attribute form)."""
    parts = [p for p in hf_module.split(".") if p]
    if not parts:
        raise InputError("empty module path")
    out = parts[0]
    for part in parts[1:]:
        out += f"[{part}]" if _INDEX.match(part) else f".{part}"
    return out


def resolve_path(root: Any, hf_module: str) -> Any:
    """The object ``hf_module`` names under ``root``: attributes, and ``[i]`` for numbered parts.

    Works on a PyTorch model (gives the module) and on an nnsight ``LanguageModel`` (gives the
    envoy whose ``.output`` is the module's output inside a trace).
    """
    node = root
    for part in (p for p in hf_module.split(".") if p):
        try:
            node = node[int(part)] if _INDEX.match(part) else getattr(node, part)
        except (AttributeError, IndexError, TypeError):
            raise InputError(f"{type(root).__name__} has no {hf_module!r} (stopped at {part!r})") from None
    return node
