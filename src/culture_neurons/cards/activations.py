"""What makes a neuron fire: one batched forward pass that records the chosen neurons' activations.

A neuron's *activation* is the value of its site's channel, the tensor the attribution hooks (for
``mlp.gate`` the gate projection's output before the activation function), at the token positions
scoring reduces over: every real position of the example's row (``label``, ``answer``), or of its
prompt and each option's own tokens (``choice``). An example's activation is the maximum over those
positions, as the score's ``max`` aggregation takes it.

The pass is batched as scoring is: rows tokenised by the same code (:func:`~culture_neurons.attribution.
batching.target_rows`), length-sorted batches, and the ``choice`` options packed into one sequence per
example under a custom attention mask where the model allows it (else one row per option). It runs
without gradients and stops at the deepest layer that holds a chosen neuron. What it keeps per
neuron: each example's maximum and the position of it, how many positions are above 0, and the
per-token values of its ``top_k`` highest examples (a running top-k, merged batch by batch).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..attribution.batching import target_rows
from ..data.example import Example
from ..likelihood import Row, collate_rows, continuation_logprobs, length_batches, packed_forward, packs
from ..models.adapters import ModelAdapter, get_adapter
from ..models.hooks import forward_hooks
from .neurons import NeuronRef, check_neurons


class _Stop(Exception):
    """Raised by the deepest hook once every hooked module has fired: the rest of the forward is not needed."""


@dataclass
class Captured:
    """What one pass recorded for ``n`` neurons over ``E`` examples.

    Attributes:
        neurons: the neurons, in column order.
        example_max: float32 ``[E, n]``, each example's activation (maximum over its scored positions; NaN
            for an example with no position left).
        example_argmax: int64 ``[E, n]``, the position of that maximum in ``tokens[e]``.
        active: int64 ``[n]``, positions whose activation is above 0.
        positions: how many positions were counted in all (the shared prefix left out, see :func:`capture`).
        top_index: int64 ``[k, n]``, the ``k`` examples with the highest activation, highest first
            (ties: the earlier example first); -1 where there are fewer than ``k`` examples.
        top_heat: float32 ``[k, n, L]``, their activation at every position (NaN past their end).
        tokens: each example's token ids at its scored positions, in order.
        breaks: where in ``tokens[e]`` each row's own tokens begin (each option's, for ``choice``).
    """

    neurons: list[NeuronRef]
    example_max: torch.Tensor
    example_argmax: torch.Tensor
    active: torch.Tensor
    positions: int
    top_index: torch.Tensor
    top_heat: torch.Tensor
    tokens: list[tuple[int, ...]]
    breaks: list[tuple[int, ...]]


def row_breaks(rows: Sequence[Row]) -> tuple[int, ...]:
    """Where each row's own tokens begin among :func:`canonical_tokens` (rows with none left out)."""
    out, start = [], rows[0].prompt_len
    for r in rows:
        own = len(r.input_ids) - r.prompt_len
        if own:
            out.append(start)
        start += own
    return tuple(out)


def canonical_tokens(rows: Sequence[Row]) -> tuple[int, ...]:
    """An example's scored positions as token ids: its prompt, then each row's own tokens (``choice``: each option)."""
    first = rows[0]
    return tuple(first.input_ids[: first.prompt_len]) + tuple(t for r in rows for t in r.input_ids[r.prompt_len :])


class _Plan:
    """Where each neuron's values come from: per hooked module, the output channels and their neuron columns."""

    def __init__(self, adapter: ModelAdapter, neurons: Sequence[NeuronRef]) -> None:
        self.n = len(neurons)
        by_module: dict[tuple[int, str], tuple[Any, list[int], list[int]]] = {}
        for column, ref in enumerate(neurons):
            site = adapter.sites[ref.site]
            if isinstance(site.channels, slice):  # the site's channels within its (possibly fused) module's output
                channel = (site.channels.start or 0) + ref.index
            else:
                channel = int(site.channels[ref.index])
            module = site.modules[ref.layer]
            entry = by_module.setdefault((ref.layer, site.module_paths[ref.layer]), (module, [], []))
            entry[1].append(channel)
            entry[2].append(column)
        self.points = [
            (module, torch.tensor(channels), torch.tensor(columns))
            for _, (module, channels, columns) in sorted(by_module.items())
        ]

    def hooks(self, store: dict[int, torch.Tensor]) -> list[tuple[Any, Any]]:
        fired: set[int] = set()

        def make(i: int, channels: torch.Tensor):
            def hook(_module, _inputs, output):
                out = output[0] if isinstance(output, tuple) else output
                store[i] = out.index_select(-1, channels.to(out.device)).float().cpu()
                fired.add(i)
                if len(fired) == len(self.points):
                    fired.clear()
                    raise _Stop

            return hook

        return [(module, make(i, channels)) for i, (module, channels, _) in enumerate(self.points)]

    def assemble(self, store: dict[int, torch.Tensor]) -> torch.Tensor:
        """``[rows, T, n]`` from the per-module parts."""
        first = next(iter(store.values()))
        out = torch.zeros(*first.shape[:2], self.n)
        for i, (_, _, columns) in enumerate(self.points):
            out[:, :, columns] = store[i]
        return out


