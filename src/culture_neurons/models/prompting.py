"""Turning an example's prompt into the exact text the model reads."""

from __future__ import annotations

from typing import Any


def has_chat_template(tokenizer: Any) -> bool:
    """True when the tokenizer carries a chat template."""
    return bool(getattr(tokenizer, "chat_template", None))


def render_prompt(tokenizer: Any, prompt: str, use_chat_template: bool = True) -> str:
    """Wrap ``prompt`` as one user turn with the generation prompt appended.

    Falls back to the raw prompt when the tokenizer has no chat template or when
    ``use_chat_template`` is false. The answer is expected to follow the returned text directly.
    """
    if not use_chat_template or not has_chat_template(tokenizer):
        return prompt
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )


def special_tokens_in_text(tokenizer: Any, use_chat_template: bool = True) -> bool:
    """Whether rendered prompts already contain the special tokens (BOS) the model expects.

    A chat template writes them itself, so tokenising its output must not add a second BOS.
    """
    return use_chat_template and has_chat_template(tokenizer)
