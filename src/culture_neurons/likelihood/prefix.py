"""Shared-prefix forward passes: row log-probabilities with each distinct prompt run once.

The prompts run once with a KV cache, the cache is repeated for each row and only the continuation
tokens run again; differentiable through the cache (the ``choice`` target) or gradient-free
(the ``loglik`` scorer).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .rows import Row
from .tags import batch_examples


def _cache_argument(model: Any) -> str | None:
    """The name under which ``model.forward`` takes a KV cache (transformers 5 renamed it), or None."""
    params = inspect.signature(model.forward).parameters
    return next((name for name in ("cache", "past_key_values") if name in params), None)


@dataclass
class SharedPrefix:
    """The rows of :func:`shared_prefix_forward`.

    Each distinct prompt ran once, then the continuations from its cache.
    """

    logp: torch.Tensor  # [R, K] log-probabilities on the model's device (differentiable under grad), 0 where not valid
    valid: torch.Tensor  # [R, K] bool (CPU)
    slot: torch.Tensor  # [R] the prompt row of each row
    prompt_mask: torch.Tensor  # [P, Tp] bool: real prompt positions of the prompt pass (left padded)
    cont_mask: (
        torch.Tensor | None
    )  # [R, K - 1] bool: each row's own input tokens in the continuation pass (None: it did not run)


def shared_prefix_forward(model: Any, rows: Sequence[Row], pad_id: int) -> SharedPrefix:
    """Like :func:`continuation_logprobs` on ``rows``, but each distinct prompt runs once.

    An example's options share its prompt: the prompts run once (left-padded) with a KV cache, the
    cache is repeated for each row, and only the continuation tokens run again (a second forward pass,
    skipped when every continuation is one token). Under ``torch.enable_grad`` the gradient flows back
    through the repeated cache, so a prompt activation's gradient is the sum over its rows, exactly as
    when every row recomputes its prompt. Interventions act on every position, so the cached prompt
    carries them as a full forward would. Rows keep their order.
    """
    device = next(model.parameters()).device
    cache_arg = _cache_argument(model)
    slots: dict[tuple[int, tuple[int, ...]], int] = {}
    row_slot = [slots.setdefault((r.example, r.input_ids[: r.prompt_len]), len(slots)) for r in rows]
    prompts = list(slots)
    width = max(len(ids) for _, ids in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, (_, prompt) in enumerate(prompts):
        ids[i, width - len(prompt) :] = torch.tensor(prompt)
        mask[i, width - len(prompt) :] = 1
    positions = (mask.cumsum(1) - 1).clamp_(min=0)
    with batch_examples([e for e, _ in prompts]):
        first = model(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
            use_cache=True,
            logits_to_keep=1,
        )
    slot = torch.tensor(row_slot)
    k = max(len(r.targets) for r in rows)
    targets = torch.full((len(rows), k), pad_id, dtype=torch.long)
    valid = torch.zeros((len(rows), k), dtype=torch.bool)
    for i, r in enumerate(rows):
        targets[i, : len(r.targets)] = torch.tensor(r.targets)
        valid[i, : len(r.targets)] = True
    head = first.logits[:, -1].float().log_softmax(-1)
    dev_slot, dev_targets = slot.to(head.device), targets.to(head.device)
    columns = [head[dev_slot].gather(1, dev_targets[:, :1])]
    cont_mask = None
    if k > 1:
        cache = getattr(first, "cache", None) or getattr(first, "past_key_values", None)
        cache.reorder_cache(
            slot.to(device)
        )  # one copy of its prompt's cache per row (index_select: gradients sum back)
        # The model sees valid[:, :-1]: a shorter row also reads its last target token, after every position it
        # scores (causal, so harmless). The row's own input tokens, where activations count, are valid[:, 1:].
        cont_mask = valid[:, 1:]
        full_mask = torch.cat([mask[slot], valid[:, :-1].long()], dim=1)
        rest_pos = mask.sum(1)[slot][:, None] + torch.arange(k - 1)[None, :]
        with batch_examples([r.example for r in rows]):
            out = model(
                input_ids=targets[:, :-1].to(device),
                attention_mask=full_mask.to(device),
                position_ids=rest_pos.to(device),
                use_cache=True,
                **{cache_arg: cache},
            )
        rest = out.logits.float().log_softmax(-1)
        columns.append(rest.gather(2, dev_targets[:, 1:, None].to(rest.device)).squeeze(2).to(head.device))
    logp = torch.cat(columns, dim=1) * valid.to(head.device)
    return SharedPrefix(logp, valid, slot, mask.bool(), cont_mask)


def shared_prefix_logprobs(model: Any, rows: Sequence[Row], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`shared_prefix_forward` without gradients: ``([rows, K] log-probabilities, [rows, K] valid)`` on the CPU.

    For the ``loglik`` scorer's short answers this cuts the tokens processed by about the number of options.
    """
    out = shared_prefix_forward(model, rows, pad_id)
    return out.logp.cpu(), out.valid


def supports_shared_prefix(model: Any) -> bool:
    """Whether :func:`shared_prefix_logprobs` applies: the model takes and returns a reorderable KV cache."""
    return _cache_argument(model) is not None and "position_ids" in inspect.signature(model.forward).parameters
