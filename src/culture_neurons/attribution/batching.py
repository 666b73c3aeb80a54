"""Turning examples into scored rows for each attribution target, and length-bucketed batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..data.example import Example
from ..errors import ScoringError
from ..likelihood import Row, encode_rows, option_rows
from ..models.prompting import render_prompt, special_tokens_in_text


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


def target_rows(
    tokenizer: Any, examples: Sequence[Example], target: str, use_chat_template: bool = True
) -> list[list[Row]]:
    """The rows each example contributes under ``target`` (``label``, ``answer`` or ``choice``).

    ``label``: the first token the tokenizer produces for the answer right after the prompt.
    ``answer``: every token of the answer, teacher-forced. ``choice``: one row per option.
    """
    prompts, add_special = prompt_texts(tokenizer, examples, use_chat_template)
    if target == "choice":
        return option_rows(tokenizer, examples, prompts, add_special)
    ids = [ex.id for ex in examples]
    return encode_rows(
        tokenizer, prompts, [[ex.answer] for ex in examples], add_special, ids, first_token_only=target == "label"
    )


def length_batches(rows: Sequence[Sequence[Row]], batch_size: int) -> list[list[int]]:
    """Example indices sorted by their longest row (stable) and cut into batches of ``batch_size`` examples.

    Sorting keeps padding small; stability keeps runs deterministic.
    """
    if batch_size < 1:
        raise ScoringError(f"batch size must be at least 1, got {batch_size}")
    order = sorted(range(len(rows)), key=lambda i: max(len(r.input_ids) for r in rows[i]))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
