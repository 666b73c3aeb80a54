"""The scoring engine: the paper's gradient × activation neuron score, accumulated per group.

For one example with target probability p (softmax probability of the gold token after the
prompt) and a site output a (positions × channels) with gradient g = ∂p/∂a, the score of a channel
is ``p · max over real positions of (a ⊙ g)``; control examples clamp it at 0.

How it stays fast (see docs/design.md):
- parameters are frozen and only activation gradients are computed (no weight gradients);
- logits are computed at the scored position only (``logits_to_keep``);
- a ⊙ g, masking and the position reduction happen inside a tensor hook on each site's output,
  and the result goes straight into float32 ``[groups, channels]`` accumulators with ``index_add_``;
- examples are length-bucketed; there is no Python loop over neurons, and none over examples in
  the hot path.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..data.example import Example, group_names
from ..distributed import all_reduce_sum, shard, world
from ..errors import ScoringError
from ..models.adapters import HookPoint, ModelAdapter, get_adapter
from ..models.hooks import forward_hooks, frozen_for_attribution
from ..models.loading import model_identity
from ..likelihood import RowBatch, collate_rows, continuation_logprobs, gold_option, grouped_softmax, mean_logprob
from .batching import length_batches, target_rows
from .checkpoint import ScoringCheckpoint
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
    """

    target: str = "label"
    aggregation: str = "max"
    control: bool = False
    reference_compat: bool = False
    batch_size: int = 8
    padding_side: str = "left"
    chat_template: bool = True
    sites: tuple[str, ...] | None = None

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


class _Accumulators:
    """Float32 ``[groups, channels]`` sums per site and layer.

    Each is created on the device where its site's activations first arrive, so models split over
    several devices (``device_map``), offloaded layers included, keep their sums beside the layer.
    """

    def __init__(self, points: Sequence[HookPoint], site_order: Sequence[str], num_groups: int) -> None:
        self.num_groups = num_groups
        self.widths = {site.name: site.width for point in points for site in point.sites}
        layers = {site.name: site.num_layers for point in points for site in point.sites}
        self.sums: dict[str, list[torch.Tensor | None]] = {name: [None] * layers[name] for name in site_order}
        self._restored: dict[str, torch.Tensor] | None = None

    def get(self, site: str, layer: int, device: torch.device) -> torch.Tensor:
        t = self.sums[site][layer]
        if t is None:
            if self._restored is not None:
                t = self._restored[site][layer].to(device, copy=True)
            else:
                t = torch.zeros(self.num_groups, self.widths[site], dtype=torch.float32, device=device)
            self.sums[site][layer] = t
        return t

    def tensors(self) -> list[torch.Tensor]:
        """Every accumulator, in a fixed order (the same on every rank, for all-reduce)."""
        return [
            self.get(name, layer, torch.device("cpu")) if t is None else t
            for name, ts in self.sums.items()
            for layer, t in enumerate(ts)
        ]

    def raw(self) -> dict[str, torch.Tensor]:
        """``{site: [layers, groups, channels]}`` on the CPU, the internal layout (for checkpoints)."""
        self.tensors()
        return {name: torch.stack([t.cpu() for t in layers]) for name, layers in self.sums.items()}

    def stacked(self) -> dict[str, torch.Tensor]:
        """``{site: [layers, channels, groups]}`` on the CPU."""
        return {name: t.permute(0, 2, 1).contiguous() for name, t in self.raw().items()}

    def restore(self, raw: dict[str, torch.Tensor]) -> None:
        for name, layers in self.sums.items():
            if name not in raw or tuple(raw[name].shape) != (len(layers), self.num_groups, self.widths[name]):
                raise ScoringError(f"checkpoint does not match this model's site {name}")
        self._restored = raw
        self.sums = {name: [None] * len(layers) for name, layers in self.sums.items()}


def _module_device(module: torch.nn.Module) -> torch.device:
    """Where a module computes: its parameters' device, or the CPU for offloaded (meta) weights."""
    for tensor in module.parameters():
        if tensor.device.type != "meta":
            return tensor.device
    return torch.device("cpu")


