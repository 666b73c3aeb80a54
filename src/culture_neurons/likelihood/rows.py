"""Rows: prompts and continuations as the model reads them, tokenised and padded.

Rendering prompts, an example's options and its gold option, tokenising prompt/continuation pairs
into :class:`Row` (checking token boundaries), length batching and padding rows into a
:class:`RowBatch`. The row layout is described in :mod:`culture_neurons.likelihood`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..data.example import Example
from ..errors import InputError, ScoringError
from ..models.prompting import render_prompt, special_tokens_in_text


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


def prompt_texts(tokenizer: Any, examples: Sequence[Example], use_chat_template: bool = True) -> tuple[list[str], bool]:
    """Render each prompt as the model reads it; also return whether tokenising must add special tokens."""
    texts, templated = [], []
    for ex in examples:
        if ex.chat_template_applied:
            texts.append(ex.prompt)
            templated.append(True)
        else:
            texts.append(render_prompt(tokenizer, ex.prompt, use_chat_template))
            templated.append(special_tokens_in_text(tokenizer, use_chat_template))
    if len(set(templated)) > 1:
        raise ScoringError("some examples already carry the chat template and others do not; export them the same way")
    return texts, not templated[0] if templated else True


def length_batches(rows: Sequence[Sequence[Row]], batch_size: int) -> list[list[int]]:
    """Example indices sorted by their longest row (stable) and cut into batches of ``batch_size`` examples.

    Sorting keeps padding small; stability keeps runs deterministic.
    """
    if batch_size < 1:
        raise ScoringError(f"batch size must be at least 1, got {batch_size}")
    order = sorted(range(len(rows)), key=lambda i: max(len(r.input_ids) for r in rows[i]))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


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


def gold_positions(rows: Sequence[Sequence[Row]], gold: Sequence[int]) -> torch.Tensor:
    """Where each example's gold row lies among its examples' rows laid end to end (``gold``: its option index)."""
    offsets = torch.tensor([0] + [len(r) for r in rows]).cumsum(0)[:-1]
    return offsets + torch.tensor(list(gold), dtype=torch.long)


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
        f"example {example.id!r}: answer {example.answer!r} is neither one of its labels "
        f"{list(example.labels or [])} nor one of its options"
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


def option_rows(
    tokenizer: Any, examples: Sequence[Example], prompts: Sequence[str], add_special_tokens: bool
) -> list[list[Row]]:
    """One row per option of each example (the ``choice`` target and the ``loglik`` scorer)."""
    continuations = [[option_continuation(p, o) for o in option_texts(ex)] for ex, p in zip(examples, prompts)]
    return encode_rows(tokenizer, prompts, continuations, add_special_tokens, [ex.id for ex in examples])
