"""Suppress or enhance neurons through forward hooks that a context manager owns.

``suppress`` sets a neuron's channel of its site's output to exactly 0; ``enhance`` multiplies it
by ``factor`` (2 by default); ``mean`` sets it to the channel's mean activation over a reference set
(:func:`~.means.channel_means`). All act at every position. Channels are mapped through the model's
adapter, so fused projections (Phi-3 ``qkv_proj``/``gate_up_proj``, GPT-2 ``c_attn``, NeoX's
per-head interleaved ``query_key_value``) are hit only in their site's slice. The output-channel
index tensors are computed once per hooked module when the block is entered.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from ..models.adapters import ModelAdapter, Site, get_adapter
from ..models.hooks import forward_hooks
from ..selection.neuronset import NeuronSet

log = logging.getLogger(__name__)

OPS = ("suppress", "enhance", "mean")


@dataclass
class HookPlan:
    """One hooked module: the output channels to change, already on the module's device."""

    layer: int
    path: str
    module: nn.Module
    channels: torch.Tensor  # int64 [k], indices into the module's output features
    values: torch.Tensor | None = None  # float32 [k]: op "mean" only, the value each channel is set to


def check_op(op: str, factor: Any, means: Mapping[str, torch.Tensor] | None = None) -> None:
    """Raise :class:`InputError` for an unknown ``op``, a factor that is not a finite number, or ``mean``
    without means."""
    if op not in OPS:
        raise InputError(f"unknown intervention op {op!r}; choose one of {', '.join(OPS)}")
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor):
        raise InputError(f"factor must be a finite number, got {factor!r}")
    if op == "mean" and means is None:
        raise InputError("op 'mean' needs the channel means (means=channel_means(...), or --means / --mean-examples)")


def as_set(neuron_set: NeuronSet | Sequence[NeuronSet]) -> NeuronSet:
    """One NeuronSet from a set or a non-empty list of sets (their union)."""
    if isinstance(neuron_set, NeuronSet):
        return neuron_set
    sets = list(neuron_set)
    if not sets or not all(isinstance(s, NeuronSet) for s in sets):
        raise InputError("intervene() needs a NeuronSet or a non-empty list of NeuronSets")
    return sets[0].union(*sets[1:]) if len(sets) > 1 else sets[0]


def check_fits(neuron_set: NeuronSet, adapter: ModelAdapter, model: Any = None) -> None:
    """Raise :class:`InputError` unless every neuron of the set exists in the adapter's model.

    A recorded shape that differs from the model's (layers or a site's width) means the set was
    selected on another model. A differing config hash with the same shape only logs a warning
    (a re-saved or converted checkpoint of the same model can differ in config details).
    """
    name = f"NeuronSet {neuron_set.kind!r}"
    if neuron_set.num_layers is not None and neuron_set.num_layers != adapter.num_layers:
        raise InputError(
            f"{name} comes from a different model: it was selected on a model with {neuron_set.num_layers} layers, "
            f"this {adapter.family} model has {adapter.num_layers}"
        )
    if neuron_set.widths:
        clash = {
            s: (w, adapter.widths[s])
            for s, w in neuron_set.widths.items()
            if s in adapter.widths and adapter.widths[s] != w
        }
        if clash:
            detail = ", ".join(f"{s} {a} vs {b}" for s, (a, b) in clash.items())
            raise InputError(f"{name} comes from a different model: site widths differ ({detail}; set vs model)")
    missing = [s for s in neuron_set.sites if s not in adapter.sites]
    if missing:
        raise InputError(
            f"{name} uses site(s) {', '.join(missing)}, which this {adapter.family} model lacks "
            f"(it has {', '.join(adapter.sites)})"
        )
    for site, (layers, indices) in neuron_set.by_site().items():
        width = adapter.sites[site].width
        bad = (layers >= adapter.num_layers) | (indices >= width)
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            raise InputError(
                f"{name} has out-of-range indices: {site} layer {int(layers[i])} index {int(indices[i])}, "
                f"but this {adapter.family} model has {adapter.num_layers} layers and {site} width {width}"
            )
    mine = neuron_set.model.get("config_sha256")
    if mine and model is not None and getattr(model, "config", None) is not None:
        from ..models.loading import model_identity

        theirs = model_identity(model)["config_sha256"]
        if theirs != mine:
            log.warning(
                "%s was selected on %r, whose config differs from this model's; check that it is the same model",
                name,
                neuron_set.model.get("name_or_path"),
            )


