"""Continuation log-likelihoods: the one implementation behind every answer-text measure.

A *row* is a prompt followed by a continuation whose tokens are scored under teacher forcing. The
model reads ``prompt + continuation[:-1]``; the log-probability of continuation token ``j`` is read
at position ``len(prompt) - 1 + j``. The three attribution targets and the ``loglik`` evaluation
scorer are all built from rows:

- ``label``: one row per example; the continuation is the first token of the gold label.
- ``answer``: one row per example; the continuation is the whole gold answer text.
- ``choice`` and the ``loglik`` scorer: one row per option; the per-row mean log-probability is
  the option's length-normalised log-likelihood, and a softmax over an example's rows gives the
  option probabilities.

Public API:

- :func:`encode_rows` — tokenise prompt/continuation pairs into :class:`Row` (checks token boundaries);
- :func:`collate_rows` — pad rows of several examples into a :class:`RowBatch`;
- :func:`continuation_logprobs` — one forward pass, logits only where scored, ``[rows, K]``;
- :func:`mean_logprob`, :func:`grouped_softmax` — length normalisation and the per-example softmax;
- :func:`option_texts`, :func:`gold_option` — an example's options and the gold one;
- :func:`shared_prefix_logprobs` — gradient-free row log-probabilities with each prompt run once (KV cache);
- :func:`option_loglik_batches`, :func:`option_logliks` — batched, gradient-free option log-likelihoods for evaluation.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .data.example import Example
from .errors import InputError, ScoringError


@dataclass(frozen=True)
class Row:
    """One prompt + continuation sequence of one example."""

    example: int  # index of the example in the caller's list
    option: int  # option index (0 when an example has a single row)
    prompt_len: int
    input_ids: tuple[int, ...]  # prompt + continuation[:-1]
    targets: tuple[int, ...]  # the continuation's tokens, scored one by one


@dataclass
class RowBatch:
    """Padded rows of a few examples. ``row_example`` maps each row to its example's slot in the batch."""

    examples: list[int]  # caller's example indices, one slot each
    rows: list[Row]
    input_ids: torch.Tensor  # [R, T]
    attention_mask: torch.Tensor  # [R, T] bool
    position_ids: torch.Tensor  # [R, T]
    prompt_mask: torch.Tensor  # [R, T] bool: real prompt positions
    row_example: torch.Tensor  # [R]
    score_pos: torch.Tensor  # [R, K] positions whose logits score a continuation token
    score_tok: torch.Tensor  # [R, K] the tokens scored there
    score_valid: torch.Tensor  # [R, K] bool
    last_prompt: torch.Tensor  # [R] position of the last prompt token
    last: torch.Tensor  # [R] position of the last real token
    left_aligned_keep: int | None  # K when every scored position is among the last K (left padding)

    def to(self, device: torch.device | str) -> RowBatch:
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return RowBatch(**moved)


def option_continuation(prompt_text: str, option: str) -> str:
    """The text appended after the prompt for an option: a space separates it unless the prompt ends in whitespace."""
    return option if not prompt_text or prompt_text[-1].isspace() else " " + option


def option_texts(example: Example) -> tuple[str, ...]:
    """The example's option texts; a clear error when it has none."""
    if not example.options:
        raise InputError(
            f"example {example.id!r} has no options; the choice target and the loglik scorer need the option texts"
        )
    return example.options


def gold_option(example: Example) -> int:
    """Index of the gold option: the answer matched against the labels, else against the option texts."""
    options = option_texts(example)
    answer = example.answer.strip()
    if example.labels:
        labels = [label.strip() for label in example.labels]
        if len(labels) != len(options):
            raise InputError(f"example {example.id!r}: {len(labels)} labels for {len(options)} options")
        if answer in labels:
            return labels.index(answer)
    stripped = [o.strip() for o in options]
    if answer in stripped:
        return stripped.index(answer)
    raise InputError(
        f"example {example.id!r}: answer {example.answer!r} is neither one of its labels {list(example.labels or [])} nor one of its options"
    )


