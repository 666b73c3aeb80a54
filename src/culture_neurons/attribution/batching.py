"""Tokenising examples into (prompt ids, target id) and cutting them into length-bucketed batches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..data.example import Example
from ..errors import ScoringError
from ..models.prompting import render_prompt, special_tokens_in_text


@dataclass(frozen=True)
class Encoded:
    """One example ready for the model: prompt token ids and the id of its target token."""

    index: int
    input_ids: tuple[int, ...]
    target: int


@dataclass
class Batch:
    """A padded batch. ``indices`` point back into the example list."""

    indices: list[int]
    input_ids: torch.Tensor  # [B, T]
    attention_mask: torch.Tensor  # [B, T] bool
    position_ids: torch.Tensor  # [B, T]
    last: torch.Tensor  # [B] position of each row's last real token
    targets: torch.Tensor  # [B]

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            self.indices, *(t.to(device) for t in (self.input_ids, self.attention_mask, self.position_ids, self.last, self.targets))
        )


def prompt_texts(tokenizer, examples: Sequence[Example], use_chat_template: bool = True) -> tuple[list[str], bool]:
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


def encode_label_targets(tokenizer, examples: Sequence[Example], use_chat_template: bool = True) -> list[Encoded]:
    """Tokenise prompts and find each target: the first token the tokenizer produces for the answer after the prompt.

    Raises :class:`ScoringError` naming the example when the answer is empty or when the tokenizer
    merges the answer with the end of the prompt, so that no clean first answer token exists.
    """
    texts, add_special = prompt_texts(tokenizer, examples, use_chat_template)
    for ex in examples:
        if not ex.answer.strip():
            raise ScoringError(f"example {ex.id!r}: the answer is empty, so there is no target token")
    prompts = tokenizer(texts, add_special_tokens=add_special)["input_ids"]
    fulls = tokenizer([t + ex.answer for t, ex in zip(texts, examples)], add_special_tokens=add_special)["input_ids"]
    out = []
    for i, (ex, p, f) in enumerate(zip(examples, prompts, fulls)):
        if not p:
            raise ScoringError(f"example {ex.id!r}: the prompt tokenises to nothing")
        if len(f) <= len(p) or list(f[: len(p)]) != list(p):
            raise ScoringError(
                f"example {ex.id!r}: answer {ex.answer!r} has no first token of its own after the prompt "
                f"(the tokenizer merges it with the prompt's last characters {texts[i][-12:]!r}); "
                "end the prompt so the answer starts a new token"
            )
        out.append(Encoded(i, tuple(p), int(f[len(p)])))
    return out


def length_batches(encoded: Sequence[Encoded], batch_size: int) -> list[list[Encoded]]:
    """Sort by length (stable, so ties keep file order) and cut into batches: little padding, deterministic."""
    if batch_size < 1:
        raise ScoringError(f"batch size must be at least 1, got {batch_size}")
    ordered = sorted(encoded, key=lambda e: len(e.input_ids))
    return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]


def collate(items: Sequence[Encoded], pad_id: int, padding_side: str = "left") -> Batch:
    """Pad a list of encoded examples. Position ids count real tokens only, so padding never shifts them."""
    if padding_side not in ("left", "right"):
        raise ScoringError(f"padding side must be 'left' or 'right', got {padding_side!r}")
    width = max(len(e.input_ids) for e in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.bool)
    for row, e in enumerate(items):
        n = len(e.input_ids)
        cols = slice(width - n, width) if padding_side == "left" else slice(0, n)
        ids[row, cols] = torch.tensor(e.input_ids)
        mask[row, cols] = True
    positions = (mask.long().cumsum(1) - 1).clamp_(min=0)
    last = torch.full((len(items),), width - 1) if padding_side == "left" else mask.sum(1) - 1
    targets = torch.tensor([e.target for e in items])
    return Batch([e.index for e in items], ids, mask, positions, last, targets)
