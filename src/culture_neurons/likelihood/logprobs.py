"""Log-probabilities of rows: one padded forward pass, length normalisation, the per-example
softmax, and batched gradient-free option log-likelihoods for evaluation."""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from ..data.example import Example
from .packed import packed_option_logprobs, packs
from .prefix import shared_prefix_logprobs, supports_shared_prefix
from .rows import Row, RowBatch, collate_rows, length_batches, option_rows, prompt_texts
from .tags import batch_examples


def _forward_kwargs(model: Any) -> tuple[bool, bool]:
    params = inspect.signature(model.forward).parameters
    return "logits_to_keep" in params, "position_ids" in params


def continuation_logprobs(model: Any, batch: RowBatch) -> torch.Tensor:
    """Log-probability of every scored continuation token, ``[rows, K]`` (0 where not valid).

    Logits are computed only at scored positions (``logits_to_keep``), which matters for large
    vocabularies. Gradients flow when called with grad enabled.
    """
    keep_logits, pass_positions = _forward_kwargs(model)
    kwargs: dict[str, Any] = {
        "input_ids": batch.input_ids,
        "attention_mask": batch.attention_mask.long(),
        "use_cache": False,
    }
    if pass_positions:
        kwargs["position_ids"] = batch.position_ids
    if keep_logits:
        if batch.left_aligned_keep is not None:
            kwargs["logits_to_keep"] = batch.left_aligned_keep
        else:
            kwargs["logits_to_keep"] = batch.score_pos
    with batch_examples([r.example for r in batch.rows]):
        logits = model(**kwargs).logits
    k = batch.score_pos.shape[1]
    if logits.shape[1] != k:  # the model returned every position
        logits = torch.take_along_dim(logits, batch.score_pos.to(logits.device)[..., None], dim=1)
    logp = logits.float().log_softmax(-1)
    picked = logp.gather(2, batch.score_tok.to(logp.device)[..., None]).squeeze(2)
    return picked * batch.score_valid.to(picked.device)


def mean_logprob(logprobs: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over each row's valid tokens: the length-normalised log-likelihood, ``[rows]``."""
    valid = valid.to(logprobs.device)
    return logprobs.sum(1) / valid.sum(1).clamp(min=1)


def grouped_softmax(values: torch.Tensor, groups: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Softmax of ``values`` within each group (an example's options); returns per-row probabilities."""
    groups = groups.to(values.device)
    peak = torch.full((num_groups,), float("-inf"), device=values.device, dtype=values.dtype)
    peak = peak.scatter_reduce(0, groups, values.detach(), reduce="amax")
    exp = (values - peak[groups]).exp()
    total = torch.zeros(num_groups, device=values.device, dtype=values.dtype).index_add(0, groups, exp)
    return exp / total[groups]


def option_loglik_batches(
    model: Any, rows: Sequence[Sequence[Row]], batch_size: int, pad_id: int, shared_prefix: bool | None = None
) -> Iterator[tuple[list[int], list[Row], torch.Tensor, torch.Tensor]]:
    """Gradient-free option log-likelihoods, batch by batch: ``(example indices, rows, summed log-prob, token count)``.

    ``shared_prefix`` (default: when the model supports it) runs each prompt once for all its options:
    packed into one sequence with its options where the attention allows a custom mask
    (:func:`~.packed.packs`), else from its KV cache. ``False`` recomputes the prompt in every row.
    """
    device = next(model.parameters()).device
    shared = supports_shared_prefix(model) if shared_prefix is None else shared_prefix
    with torch.no_grad():
        for idx in length_batches(rows, batch_size):
            batch_rows = [r for i in idx for r in rows[i]]
            if shared_prefix is not False and packs(model, batch_rows):
                logp, valid = packed_option_logprobs(model, batch_rows, pad_id)
            elif shared:
                logp, valid = shared_prefix_logprobs(model, batch_rows, pad_id)
            else:
                batch = collate_rows(idx, [rows[i] for i in idx], pad_id, "right").to(device)
                logp, valid = continuation_logprobs(model, batch).cpu(), batch.score_valid.cpu()
            yield idx, batch_rows, logp.sum(1), valid.sum(1).clamp(min=1)


def option_logliks(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    batch_size: int = 8,
    use_chat_template: bool = True,
    progress: bool = False,
    shared_prefix: bool | None = None,
) -> list[list[float]]:
    """Length-normalised log-likelihood of each option of each example (no gradients).

    Returns one list per example, in option order. The argmax is the ``loglik`` scorer's prediction.
    """
    from ..progress import progress as make_bar

    prompts, add_special = prompt_texts(tokenizer, examples, use_chat_template)
    rows = option_rows(tokenizer, examples, prompts, add_special)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: list[list[float]] = [[] for _ in examples]
    batches = option_loglik_batches(model, rows, batch_size, pad_id, shared_prefix)
    for _, batch_rows, sums, counts in make_bar(
        batches, desc="option log-likelihoods", unit="batch", disable=not progress
    ):
        for row, value in zip(batch_rows, (sums / counts).tolist()):
            out[row.example].append(value)
    return out