class _BatchState:
    """What the tensor hooks of one batch need (moved to each device once and cached).

    Rows are sequences; examples are what scores count for. For ``label`` and ``answer`` each
    example has one row. For ``choice`` each option is a row, the rows of one example share their
    prompt positions (right padding puts them in the same columns), and the gradient there is the
    sum over the rows.
    """

    def __init__(self, batch: RowBatch, p: torch.Tensor, groups: torch.Tensor, shared_prompt: bool) -> None:
        self.num_examples = len(batch.examples)
        self.shared_prompt = shared_prompt
        per_example = torch.bincount(batch.row_example.cpu(), minlength=self.num_examples)
        first_rows = per_example.cumsum(0) - per_example  # an example's rows are contiguous
        self._src = {
            "mask": batch.attention_mask,
            "own": batch.attention_mask & ~batch.prompt_mask if shared_prompt else batch.attention_mask,
            "row_example": batch.row_example,
            "example_prompt": batch.prompt_mask[first_rows],
            "last": (batch.last_prompt if shared_prompt else batch.last)[first_rows],
            "p": p.detach().float(),
            "groups": groups,
        }
        self._cache: dict[tuple[str, torch.device], torch.Tensor] = {}
        self.nonfinite: list[torch.Tensor] = []

    def get(self, name: str, device: torch.device) -> torch.Tensor:
        key = (name, device)
        if key not in self._cache:
            self._cache[key] = self._src[name].to(device)
        return self._cache[key]