class _Mask:
    """Captures the attention mask the model is called with (2-D padding mask or the packed 4-D mask)."""

    def __init__(self) -> None:
        self.value: torch.Tensor | None = None

    def hook(self, _module, _args, kwargs):
        self.value = kwargs.get("attention_mask")

    def real(self) -> torch.Tensor:
        """``[rows, T]`` bool: the real positions (a packed 4-D mask lets a real token see itself, padding nothing)."""
        mask = self.value.detach().cpu()
        if mask.dim() == 4:
            return torch.diagonal(mask[:, 0], dim1=1, dim2=2) == 0
        return mask.bool()


def _run(forward: Any) -> None:
    with contextlib.suppress(_Stop):
        forward()


def _batch_values(
    model: Any, plan: _Plan, rows: list[list[Row]], idx: list[int], target: str, pad_id: int
) -> torch.Tensor:
    """``[E, L, n]`` values of one batch at each example's scored positions (in :func:`canonical_tokens` order;
    NaN past an example's end)."""
    store: dict[int, torch.Tensor] = {}
    batch_rows = [rows[i] for i in idx]
    flat = [r for rs in batch_rows for r in rs]
    mask = _Mask()
    handle = model.register_forward_pre_hook(mask.hook, with_kwargs=True)
    try:
        with forward_hooks(plan.hooks(store)):
            if target == "choice" and packs(model, flat):
                _run(lambda: packed_forward(model, flat, pad_id))
                real = mask.real()
                where = [[(e, int(t)) for t in real[e].nonzero()[:, 0]] for e in range(len(idx))]
            else:
                padding = "right" if target == "choice" else "left"
                batch = collate_rows(idx, batch_rows, pad_id, padding).to(next(model.parameters()).device)
                _run(lambda: continuation_logprobs(model, batch))
                where = _row_positions(batch.attention_mask.cpu(), batch.prompt_mask.cpu(), batch.row_example.cpu())
    finally:
        handle.remove()
    captured = plan.assemble(store)
    width = max(len(w) for w in where)
    row = torch.zeros(len(idx), width, dtype=torch.long)
    col = torch.zeros(len(idx), width, dtype=torch.long)
    valid = torch.zeros(len(idx), width, dtype=torch.bool)
    for e, pairs in enumerate(where):
        if pairs:
            row[e, : len(pairs)] = torch.tensor([p[0] for p in pairs])
            col[e, : len(pairs)] = torch.tensor([p[1] for p in pairs])
            valid[e, : len(pairs)] = True
    return captured[row, col].masked_fill_(~valid[..., None], float("nan"))


def _row_positions(
    attention: torch.Tensor, prompt: torch.Tensor, row_example: torch.Tensor
) -> list[list[tuple[int, int]]]:
    """Per example, ``(row, column)`` of its scored positions: the first row's prompt, then each row's own tokens."""
    out: list[list[tuple[int, int]]] = [[] for _ in range(int(row_example.max()) + 1)]
    seen: set[int] = set()
    own = attention & ~prompt
    for r, e in enumerate(row_example.tolist()):
        if e not in seen:
            seen.add(e)
            out[e] += [(r, int(t)) for t in prompt[r].nonzero()[:, 0]]
        out[e] += [(r, int(t)) for t in own[r].nonzero()[:, 0]]
    return out


def shared_prefix_length(tokens: Sequence[tuple[int, ...]]) -> int:
    """How many leading tokens every example shares (BOS, a chat template's system prompt, a fixed instruction),
    at most one less than the shortest example; 0 for fewer than two examples."""
    if len(tokens) < 2:
        return 0
    shortest = min(len(t) for t in tokens)
    length = 0
    while length < shortest - 1 and all(t[length] == tokens[0][length] for t in tokens):
        length += 1
    return length


def prefix_lengths(tokens: Sequence[tuple[int, ...]], groups: Sequence[object]) -> list[int]:
    """The leading positions each example leaves out: :func:`shared_prefix_length` over the examples of its group
    (its source and prompt template: each writes its own fixed opening), and always the first position of an
    example of two tokens or more. The first position sees only itself, and most models put outlier activations
    there (an attention sink); counted, it would top the lists of every source without a shared opening."""
    members: dict[object, list[int]] = {}
    for e, group in enumerate(groups):
        members.setdefault(group, []).append(e)
    out = [0] * len(tokens)
    for indices in members.values():
        length = shared_prefix_length([tokens[e] for e in indices])
        for e in indices:
            out[e] = max(length, 1) if len(tokens[e]) > 1 else 0
    return out