def encode_rows(
    tokenizer: Any,
    prompts: Sequence[str],
    continuations: Sequence[Sequence[str]],
    add_special_tokens: bool,
    ids: Sequence[str],
    first_token_only: bool = False,
) -> list[list[Row]]:
    """Tokenise each prompt with each of its continuations.

    The continuation's tokens are those the tokenizer produces after the prompt's own tokens; if the
    tokenizer merges the continuation into the prompt's last token, or the continuation is empty,
    a :class:`ScoringError` names the example (``ids``) and the continuation.
    """
    prompt_ids = tokenizer(list(prompts), add_special_tokens=add_special_tokens)["input_ids"]
    flat = [(i, j, p + c) for i, (p, conts) in enumerate(zip(prompts, continuations)) for j, c in enumerate(conts)]
    full_ids = (
        tokenizer([text for _, _, text in flat], add_special_tokens=add_special_tokens)["input_ids"] if flat else []
    )
    out: list[list[Row]] = [[] for _ in prompts]
    for (i, j, _), full in zip(flat, full_ids):
        prompt = list(prompt_ids[i])
        cont = continuations[i][j]
        if not prompt:
            raise ScoringError(f"example {ids[i]!r}: the prompt tokenises to nothing")
        if not cont.strip():
            raise ScoringError(f"example {ids[i]!r}: the answer is empty, so there is no target token")
        if len(full) <= len(prompt) or list(full[: len(prompt)]) != prompt:
            raise ScoringError(
                f"example {ids[i]!r}: continuation {cont!r} has no first token of its own after the prompt "
                f"(the tokenizer merges it with the prompt's last characters {prompts[i][-12:]!r}); "
                "end the prompt so the answer starts a new token"
            )
        targets = list(full[len(prompt) :])
        if first_token_only:
            targets = targets[:1]
        out[i].append(Row(i, j, len(prompt), tuple(prompt + targets[:-1]), tuple(targets)))
    return out


def collate_rows(
    examples: Sequence[int], rows_per_example: Sequence[Sequence[Row]], pad_id: int, padding_side: str = "left"
) -> RowBatch:
    """Pad the rows of several examples into one batch.

    Position ids count real tokens only, so padding never shifts a row's positions and the result
    of every row is the same as if it ran alone.
    """
    if padding_side not in ("left", "right"):
        raise ScoringError(f"padding side must be 'left' or 'right', got {padding_side!r}")
    rows = [r for rs in rows_per_example for r in rs]
    slots = [slot for slot, rs in enumerate(rows_per_example) for _ in rs]
    width = max(len(r.input_ids) for r in rows)
    k = max(len(r.targets) for r in rows)
    n = len(rows)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.bool)
    prompt_mask = torch.zeros((n, width), dtype=torch.bool)
    score_pos = torch.zeros((n, k), dtype=torch.long)
    score_tok = torch.zeros((n, k), dtype=torch.long)
    score_valid = torch.zeros((n, k), dtype=torch.bool)
    last_prompt = torch.zeros(n, dtype=torch.long)
    last = torch.zeros(n, dtype=torch.long)
    for i, r in enumerate(rows):
        length = len(r.input_ids)
        start = width - length if padding_side == "left" else 0
        ids[i, start : start + length] = torch.tensor(r.input_ids)
        mask[i, start : start + length] = True
        prompt_mask[i, start : start + r.prompt_len] = True
        m = len(r.targets)
        score_pos[i, :m] = torch.arange(start + r.prompt_len - 1, start + r.prompt_len - 1 + m)
        score_pos[i, m:] = score_pos[i, m - 1]
        score_tok[i, :m] = torch.tensor(r.targets)
        score_valid[i, :m] = True
        last_prompt[i] = start + r.prompt_len - 1
        last[i] = start + length - 1
    positions = (mask.long().cumsum(1) - 1).clamp_(min=0)
    keep = k if padding_side == "left" and all(len(r.targets) == k for r in rows) else None
    return RowBatch(
        list(examples),
        rows,
        ids,
        mask,
        positions,
        prompt_mask,
        torch.tensor(slots),
        score_pos,
        score_tok,
        score_valid,
        last_prompt,
        last,
        keep,
    )


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