def _module_device(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    return torch.device("cpu")


def _site_channels(site: Site, indices: torch.Tensor) -> torch.Tensor:
    """Site channel indices -> module output channel indices."""
    if isinstance(site.channels, slice):
        return indices + (site.channels.start or 0)
    return site.channels.to(indices.device)[indices]


def _mean_values(
    means: Mapping[str, torch.Tensor], site: str, layers: torch.Tensor, indices: torch.Tensor
) -> torch.Tensor:
    table = means.get(site)
    if table is None:
        raise InputError(
            f"the channel means have no entry for site {site!r} (they cover {', '.join(sorted(means)) or 'nothing'}); "
            "recompute them for this set (--mean-examples)"
        )
    if table.dim() != 2 or int(layers.max()) >= table.shape[0] or int(indices.max()) >= table.shape[1]:
        raise InputError(
            f"the channel means of site {site!r} have shape {tuple(table.shape)}, which does not cover this set "
            "(computed on another model?)"
        )
    return table[layers, indices].float()


def plan(
    neuron_set: NeuronSet | Sequence[NeuronSet],
    adapter: ModelAdapter,
    model: Any = None,
    means: Mapping[str, torch.Tensor] | None = None,
) -> list[HookPlan]:
    """Group a set's neurons by hooked module and map them to output channels (no per-neuron loop).

    With ``means`` (``{site: [num_layers, width]}``), each plan also carries the value of each of its
    channels, for the ``mean`` op.
    """
    ns = as_set(neuron_set)
    check_fits(ns, adapter, model)
    per_module: dict[tuple[int, str], tuple[nn.Module, list[torch.Tensor], list[torch.Tensor]]] = {}
    for site_name, (layers, indices) in ns.by_site().items():
        site = adapter.sites[site_name]
        out_channels = _site_channels(site, indices)
        values = _mean_values(means, site_name, layers, indices) if means is not None else None
        for layer in layers.unique().tolist():
            key = (layer, site.module_paths[layer])
            entry = per_module.setdefault(key, (site.modules[layer], [], []))
            entry[1].append(out_channels[layers == layer])
            if values is not None:
                entry[2].append(values[layers == layer])
    plans = []
    for (layer, path), (module, parts, value_parts) in sorted(per_module.items()):
        channels = torch.cat(parts)
        # Sites of one module own disjoint channels, and a NeuronSet holds no duplicates, so sorting
        # keeps the channel -> value pairing while giving the same order as before.
        channels, order = channels.sort()
        vals = torch.cat(value_parts)[order] if value_parts else None
        device = _module_device(module)
        plans.append(HookPlan(layer, path, module, channels.to(device), None if vals is None else vals.to(device)))
    return plans


def _hook(channels: torch.Tensor, op: str, factor: float, values: torch.Tensor | None = None):
    cache: dict[torch.device, tuple[torch.Tensor, torch.Tensor | None]] = {channels.device: (channels, values)}

    def hook(_module, _inputs, output):
        out = output[0] if isinstance(output, tuple) else output
        pair = cache.get(out.device)
        if pair is None:
            pair = cache.setdefault(
                out.device, (channels.to(out.device), None if values is None else values.to(out.device))
            )
        idx, vals = pair
        if op == "suppress":
            new = out.index_fill(-1, idx, 0.0)
        elif op == "mean":
            new = out.index_copy(-1, idx, vals.to(out.dtype).expand(*out.shape[:-1], idx.numel()))
        else:
            new = out.index_copy(-1, idx, out.index_select(-1, idx) * factor)
        return (new, *output[1:]) if isinstance(output, tuple) else new

    return hook


@dataclass
class Intervention:
    """What an active :func:`intervene` block changed."""

    op: str
    factor: float
    neurons: int
    plans: list[HookPlan]

    @property
    def modules(self) -> list[str]:
        return [p.path for p in self.plans]


@contextlib.contextmanager
def intervene(
    model: nn.Module,
    neuron_set: NeuronSet | Sequence[NeuronSet],
    op: str = "suppress",
    factor: float = 2.0,
    *,
    adapter: ModelAdapter | None = None,
    site_map: Any = None,
    means: Mapping[str, torch.Tensor] | None = None,
) -> Iterator[Intervention]:
    """Suppress (zero), enhance (multiply by ``factor``) or mean-ablate the neurons of one or more sets.

    Usage::

        with intervene(model, general_set):                      # suppress
            ...
        with intervene(model, [set_a, set_b], op="enhance", factor=2.0):
            ...
        with intervene(model, general_set, op="mean", means=channel_means(model, tok, examples, general_set)):
            ...

    ``means`` (op ``mean`` only): ``{site: [num_layers, width]}`` mean activations, as returned by
    :func:`~.means.channel_means` or read by :func:`~.means.load_means`; ``factor`` is ignored.

    Blocks nest: hooks registered by an inner block run after the outer block's. Every hook is
    removed when the block ends, also when an exception passes through, so the model computes
    exactly what it computed before. An empty set registers nothing and changes nothing.

    Raises:
        InputError: unknown ``op``, bad ``factor``, ``op="mean"`` without ``means`` (or means that do
            not cover the set), or a set that does not fit the model (another
            model's layers or widths, a site the model lacks, out-of-range indices).
    """
    check_op(op, factor, means)
    ns = as_set(neuron_set)
    adapter = adapter or get_adapter(model, site_map)
    plans = plan(ns, adapter, model, means if op == "mean" else None)
    hooks = [(p.module, _hook(p.channels, op, float(factor), p.values)) for p in plans]
    with forward_hooks(hooks):
        yield Intervention(op, float(factor), len(ns), plans)
