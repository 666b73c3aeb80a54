"""Many interventions in one forward pass: each row of a batch under its own condition.

The conditions of one experiment (the original model, a set, its random sets; the sizes of a
dose-response; the countries of a cross-culture matrix) are evaluated on the same items. Instead of
one pass over every item per condition, :func:`intervene_rows` lets a batch hold copies of an item
under several conditions at once: row ``r`` of a forward pass runs condition ``e % C``, where ``e``
is the example index that the pass announced for that row
(:func:`~culture_neurons.likelihood.tags.batch_examples`) and ``C`` the number of conditions, so a
caller lays the items out as ``C`` consecutive copies each (:func:`copies_of`).

One forward hook per touched module rewrites the union ``U`` of the channels any condition touches:
``out[..., U] = out[..., U] * scale[c] + shift[c]``, with ``scale`` 0 and ``shift`` 0 (suppress),
``scale`` the factor (enhance), ``scale`` 0 and ``shift`` the channel mean (mean), and 1 / 0 where
condition ``c`` leaves a channel alone. Each of these is exact in floating point, so a row computes
what :func:`~.intervene.intervene` computes for its condition alone; only the batch it shares can
differ (padding widths), which changes results by float rounding at most.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import InputError, ScoringError
from ..likelihood.tags import current_batch_examples
from ..models.adapters import get_adapter
from ..models.hooks import forward_hooks
from ..selection.neuronset import NeuronSet
from .intervene import as_set, check_op, plan


@dataclass(frozen=True)
class RowCondition:
    """One condition of :func:`intervene_rows`: ``neurons`` under ``op`` (None: the unchanged model)."""

    neurons: NeuronSet | Sequence[NeuronSet] | None = None
    op: str = "suppress"
    factor: float = 2.0
    means: Mapping[str, torch.Tensor] | None = None


def copies_of(items: Sequence[Any], conditions: int) -> list[Any]:
    """``items`` laid out for :func:`intervene_rows`: each item ``conditions`` times in a row (item-major)."""
    return [item for item in items for _ in range(conditions)]


@dataclass
class RowTable:
    module: nn.Module
    channels: torch.Tensor  # int64 [k]: the union of the channels any condition touches
    scale: torch.Tensor  # float32 [C, k]
    shift: torch.Tensor  # float32 [C, k]


def _tables(model: nn.Module, conditions: Sequence[RowCondition], site_map: Any) -> list[RowTable]:
    """Per touched module, the union of channels and each condition's scale and shift on them."""
    adapter = get_adapter(model, site_map)
    per_condition: list[dict[str, Any]] = []
    modules: dict[str, nn.Module] = {}
    for cond in conditions:
        entries: dict[str, Any] = {}
        if cond.neurons is not None:
            ns = as_set(cond.neurons)
            for p in plan(ns, adapter, model, cond.means if cond.op == "mean" else None):
                entries[p.path] = p
                modules[p.path] = p.module
        per_condition.append(entries)
    tables = []
    for path in sorted(modules):
        parts = [entries[path].channels.cpu() for entries in per_condition if path in entries]
        union = torch.cat(parts).unique()  # sorted
        scale = torch.ones((len(conditions), union.numel()), dtype=torch.float32)
        shift = torch.zeros_like(scale)
        for c, (cond, entries) in enumerate(zip(conditions, per_condition)):
            hook_plan = entries.get(path)
            if hook_plan is None:
                continue
            cols = torch.searchsorted(union, hook_plan.channels.cpu())
            if cond.op == "enhance":
                scale[c, cols] = float(cond.factor)
            else:
                scale[c, cols] = 0.0
                if cond.op == "mean":
                    shift[c, cols] = hook_plan.values.cpu().float()
        device = next((q.device for q in modules[path].parameters()), torch.device("cpu"))
        tables.append(RowTable(modules[path], union.to(device), scale.to(device), shift.to(device)))
    return tables


def _row_conditions(rows: int, count: int) -> torch.Tensor:
    examples = current_batch_examples()
    if examples is None:
        raise ScoringError(
            "a forward pass under intervene_rows did not announce its rows' examples "
            "(wrap the model call in likelihood.tags.batch_examples)"
        )
    if examples.numel() != rows:
        raise ScoringError(f"a forward pass announced {examples.numel()} rows' examples but has {rows} rows")
    return examples % count


def _hook(table: RowTable, count: int):
    cache: dict[torch.device, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {
        table.channels.device: (table.channels, table.scale, table.shift)
    }

    def hook(_module, _inputs, output):
        out = output[0] if isinstance(output, tuple) else output
        moved = cache.get(out.device)
        if moved is None:
            moved = cache.setdefault(
                out.device, (table.channels.to(out.device), table.scale.to(out.device), table.shift.to(out.device))
            )
        idx, scale, shift = moved
        cond = _row_conditions(out.shape[0], count).to(out.device)
        view = (out.shape[0],) + (1,) * (out.dim() - 2) + (idx.numel(),)
        a = scale[cond].to(out.dtype).view(view)
        b = shift[cond].to(out.dtype).view(view)
        new = out.index_copy(-1, idx, out.index_select(-1, idx) * a + b)
        return (new, *output[1:]) if isinstance(output, tuple) else new

    return hook


@contextlib.contextmanager
def intervene_rows(
    model: nn.Module, conditions: Sequence[RowCondition], *, site_map: Any = None
) -> Iterator[list[RowTable]]:
    """Run row ``r`` of every forward pass in the block under ``conditions[e % len(conditions)]``.

    ``e`` is the example index the pass announced for row ``r``; every forward pass of
    :mod:`culture_neurons.likelihood` and the evaluation scorers announces it. Lay items out with
    :func:`copies_of`. A forward pass that announced nothing fails rather than guess. Hooks are
    removed when the block ends, exceptions included.

    Raises:
        InputError: no conditions, an unknown op, a bad factor, ``mean`` without means, an empty set,
            or a set that does not fit the model.
    """
    if not conditions:
        raise InputError("intervene_rows needs at least one condition")
    for cond in conditions:
        check_op(cond.op, cond.factor, cond.means)
        if isinstance(cond.neurons, NeuronSet) and len(cond.neurons) == 0:
            raise InputError(f"NeuronSet {cond.neurons.kind!r} is empty; there is nothing to {cond.op}")
    tables = _tables(model, conditions, site_map)
    with forward_hooks([(t.module, _hook(t, len(conditions))) for t in tables]):
        yield tables
