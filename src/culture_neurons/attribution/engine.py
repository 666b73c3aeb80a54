"""The scoring engine: the paper's gradient × activation neuron score, accumulated per group.

For one example with target probability p (softmax probability of the gold token after the
prompt) and a site output a (positions × channels) with gradient g = ∂p/∂a, the score of a channel
is ``p · max over real positions of (a ⊙ g)``; control examples clamp it at 0. That is the default
method, ``gxa``; ``ScoringOptions.method`` picks another way of computing the per-position
attribution (``atp-mean``, ``ig``, ``ig-joint``: :mod:`.methods`, docs/methods.md), reduced the same way.

How it stays fast (see docs/design.md and docs/performance.md):
- parameters are frozen and only activation gradients are computed (no weight gradients), and
  ``torch.autograd.grad`` is asked for the first hooked layer's outputs only, so nothing below them
  runs backward;
- logits are computed at the scored position only (``logits_to_keep``);
- a ⊙ g, masking and the position reduction happen inside a tensor hook on each site's output
  (one fused ``addcmul`` with a 0/-inf padding bias, then ``amax``), and the result goes straight
  into float32 ``[groups, channels]`` accumulators; no [batch, tokens, channels] tensor outlives its hook;
- the ``choice`` target runs each prompt once, packed with its options in one sequence (or its options
  from the prompt's KV cache);
- examples are length-bucketed; there is no Python loop over neurons, and none over examples in
  the hot path beyond one small add per example and site.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from .. import signals
from ..data.example import Example, group_names
from ..distributed import all_reduce_sum, shard, world
from ..errors import ScoringError
from ..likelihood import (
    Row,
    RowBatch,
    collate_rows,
    continuation_logprobs,
    gold_option,
    gold_positions,
    grouped_softmax,
    length_batches,
    mean_logprob,
    packed_forward,
    packs,
    shared_prefix_forward,
    supports_shared_prefix,
)
from ..models.adapters import ModelAdapter, get_adapter
from ..models.loading import model_identity
from ..version import __version__
from .batching import target_rows
from .checkpoint import ScoringCheckpoint, after_batch
from .methods import describe, get_method
from .methods.means import checked_means, prompt_means
from .options import ScoringOptions
from .reduction import BatchState, ReduceOptions, ScoringCall
from .scoretable import ScoreTable, hash_ids

log = logging.getLogger(__name__)


def _module_device(module: torch.nn.Module) -> torch.device:
    """Where a module computes: its parameters' device, or the CPU for offloaded (meta) weights."""
    for tensor in module.parameters():
        if tensor.device.type != "meta":
            return tensor.device
    return torch.device("cpu")


