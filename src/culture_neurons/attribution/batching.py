"""Turning examples into scored rows for each attribution target.

Prompt rendering and length batching live in :mod:`culture_neurons.likelihood` (they serve the
evaluation scorers too); they are re-exported here for existing callers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..data.example import Example
from ..likelihood import Row, encode_rows, length_batches, option_rows, prompt_texts

__all__ = ["length_batches", "prompt_texts", "target_rows"]


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
