"""True ablation effects on the scoring target: p without intervention minus p with neurons zeroed.

``p`` is the attribution target of :class:`~culture_neurons.attribution.engine.ScoringOptions`
(``label``, ``answer`` or ``choice``), computed without gradients from the same rows the engine
scores. Many single-neuron ablations cost forward passes only: the batch of rows is replicated
once per neuron, and one forward hook per touched module multiplies its output by a 0/1 mask that
zeroes, in each replica, that replica's neuron(s) alone. Where the model takes a KV cache, each
replica's prompts run once and its options continue from the cache (as the engine's ``choice``
target does), so a 4-option item costs about one prompt pass instead of four.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ..attribution.batching import target_rows
from ..data.example import Example
from ..intervention.intervene import plan
from ..likelihood import (
    collate_rows,
    continuation_logprobs,
    gold_option,
    gold_positions,
    grouped_softmax,
    mean_logprob,
    shared_prefix_forward,
    supports_shared_prefix,
)
from ..models.adapters import get_adapter
from ..models.hooks import forward_hooks
from ..selection.neuronset import NeuronSet


def _target_p(
    logprobs: torch.Tensor, valid: torch.Tensor, row_example: torch.Tensor, n: int, target: str, gold: Any
) -> torch.Tensor:
    """p per example slot from per-row continuation log-probabilities."""
    if target == "label":
        return logprobs[:, 0].exp()
    mean = mean_logprob(logprobs, valid)
    if target == "answer":
        return mean.exp()
    return grouped_softmax(mean, row_example, n)[gold.to(mean.device)]


def _probs(model: Any, batch: Any, target: str, gold: torch.Tensor | None) -> torch.Tensor:
    """p per example slot of ``batch`` (every row runs its whole prompt)."""
    logprobs = continuation_logprobs(model, batch)
    return _target_p(logprobs, batch.score_valid, batch.row_example, len(batch.examples), target, gold)


def _shared_probs(model: Any, rows: Sequence[Any], n: int, pad_id: int, target: str, gold: Any) -> torch.Tensor:
    """p per example slot of ``rows`` (example ids ``0..n-1``), each prompt run once."""
    out = shared_prefix_forward(model, rows, pad_id)
    return _target_p(out.logp, out.valid, out.slot, n, target, gold)


def _gold_rows(rows: Sequence[Sequence[Any]], examples: Sequence[Example], target: str) -> list[int]:
    if target != "choice":
        return [0] * len(rows)
    return [next(i for i, r in enumerate(rows[e]) if r.option == gold_option(examples[e])) for e in range(len(rows))]


class TargetRows:
    """Encoded rows of a fixed example subset, reused for every ablation."""

    def __init__(
        self, tokenizer: Any, examples: Sequence[Example], target: str = "choice", chat_template: bool = True
    ) -> None:
        self.examples = list(examples)
        self.target = target
        self.rows = target_rows(tokenizer, self.examples, target, chat_template)
        self.gold = _gold_rows(self.rows, self.examples, target)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def batch(self, idx: Sequence[int], replicas: int) -> Any:
        """Rows of examples ``idx`` repeated ``replicas`` times, padded into one batch."""
        per = [self.rows[i] for i in idx]
        return collate_rows(list(range(len(idx) * replicas)), per * replicas, self.pad_id, "right")

    def gold_rows(self, idx: Sequence[int], replicas: int) -> torch.Tensor | None:
        """Index of each example slot's gold row among the rows of :meth:`batch` (``choice`` only)."""
        if self.target != "choice":
            return None
        return gold_positions([self.rows[i] for i in idx] * replicas, [self.gold[i] for i in idx] * replicas)

    def replicated(self, idx: Sequence[int], replicas: int) -> list[Any]:
        """The rows of :meth:`batch` as a flat list, replica-major, example ids ``0..len(idx) * replicas - 1``:
        every replica's prompts stay distinct, so the shared-prefix pass never merges two replicas."""
        per = [self.rows[i] for i in idx]
        return [
            dataclasses.replace(row, example=r * len(idx) + j)
            for r in range(replicas)
            for j, ex_rows in enumerate(per)
            for row in ex_rows
        ]


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