class ScoringEngine:
    """Scores examples against one model; reusable across calls with the same options.

    ``share_prompt`` (default: when the model takes a reorderable KV cache) runs the ``choice``
    target's prompt once per example: packed into one sequence with its options where the attention
    takes a custom mask (:func:`~culture_neurons.likelihood.packs`), else with the options run from
    its KV cache (``"cache"`` forces that path). ``False`` recomputes the prompt in every option row
    (the slower, original path, kept as the reference and for other models).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        options: ScoringOptions | None = None,
        adapter: ModelAdapter | None = None,
        share_prompt: bool | str | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.options = options or ScoringOptions()
        self.options.validate()
        self.adapter = adapter or get_adapter(model)
        self.site_order = list(self.options.sites or self.adapter.site_names)
        self.points = self.adapter.hook_points(self.site_order)
        if share_prompt not in (None, True, False, "cache"):
            raise ScoringError(f"share_prompt must be None, True, False or 'cache', got {share_prompt!r}")
        self.share_prompt = supports_shared_prefix(model) if share_prompt is None else share_prompt
        if self.options.recompute and share_prompt == "cache":
            raise ScoringError("recompute cannot run the choice options from a KV cache (the cache would fill twice)")

    def forward(
        self,
        call: Any,
        rows: Sequence[list[Row]] | Mapping[int, list[Row]],
        idx: list[int],
        gold: Sequence[int] | Mapping[int, int] | None,
        groups: list[int],
    ) -> torch.Tensor:
        """Run one batch forward (``rows[i]`` of each ``i`` in ``idx``); set ``call.batch`` to its
        :class:`BatchState` before the forward (the hooks read it) and return p per example."""
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        target = self.options.target
        batch_rows = [rows[i] for i in idx]
        shared = target == "choice" and self.share_prompt
        gold_rows = None
        if target == "choice":  # position of each example's gold row within the batch's rows
            gold_rows = gold_positions(batch_rows, [gold[i] for i in idx])
        flat = [r for rs in batch_rows for r in rs]
        if shared and self.share_prompt != "cache" and packs(self.model, flat):
            # one packed sequence per example: the prompt's gradient already sums over the options and
            # each option's own tokens are its own positions, so it reduces like one row per example
            call.batch = state = BatchState("rows", groups)  # set before the forward: its hooks read it
            packed = packed_forward(self.model, flat, pad_id)
            state.set(mask=packed.real, last=torch.full((len(idx),), packed.last_prompt))
            return self._p(packed.logp, packed.valid, packed.slot, gold_rows, len(idx))
        if shared and not self.options.recompute:
            call.batch = state = BatchState("shared", groups)
            out = shared_prefix_forward(self.model, flat, pad_id)
            row_example = torch.tensor([slot for slot, rs in enumerate(batch_rows) for _ in rs])
            if not torch.equal(out.slot, row_example):
                raise ScoringError(f"the option rows of examples {idx} do not share their prompt tokens")
            state.set(
                mask=out.prompt_mask,
                row_example=row_example,
                last=torch.full((len(idx),), out.prompt_mask.shape[1] - 1),
            )
            if out.cont_mask is not None:
                state.set(cont=out.cont_mask)
            return self._p(out.logp, out.valid, row_example, gold_rows, len(idx))
        call.batch = state = BatchState("stacked" if target == "choice" else "rows", groups)
        padding = "right" if target == "choice" else self.options.padding_side
        batch = collate_rows(idx, batch_rows, pad_id, padding).to(_module_device(self.model.get_input_embeddings()))
        per_example = torch.bincount(batch.row_example.cpu(), minlength=len(idx))
        first_rows = per_example.cumsum(0) - per_example  # an example's rows are contiguous
        state.set(
            mask=batch.attention_mask,
            row_example=batch.row_example,
            example_prompt=batch.prompt_mask[first_rows],
            own=batch.attention_mask & ~batch.prompt_mask,
            last=(batch.last_prompt if target == "choice" else batch.last)[first_rows],
        )
        return self._target_prob(batch, gold_rows)

    def _target_prob(self, batch: RowBatch, gold: torch.Tensor | None) -> torch.Tensor:
        """p per example of a padded batch (every row recomputes its prompt)."""
        return self._p(
            continuation_logprobs(self.model, batch), batch.score_valid, batch.row_example, gold, len(batch.examples)
        )

    def _p(
        self, logprobs: torch.Tensor, valid: torch.Tensor, row_example: torch.Tensor, gold: torch.Tensor | None, n: int
    ) -> torch.Tensor:
        """The target probability from the rows' ``[rows, K]`` log-probabilities."""
        if self.options.target == "label":
            return logprobs[:, 0].exp()
        mean = mean_logprob(logprobs, valid)
        if self.options.target == "answer":
            return mean.exp()
        probs = grouped_softmax(mean, row_example.to(mean.device), n)
        return probs[gold.to(probs.device)]

    def _plan(
        self, examples: Sequence[Example], groups: Sequence[str] | None
    ) -> tuple[list[str], list[list[Row]], list[int] | None, list[list[int]]]:
        """Groups, rows, gold option rows (``choice``) and this rank's length-sorted batches."""
        if not examples:
            raise ScoringError("no examples to score")
        groups = list(groups) if groups is not None else group_names(examples)
        missing = sorted({ex.group for ex in examples} - set(groups))
        if missing:
            raise ScoringError(f"example group(s) {missing} not in the table's groups {groups}")
        rows = target_rows(self.tokenizer, examples, self.options.target, self.options.chat_template)
        gold = None
        if self.options.target == "choice":
            gold = [
                next(i for i, r in enumerate(rows[e]) if r.option == gold_option(examples[e]))
                for e in range(len(examples))
            ]
        rank, world_size = world()
        mine = shard(range(len(examples)), rank, world_size)
        batches = [[mine[i] for i in b] for b in length_batches([rows[i] for i in mine], self.options.batch_size)]
        return groups, rows, gold, batches

    def _means(
        self, method: Any, rows: list[list[Row]], means: Mapping[str, torch.Tensor] | None
    ) -> tuple[dict[str, torch.Tensor] | None, bool]:
        """The means a mean baseline needs (checked when given, else computed on the examples) and whether given."""
        if not method.needs_means(self.options):
            return None, False
        if means is not None:
            return checked_means(means, self.adapter, self.site_order), True
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        return prompt_means(self.model, self.adapter, self.site_order, rows, pad_id, self.options.batch_size), False

    def _checkpoint(
        self, checkpoint: str | os.PathLike | None, ids: list[str], groups: list[str], method: dict[str, Any]
    ) -> ScoringCheckpoint | None:
        if checkpoint is None:
            return None
        rank, world_size = world()
        path = Path(f"{checkpoint}.rank{rank}") if world_size > 1 else Path(checkpoint)
        fingerprint = {
            "model": model_identity(self.model),
            "options": self.options.identity(),
            "ids": hash_ids(ids),
            "groups": groups,
            "sites": self.site_order,
            "rank": rank,
            "world": world_size,
            "version": __version__,
        }
        if self.options.method != "gxa":  # gxa's fingerprint is as before methods existed, so its checkpoints resume
            fingerprint["method"] = method
        return ScoringCheckpoint(path, fingerprint)

    def score(
        self,
        examples: Sequence[Example],
        groups: Sequence[str] | None = None,
        progress: bool = True,
        dataset: str | None = None,
        split: str | None = None,
        checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int = 20,
        means: Mapping[str, torch.Tensor] | None = None,
    ) -> ScoreTable:
        """Score ``examples`` and return their ScoreTable (groups default to those of the examples).

        Under ``torch.distributed`` each rank scores a round-robin shard of the examples and the sums
        are all-reduced, so every rank returns the whole table. With ``checkpoint``, the sums are saved
        every ``checkpoint_every`` batches (per rank: ``.rank<r>`` is appended under several ranks),
        and a rerun resumes from there with a bit-identical result; the file is removed at the end.
        A method with a mean baseline uses ``means`` (``{site: [layers, width]}``) when given, else
        each channel's mean over the examples' prompts (docs/methods.md).
        """
        from ..progress import progress as tqdm

        groups, rows, gold, batches = self._plan(examples, groups)
        gidx = {g: i for i, g in enumerate(groups)}
        example_groups = [gidx[ex.group] for ex in examples]
        o = self.options
        method = get_method(o.method)
        means, given = self._means(method, rows, means)
        reduce = ReduceOptions(o.aggregation, o.control, o.reference_compat, o.recompute)
        call = ScoringCall(reduce, self.points, self.site_order, len(groups))
        run = method.start(self, call, means)
        described = describe(o, means, given)
        counts = torch.zeros(len(groups), dtype=torch.int64)
        prob_sums = torch.zeros(len(groups), dtype=torch.float64)
        ids = [ex.id for ex in examples]
        saver = self._checkpoint(checkpoint, ids, groups, described)
        done = _resume(saver, call, counts, prob_sums, len(batches))
        bar = tqdm(
            total=sum(map(len, batches)),
            unit="ex",
            desc=f"scoring ({self.options.target})",
            disable=not progress or world()[0] != 0,
            leave=False,
        )
        bar.update(sum(len(b) for b in batches[:done]))
        try:
            with run.armed(), torch.enable_grad(), signals.deferred():
                for number, idx in enumerate(batches[done:], start=done + 1):
                    g = [example_groups[i] for i in idx]
                    p = run.batch(rows, idx, gold, g, [examples[i].id for i in idx])
                    counts.index_add_(0, torch.tensor(g), torch.ones(len(g), dtype=torch.int64))
                    prob_sums.index_add_(0, torch.tensor(g), p.double().cpu())
                    bar.update(len(idx))
                    after_batch(
                        saver, number, len(batches), checkpoint_every, lambda: (call.accs.raw(), counts, prob_sums)
                    )
        finally:
            call.batch = None
            bar.close()
        all_reduce_sum([*call.accs.tensors(), counts, prob_sums])
        meta = {**self._table_meta(examples, ids, dataset, split), "method": described}
        table = ScoreTable(call.accs.stacked(), counts, prob_sums, groups, meta)
        if saver is not None:
            saver.remove()
        return table

    def _table_meta(
        self, examples: Sequence[Example], ids: list[str], dataset: str | None, split: str | None
    ) -> dict[str, Any]:
        """The ScoreTable's provenance: model, data (names default to the examples'), ids and options."""
        return {
            "model": {**model_identity(self.model), "family": self.adapter.family},
            "dataset": dataset or _common(ex.dataset for ex in examples),
            "split": split or _common(ex.split for ex in examples),
            "example_ids": ids,
            "example_ids_sha256": hash_ids(ids),
            "options": {
                **self.options.recorded(),
                "dtype": str(next(self.model.parameters()).dtype).removeprefix("torch."),
            },
            "package_version": __version__,
        }