def option_rows(
    tokenizer: Any, examples: Sequence[Example], prompts: Sequence[str], add_special_tokens: bool
) -> list[list[Row]]:
    """One row per option of each example (the ``choice`` target and the ``loglik`` scorer)."""
    continuations = [[option_continuation(p, o) for o in option_texts(ex)] for ex, p in zip(examples, prompts)]
    return encode_rows(tokenizer, prompts, continuations, add_special_tokens, [ex.id for ex in examples])


def _cache_argument(model: Any) -> str | None:
    """The name under which ``model.forward`` takes a KV cache (transformers 5 renamed it), or None."""
    params = inspect.signature(model.forward).parameters
    return next((name for name in ("cache", "past_key_values") if name in params), None)


def shared_prefix_logprobs(model: Any, rows: Sequence[Row], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Like :func:`continuation_logprobs` on ``rows``, but each distinct prompt runs once (no gradients).

    An example's options share its prompt: the prompts run once (left-padded) with a KV cache, the
    cache is repeated for each row, and only the continuation tokens run again. For the ``loglik``
    scorer's short answers this cuts the tokens processed by about the number of options. Interventions
    act on every position, so the cached prompt carries them as a full forward would.

    Returns ``([rows, K] log-probabilities, [rows, K] valid)``; rows keep their order.
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
    logp = torch.zeros((len(rows), k))
    head = first.logits[:, -1].float().log_softmax(-1).cpu()
    logp[:, 0] = head[slot].gather(1, targets[:, :1]).squeeze(1)
    if k > 1:
        cache = getattr(first, "cache", None) or getattr(first, "past_key_values", None)
        cache.reorder_cache(slot.to(device))  # one copy of its prompt's cache per row
        rest_mask = valid[:, :-1].long()
        full_mask = torch.cat([mask[slot], rest_mask], dim=1)
        rest_pos = mask.sum(1)[slot][:, None] + torch.arange(k - 1)[None, :]
        out = model(
            input_ids=targets[:, :-1].to(device),
            attention_mask=full_mask.to(device),
            position_ids=rest_pos.to(device),
            use_cache=True,
            **{cache_arg: cache},
        )
        rest = out.logits.float().log_softmax(-1).cpu()
        logp[:, 1:] = rest.gather(2, targets[:, 1:, None]).squeeze(2)
    return logp * valid, valid


def supports_shared_prefix(model: Any) -> bool:
    """Whether :func:`shared_prefix_logprobs` applies: the model takes and returns a reorderable KV cache."""
    return _cache_argument(model) is not None and "position_ids" in inspect.signature(model.forward).parameters


def option_loglik_batches(
    model: Any, rows: Sequence[Sequence[Row]], batch_size: int, pad_id: int, shared_prefix: bool | None = None
) -> Iterator[tuple[list[int], list[Row], torch.Tensor, torch.Tensor]]:
    """Gradient-free option log-likelihoods, batch by batch: ``(example indices, rows, summed log-prob, token count)``.

    ``shared_prefix`` (default: when the model supports it) runs each prompt once for all its options.
    """
    from .attribution.batching import length_batches

    device = next(model.parameters()).device
    shared = supports_shared_prefix(model) if shared_prefix is None else shared_prefix
    with torch.no_grad():
        for idx in length_batches(rows, batch_size):
            batch_rows = [r for i in idx for r in rows[i]]
            if shared:
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
    from tqdm.auto import tqdm

    from .attribution.batching import prompt_texts

    prompts, add_special = prompt_texts(tokenizer, examples, use_chat_template)
    rows = option_rows(tokenizer, examples, prompts, add_special)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: list[list[float]] = [[] for _ in examples]
    batches = option_loglik_batches(model, rows, batch_size, pad_id, shared_prefix)
    for _, batch_rows, sums, counts in tqdm(
        batches, desc="option log-likelihoods", unit="batch", disable=not progress, leave=False
    ):
        for row, value in zip(batch_rows, (sums / counts).tolist()):
            out[row.example].append(value)
    return out