def _mask_hooks(units: Sequence[Sequence[Any]], per_replica: Mapping[int, int], replicas: int) -> list[tuple[Any, Any]]:
    """One hook per module: in replica r, zero the channels of ``units[r]`` (a list of HookPlans), or set them
    to the plans' ``values`` where those are given (mean ablation).

    ``per_replica`` maps a pass's batch size to its sequences per replica (the shared-prefix path runs a
    prompt pass, one sequence per example, and a continuation pass, one per option row)."""
    per_module: dict[int, tuple[Any, list[tuple[int, torch.Tensor, torch.Tensor | None]]]] = {}
    for r, plans in enumerate(units):
        for p in plans:
            per_module.setdefault(id(p.module), (p.module, []))[1].append((r, p.channels, p.values))
    hooks = []
    for module, entries in per_module.values():

        def hook(_m, _inputs, output, entries=entries):
            out = output[0] if isinstance(output, tuple) else output
            mask = torch.ones(replicas, out.shape[-1], dtype=out.dtype, device=out.device)
            fill = None
            for r, ch, values in entries:
                mask[r, ch.to(out.device)] = 0
                if values is not None:
                    fill = torch.zeros_like(mask) if fill is None else fill
                    fill[r, ch.to(out.device)] = values.to(out.device, out.dtype)
            reps = per_replica[out.shape[0]]
            shape = (replicas * reps,) + (1,) * (out.dim() - 2) + (out.shape[-1],)
            new = out * mask.repeat_interleave(reps, 0).reshape(shape)
            if fill is not None:
                new = new + fill.repeat_interleave(reps, 0).reshape(shape)
            return (new, *output[1:]) if isinstance(output, tuple) else new

        hooks.append((module, hook))
    return hooks


def ablation_effects(
    model: Any,
    rows: TargetRows,
    units: Sequence[NeuronSet],
    max_rows: int = 256,
    site_map: Any = None,
    means: Mapping[str, torch.Tensor] | None = None,
    progress: Callable[[int], object] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean p drop when each unit (a NeuronSet: one neuron, or several zeroed together) is zeroed.

    Args:
        model: the model (eval mode).
        rows: the fixed example subset, encoded once.
        units: what to zero, one forward replica each.
        max_rows: the most sequences in one forward pass (bounds memory: logits are rows x vocab).
        means: ``{site: [layers, width]}`` channel means: each unit's channels are set to their mean
            instead of zero (mean ablation, what ``atp-mean`` estimates).
        progress: called with the number of (unit, example) pairs after each forward pass.

    Returns:
        ``(effects [units], base_p [examples])``: effect = mean over examples of (p - p with the unit zeroed).
    """
    adapter = get_adapter(model, site_map)
    plans = [plan(u, adapter, model, means) for u in units]
    n_ex = len(rows.examples)
    rows_per_ex = max(len(r) for r in rows.rows)
    ex_chunk = max(1, min(n_ex, max_rows // rows_per_ex))
    base = torch.zeros(n_ex, dtype=torch.float64)
    drops = torch.zeros(len(units), dtype=torch.float64)
    device = _device(model)
    shared = supports_shared_prefix(model)

    def probs(idx: list[int], chunk: Sequence[Sequence[Any]]) -> torch.Tensor:
        n = max(1, len(chunk))
        gold, per = rows.gold_rows(idx, n), sum(len(rows.rows[i]) for i in idx)
        hooks = _mask_hooks(chunk, {n * per: per, n * len(idx): len(idx)}, n) if chunk else []
        with forward_hooks(hooks):
            if shared:  # the padded batch is only built where every row runs its whole prompt
                p = _shared_probs(model, rows.replicated(idx, n), n * len(idx), rows.pad_id, rows.target, gold)
            else:
                p = _probs(model, rows.batch(idx, n).to(device), rows.target, gold)
        return p.double().cpu().reshape(n, len(idx))

    with torch.no_grad():
        for start in range(0, n_ex, ex_chunk):
            idx = list(range(start, min(n_ex, start + ex_chunk)))
            base[idx] = probs(idx, [])[0]
            n_rows = sum(len(rows.rows[i]) for i in idx)
            replicas = max(1, max_rows // max(n_rows, 1))
            for u0 in range(0, len(units), replicas):
                chunk = plans[u0 : u0 + replicas]
                drops[u0 : u0 + len(chunk)] += (base[idx][None, :] - probs(idx, chunk)).sum(1)
                if progress is not None:
                    progress(len(chunk) * len(idx))
    return drops / max(n_ex, 1), base


def single_neurons(ns: NeuronSet) -> list[NeuronSet]:
    """Each neuron of ``ns`` as a one-neuron set (same model shape), in the set's order."""
    out = []
    for i in range(len(ns)):
        sel = torch.tensor([i])
        out.append(
            NeuronSet(
                ns.site_names,
                ns.site_ids[sel],
                ns.layers[sel],
                ns.indices[sel],
                ns.scores[sel],
                kind=f"{ns.kind}[{i}]",
                num_layers=ns.num_layers,
                widths=ns.widths,
                model=ns.model,
            )
        )
    return out