class ScoringEngine:
    """Scores examples against one model; reusable across calls with the same options."""

    def __init__(
        self, model: Any, tokenizer: Any, options: ScoringOptions | None = None, adapter: ModelAdapter | None = None
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.options = options or ScoringOptions()
        self.options.validate()
        self.adapter = adapter or get_adapter(model)
        self.site_order = list(self.options.sites or self.adapter.site_names)
        self.points = self.adapter.hook_points(self.site_order)
        self._state: _BatchState | None = None
        self._accs: _Accumulators | None = None

    # -- hooks ------------------------------------------------------------------------------

    def _forward_hook(self, point: HookPoint):
        def hook(_module, _inputs, output):
            out = output[0] if isinstance(output, tuple) else output
            if not out.requires_grad:
                raise ScoringError(
                    f"{point.path}: output does not require grad; is the module detached from the input?"
                )
            activation = out.detach()
            out.register_hook(lambda grad: self._reduce(point, activation, grad))

        return hook

    def _reduce(self, point: HookPoint, activation: torch.Tensor, grad: torch.Tensor) -> None:
        state, opts = self._state, self.options
        device = activation.device
        prod = activation.float() * grad.float()  # [rows, T, F]
        reduced = self._reduce_positions(prod, state, device)  # [examples, F]
        reduced = reduced * state.get("p", device)[:, None]
        if opts.control:
            reduced = reduced.clamp_(min=0.0)
        state.nonfinite.append((~torch.isfinite(reduced)).any())
        groups = state.get("groups", device)
        for site in point.sites:
            self._accs.get(site.name, point.layer, device).index_add_(0, groups, site.take(reduced))

    def _reduce_positions(self, prod: torch.Tensor, state: _BatchState, device: torch.device) -> torch.Tensor:
        """Reduce a ⊙ g over each example's real positions (max, sum or last) to ``[examples, F]``."""
        agg = self.options.aggregation
        n = state.num_examples
        if state.shared_prompt:
            # Prompt positions: one activation, gradient summed over the option rows.
            rows = state.get("row_example", device)
            prompt = state.get("example_prompt", device)
            shared = prod.new_zeros((n, *prod.shape[1:])).index_add_(0, rows, prod)
            own = state.get("own", device)
            if agg == "last":
                return shared[torch.arange(n, device=device), state.get("last", device)]
            if agg == "sum":
                return shared.masked_fill_(~prompt[..., None], 0.0).sum(1) + prod.new_zeros(
                    n, prod.shape[2]
                ).index_add_(0, rows, prod.masked_fill(~own[..., None], 0.0).sum(1))
            best = shared.masked_fill_(~prompt[..., None], float("-inf")).amax(1)
            per_row = prod.masked_fill_(~own[..., None], float("-inf")).amax(1)
            return best.scatter_reduce_(0, rows[:, None].expand_as(per_row), per_row, reduce="amax")
        mask = state.get("mask", device)
        if agg == "max":
            fill = 0.0 if self.options.reference_compat else float("-inf")
            return prod.masked_fill_(~mask[..., None], fill).amax(dim=1)
        if agg == "sum":
            return prod.masked_fill_(~mask[..., None], 0.0).sum(dim=1)
        return prod[torch.arange(prod.shape[0], device=device), state.get("last", device)]

    # -- main loop --------------------------------------------------------------------------

    def _target_prob(self, batch: RowBatch, gold: torch.Tensor) -> torch.Tensor:
        """p per example in the batch, differentiable with respect to every site."""
        logprobs = continuation_logprobs(self.model, batch)  # [rows, K]
        target = self.options.target
        if target == "label":
            return logprobs[:, 0].exp()
        mean = mean_logprob(logprobs, batch.score_valid)
        if target == "answer":
            return mean.exp()
        probs = grouped_softmax(mean, batch.row_example, len(batch.examples))
        return probs[gold.to(probs.device)]

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
        from tqdm.auto import tqdm

        if not examples:
            raise ScoringError("no examples to score")
        groups = list(groups) if groups is not None else group_names(examples)
        gidx = {g: i for i, g in enumerate(groups)}
        missing = sorted({ex.group for ex in examples} - gidx.keys())
        if missing:
            raise ScoringError(f"example group(s) {missing} not in the table's groups {groups}")
        rows = target_rows(self.tokenizer, examples, self.options.target, self.options.chat_template)
        choice = self.options.target == "choice"
        gold_rows = (
            [
                next(i for i, r in enumerate(rows[e]) if r.option == gold_option(examples[e]))
                for e in range(len(examples))
            ]
            if choice
            else None
        )
        example_groups = torch.tensor([gidx[ex.group] for ex in examples])
        rank, world_size = world()
        mine = shard(range(len(examples)), rank, world_size)
        batches = [[mine[i] for i in b] for b in length_batches([rows[i] for i in mine], self.options.batch_size)]
        self._accs = _Accumulators(self.points, self.site_order, len(groups))
        counts = torch.zeros(len(groups), dtype=torch.int64)
        prob_sums = torch.zeros(len(groups), dtype=torch.float64)
        ids = [ex.id for ex in examples]
        saver = None
        done = 0
        if checkpoint is not None:
            path = Path(f"{checkpoint}.rank{rank}") if world_size > 1 else Path(checkpoint)
            fingerprint = {
                "model": model_identity(self.model),
                "options": asdict(self.options),
                "ids": hash_ids(ids),
                "groups": groups,
                "sites": self.site_order,
                "rank": rank,
                "world": world_size,
                "version": __version__,
            }
            saver = ScoringCheckpoint(path, fingerprint)
            if (state := saver.load()) is not None:
                done, raw, saved_counts, saved_probs = state
                self._accs.restore(raw)
                counts.copy_(saved_counts)
                prob_sums.copy_(saved_probs)
                log.info("resuming from %s: %d of %d batches already scored", path, done, len(batches))
        input_device = _module_device(self.model.get_input_embeddings())
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        padding = "right" if choice else self.options.padding_side
        hooks = [(point.module, self._forward_hook(point)) for point in self.points]
        bar = tqdm(
            total=len(mine),
            unit="ex",
            desc=f"scoring ({self.options.target})",
            disable=not progress or rank != 0,
            leave=False,
        )
        bar.update(sum(len(b) for b in batches[:done]))
        try:
            with frozen_for_attribution(self.model), forward_hooks(hooks), torch.enable_grad():
                for number, idx in enumerate(batches[done:], start=done + 1):
                    batch = collate_rows(idx, [rows[i] for i in idx], pad_id, padding).to(input_device)
                    gold = None
                    if choice:  # position of each example's gold row within the batch's rows
                        offsets = torch.tensor([0] + [len(rows[i]) for i in idx]).cumsum(0)[:-1]
                        gold = offsets + torch.tensor([gold_rows[i] for i in idx])
                    g = example_groups[idx]
                    p = self._target_prob(batch, gold)
                    batch_ids = [examples[i].id for i in idx]
                    if not torch.isfinite(p).all():
                        raise ScoringError(f"target probability is NaN or inf in the batch with examples {batch_ids}")
                    self._state = _BatchState(batch, p, g, shared_prompt=choice)
                    p.sum().backward()
                    if torch.stack([t.to(p.device) for t in self._state.nonfinite]).any():
                        raise ScoringError(
                            f"NaN or inf in neuron scores in the batch with examples {batch_ids}; nothing was written"
                        )
                    counts.index_add_(0, g, torch.ones_like(g))
                    prob_sums.index_add_(0, g, p.detach().double().cpu())
                    bar.update(len(idx))
                    if saver is not None and number % checkpoint_every == 0 and number < len(batches):
                        saver.save(number, self._accs.raw(), counts, prob_sums)
        finally:
            self._state = None
            bar.close()
        all_reduce_sum([*self._accs.tensors(), counts, prob_sums])
        meta = {
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
        table = ScoreTable(self._accs.stacked(), counts, prob_sums, groups, meta)
        self._accs = None
        if saver is not None:
            saver.remove()
        return table


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
