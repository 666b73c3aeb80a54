"""The scoring engine: the paper's gradient × activation neuron score, accumulated per group.

For one example with target probability p (softmax probability of the gold token after the
prompt) and a site output a (positions × channels) with gradient g = ∂p/∂a, the score of a channel
is ``p · max over real positions of (a ⊙ g)``; control examples clamp it at 0.

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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from .. import __version__, signals
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
from ..models.hooks import forward_hooks, frozen_for_attribution, recomputed_layers
from ..models.loading import model_identity
from .batching import target_rows
from .checkpoint import ScoringCheckpoint, after_batch
from .reduction import BatchState, ReduceOptions, ScoringCall
from .scoretable import ScoreTable, hash_ids

log = logging.getLogger(__name__)

AGGREGATIONS = ("max", "sum", "last")
TARGETS = ("label", "answer", "choice")


@dataclass(frozen=True)
class ScoringOptions:
    """Options of one scoring run; defaults follow the paper.

    Attributes:
        target: what p is. ``label`` (the paper's): probability of the gold label's first token.
            ``answer``: exp(mean log-probability of the gold answer's tokens), teacher-forced.
            ``choice``: probability of the gold option under a softmax over the options'
            length-normalised log-likelihoods (the example needs ``options``).
        aggregation: reduction over positions: ``max`` (paper), ``sum`` or ``last``.
        control: clamp example scores at 0 (for the control set).
        reference_compat: fill padding with 0 instead of -inf before the max, reproducing the
            reference implementation's numbers (its padded rows can never score below 0).
        batch_size: examples per forward/backward pass.
        padding_side: ``left`` (default) or ``right``; the default mode gives the same result either way.
            ``choice`` always pads on the right, so an example's option rows share prompt positions.
        chat_template: wrap prompts in the tokenizer's chat template when it has one.
        sites: restrict scoring to these sites (default: every site of the adapter).
        recompute: trade time for memory: each decoder layer keeps only its input during the forward
            pass and runs again when the backward pass reaches it (activation checkpointing), so one
            layer's activations are alive at a time instead of the whole model's. The scores are the
            same; on the issue's CPU benchmark it took 1.4-1.5x the time for 0.2x the peak memory
            (docs/performance.md). ``choice`` then packs its options or recomputes the prompt per option.
    """

    target: str = "label"
    aggregation: str = "max"
    control: bool = False
    reference_compat: bool = False
    batch_size: int = 8
    padding_side: str = "left"
    chat_template: bool = True
    sites: tuple[str, ...] | None = None
    recompute: bool = False

    def identity(self) -> dict[str, Any]:
        """The fields that decide the scores: all but ``recompute``, which changes only time and memory
        (so a checkpoint or a finished pipeline step stays valid when it is switched)."""
        fields = asdict(self)
        del fields["recompute"]
        return fields

    def validate(self) -> None:
        if self.target not in TARGETS:
            raise ScoringError(f"unknown target {self.target!r}; choose one of {', '.join(TARGETS)}")
        if self.aggregation not in AGGREGATIONS:
            raise ScoringError(f"unknown aggregation {self.aggregation!r}; choose one of {', '.join(AGGREGATIONS)}")
        if self.batch_size < 1:
            raise ScoringError(f"batch size must be at least 1, got {self.batch_size}")
        if self.padding_side not in ("left", "right"):
            raise ScoringError(f"padding side must be 'left' or 'right', got {self.padding_side!r}")
        if self.reference_compat and self.target != "label":
            raise ScoringError(
                "reference_compat reproduces the reference code's label target only; use it with target='label'"
            )


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

    def _forward(
        self, call: ScoringCall, rows: list[list[Row]], idx: list[int], gold: list[int] | None, groups: list[int]
    ) -> torch.Tensor:
        """Run one batch forward with the hooks armed; return p per example (differentiable w.r.t. every site)."""
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

    def _checkpoint(
        self, checkpoint: str | os.PathLike | None, ids: list[str], groups: list[str]
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
    ) -> ScoreTable:
        """Score ``examples`` and return their ScoreTable (groups default to those of the examples).

        Under ``torch.distributed`` each rank scores a round-robin shard of the examples and the sums
        are all-reduced, so every rank returns the whole table. With ``checkpoint``, the sums are saved
        every ``checkpoint_every`` batches (per rank: ``.rank<r>`` is appended under several ranks),
        and a rerun resumes from there with a bit-identical result; the file is removed at the end.
        """
        from ..progress import progress as tqdm

        groups, rows, gold, batches = self._plan(examples, groups)
        gidx = {g: i for i, g in enumerate(groups)}
        example_groups = [gidx[ex.group] for ex in examples]
        o = self.options
        reduce = ReduceOptions(o.aggregation, o.control, o.reference_compat, o.recompute)
        call = ScoringCall(reduce, self.points, self.site_order, len(groups))
        layers = self.model.get_submodule(self.adapter.layers_path) if o.recompute else ()
        counts = torch.zeros(len(groups), dtype=torch.int64)
        prob_sums = torch.zeros(len(groups), dtype=torch.float64)
        ids = [ex.id for ex in examples]
        saver = self._checkpoint(checkpoint, ids, groups)
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
            with (
                frozen_for_attribution(self.model),
                forward_hooks(call.hooks()),
                recomputed_layers(layers, call.set_recomputing),
                torch.enable_grad(),
                signals.deferred(),
            ):
                for number, idx in enumerate(batches[done:], start=done + 1):
                    g = [example_groups[i] for i in idx]
                    p = self._forward(call, rows, idx, gold, g)
                    batch_ids = [examples[i].id for i in idx]
                    if not torch.isfinite(p).all():
                        raise ScoringError(f"target probability is NaN or inf in the batch with examples {batch_ids}")
                    call.backward(p, batch_ids)
                    call.batch = None  # drop the batch's activations before the next forward
                    counts.index_add_(0, torch.tensor(g), torch.ones(len(g), dtype=torch.int64))
                    prob_sums.index_add_(0, torch.tensor(g), p.detach().double().cpu())
                    bar.update(len(idx))
                    after_batch(
                        saver, number, len(batches), checkpoint_every, lambda: (call.accs.raw(), counts, prob_sums)
                    )
        finally:
            call.batch = None
            bar.close()
        all_reduce_sum([*call.accs.tensors(), counts, prob_sums])
        meta = self._table_meta(examples, ids, dataset, split)
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
                **asdict(self.options),
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
    **overrides: Any,
) -> ScoreTable:
    """Score examples with the paper's attribution and return a :class:`ScoreTable`.

    ``overrides`` are :class:`ScoringOptions` fields, e.g. ``score_examples(m, t, exs, control=True)``.
    """
    options = replace(options or ScoringOptions(), **overrides)
    if adapter is None:
        adapter = get_adapter(model, site_map)
    return ScoringEngine(model, tokenizer, options, adapter).score(
        examples, groups, progress, dataset, split, checkpoint, checkpoint_every
    )