def _resume(saver: Any, call: ScoringCall, counts: torch.Tensor, prob_sums: torch.Tensor, n_batches: int) -> int:
    """Restore the sums saved by an interrupted run into ``call``/``counts``/``prob_sums``; batches already done."""
    if saver is None or (state := saver.load()) is None:
        return 0
    done, raw, saved_counts, saved_probs = state
    call.accs.restore(raw)
    counts.copy_(saved_counts)
    prob_sums.copy_(saved_probs)
    log.info("resuming from %s: %d of %d batches already scored", saver.path, done, n_batches)
    return done


def _common(values) -> str | None:
    distinct = sorted({v for v in values if v})
    return "+".join(distinct) if distinct else None


def score_examples(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    options: ScoringOptions | None = None,
    *,
    adapter: ModelAdapter | None = None,
    site_map: str | None = None,
    groups: Sequence[str] | None = None,
    progress: bool = True,
    dataset: str | None = None,
    split: str | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 20,
    means: Mapping[str, torch.Tensor] | None = None,
    **overrides: Any,
) -> ScoreTable:
    """Score examples (the paper's attribution unless ``method`` says otherwise) and return a :class:`ScoreTable`.

    ``overrides`` are :class:`ScoringOptions` fields, e.g. ``score_examples(m, t, exs, control=True)`` or
    ``method="ig"``. ``means`` (``{site: [layers, width]}``, e.g. ``intervention.channel_means`` of a
    reference set) is the baseline of ``atp-mean`` and of ``ig`` with ``ig_baseline="mean"``; without it
    the means are computed on ``examples``.
    """
    options = replace(options or ScoringOptions(), **overrides)
    if adapter is None:
        adapter = get_adapter(model, site_map)
    return ScoringEngine(model, tokenizer, options, adapter).score(
        examples, groups, progress, dataset, split, checkpoint, checkpoint_every, means
    )