class _TopK:
    """A running top-``k`` over examples per neuron, keeping each kept example's per-token values."""

    def __init__(self, k: int, n: int) -> None:
        self.k = k
        self.values = torch.full((k, n), float("-inf"))
        self.index = torch.full((k, n), -1, dtype=torch.long)
        self.heat = torch.full((k, n, 1), float("nan"))

    def add(self, maxima: torch.Tensor, heat: torch.Tensor, examples: torch.Tensor) -> None:
        """``maxima [E, n]``, ``heat [E, n, L]`` and the batch's example indices ``[E]``."""
        width = max(self.heat.shape[2], heat.shape[2])
        values = torch.cat([self.values, maxima])
        index = torch.cat([self.index, examples[:, None].expand_as(maxima)])
        heat = torch.cat([_pad(self.heat, width), _pad(heat, width)])
        # highest first; among equal values the earlier example (a stable sort on the example index first)
        by_example = torch.where(index < 0, torch.iinfo(torch.long).max, index).argsort(dim=0, stable=True)
        values, index, heat = (
            values.gather(0, by_example),
            index.gather(0, by_example),
            heat[by_example, torch.arange(values.shape[1])],
        )
        order = values.argsort(dim=0, descending=True, stable=True)[: self.k]
        columns = torch.arange(values.shape[1])
        self.values, self.index, self.heat = values.gather(0, order), index.gather(0, order), heat[order, columns]


def _pad(heat: torch.Tensor, width: int) -> torch.Tensor:
    if heat.shape[2] == width:
        return heat
    return torch.cat([heat, heat.new_full((*heat.shape[:2], width - heat.shape[2]), float("nan"))], dim=2)


def capture(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    neurons: Sequence[NeuronRef],
    *,
    adapter: ModelAdapter | None = None,
    target: str = "label",
    chat_template: bool = True,
    batch_size: int = 8,
    top_k: int = 5,
    shared_prefix: bool = False,
    prefix_groups: Sequence[object] | None = None,
    progress: Any = None,
) -> Captured:
    """Run ``examples`` once and record the activations of ``neurons`` (see the module docstring).

    ``target`` and ``chat_template`` must be the scoring run's, so that the positions are the ones scoring
    reduced over, except that the first position and the leading tokens all examples of a group share
    (:func:`prefix_lengths`; ``prefix_groups[e]`` is example ``e``'s group, default one group) are left out
    (with ``shared_prefix``, none are):
    under causal attention their activations are the same in every example of the group, so a neuron that
    is largest there (at BOS, in a chat template's system prompt, in a template's fixed opening) would rank
    those examples alike and say nothing about any of them.
    ``progress`` is called with the number of examples after each batch.
    """
    adapter = adapter or get_adapter(model)
    refs = list(neurons)
    check_neurons(refs, adapter)
    rows = target_rows(tokenizer, examples, target, chat_template)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    plan = _Plan(adapter, refs)
    tokens = [canonical_tokens(r) for r in rows]
    groups = [0] * len(tokens) if prefix_groups is None else list(prefix_groups)
    prefix = [0] * len(tokens) if shared_prefix else prefix_lengths(tokens, groups)
    n, count = len(refs), len(examples)
    example_max = torch.full((count, n), float("nan"))
    example_argmax = torch.zeros((count, n), dtype=torch.long)
    active = torch.zeros(n, dtype=torch.long)
    positions = 0
    top = _TopK(top_k, n)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for idx in length_batches(rows, batch_size):
                values = _batch_values(model, plan, rows, idx, target, pad_id)
                skip = torch.tensor([prefix[i] for i in idx])  # the shared prefix: the same values in every example
                values[torch.arange(values.shape[1])[None, :] < skip[:, None]] = float("nan")
                valid = ~values[..., 0].isnan()
                best, where = values.nan_to_num(nan=float("-inf")).max(dim=1)  # [E, n]
                ids = torch.tensor(idx)
                example_max[ids], example_argmax[ids] = best.masked_fill_(best == float("-inf"), float("nan")), where
                active += (values > 0).sum((0, 1))
                positions += int(valid.sum())
                top.add(best.nan_to_num(nan=float("-inf")), values.permute(0, 2, 1), ids)
                if progress is not None:
                    progress(len(idx))
    finally:
        model.train(was_training)
    breaks = [row_breaks(r) for r in rows]
    return Captured(refs, example_max, example_argmax, active, positions, top.index, top.heat, tokens, breaks)
