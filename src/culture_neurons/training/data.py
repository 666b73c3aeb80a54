"""Training examples, answer-only token labels, and the batch collator.

Training data is a benchmark name (through :mod:`culture_neurons.data`, the ``train`` part where the
benchmark has one) or an examples JSONL as ``culture-neurons score`` reads it. Each example becomes
one sequence, the rendered prompt followed by the gold answer's tokens (for multiple-choice
examples: the label, e.g. ``A``; after a cloze prompt, which lists no labels, the gold option's
text, the continuation the ``loglik`` scorer reads). Only the answer tokens carry labels; every prompt position is
``-100``, so the loss covers the answer tokens only. Tokenisation and the prompt/answer boundary
check are those of :func:`culture_neurons.likelihood.encode_rows`, so training sees exactly the
tokens that scoring and evaluation score.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data.example import Example, read_examples
from ..data.registry import build_examples, get_benchmark, list_benchmarks
from ..data.templates import CLOZE_TEMPLATE
from ..errors import InputError, ScoringError
from ..fileio import sha256_json
from ..likelihood import encode_rows, prompt_texts
from ..likelihood.rows import gold_option, option_continuation

log = logging.getLogger(__name__)

IGNORE = -100
CLOZE = CLOZE_TEMPLATE.id
DEFAULT_MAX_EXAMPLES = 10_000


def looks_like_path(text: str) -> bool:
    return text.endswith((".jsonl", ".json")) or os.sep in text or "/" in text


def training_examples(
    data: str | os.PathLike | Sequence[Example],
    *,
    data_dir: str | os.PathLike | None = None,
    part: str | None = None,
    max_examples: int | None = DEFAULT_MAX_EXAMPLES,
    seed: int = 42,
    templates: str | Sequence[str] | None = None,
    **options: Any,
) -> list[Example]:
    """The training examples: a benchmark name, an examples JSONL, or examples.

    Args:
        data: ``qnli``, ``mrpc``, ``demo-nlu`` (any registered benchmark), a path to an examples
            JSONL, or a list of :class:`Example`.
        data_dir: local benchmark files (see ``culture-neurons data export``); None = built-in or hub.
        part: the benchmark part to train on; default ``train`` where the benchmark has one
            (QNLI, MRPC, CommonsenseQA), else its only part (``demo-nlu``).
        max_examples: keep at most this many, drawn without replacement with ``seed`` (kept in
            source order); None keeps all. The paper trains on 10k QNLI examples.
        templates: prompt templates for a benchmark (None = the first, ``all``, or ids).
        options: benchmark options (``--option``).
    """
    if max_examples is not None and int(max_examples) < 1:
        raise InputError(f"max_examples must be at least 1, got {max_examples}")
    if isinstance(data, (str, os.PathLike)):
        text = str(data)
        path = Path(text)
        if path.is_file():
            examples = read_examples(path)
        elif looks_like_path(text):
            raise InputError(f"training data {text!r}: no such examples file")
        else:
            try:
                bench = get_benchmark(text)
            except InputError:
                known = ", ".join(b.name for b in list_benchmarks() if b.kind == "nlu") or "qnli, mrpc"
                raise InputError(
                    f"unknown dataset {text!r}: not an examples file and not a benchmark; "
                    f"use an NLU benchmark ({known}) or an examples JSONL"
                ) from None
            if part is None and "train" in bench.parts:
                part = "train"
            examples = build_examples(
                bench.name, split="all", data_dir=data_dir, part=part, templates=templates, **options
            )
    else:
        examples = list(data)
    if not examples:
        raise InputError("no training examples")
    if max_examples is not None and len(examples) > int(max_examples):
        keep = sorted(random.Random(seed).sample(range(len(examples)), int(max_examples)))
        examples = [examples[i] for i in keep]
    return examples


@dataclass(frozen=True)
class EncodedExample:
    """One training sequence: prompt + answer tokens, and labels that are -100 on the prompt."""

    id: str
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]

    @property
    def answer_tokens(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE)


def trained_answer(example: Example, prompt: str) -> str:
    """The continuation trained after ``prompt``: the gold option's text for a cloze prompt (it lists no labels, so a
    letter there would teach an answer no scorer asks for), else the example's answer (the label)."""
    if example.template_id == CLOZE and example.options:
        return option_continuation(prompt, example.options[gold_option(example)])
    return example.answer


def encode_examples(
    tokenizer: Any, examples: Sequence[Example], chat_template: bool = True, max_length: int | None = None
) -> list[EncodedExample]:
    """Tokenise every example as prompt + answer with answer-only labels.

    A ``max_length`` drops (and counts in the log) the sequences longer than it; prompts are never
    cut, since a cut prompt would teach the answer to a question the model never saw.
    """
    prompts, add_special = prompt_texts(tokenizer, examples, chat_template)
    ids = [ex.id for ex in examples]
    try:
        answers = [[trained_answer(ex, prompt)] for ex, prompt in zip(examples, prompts)]
        rows = encode_rows(tokenizer, prompts, answers, add_special, ids)
    except ScoringError as exc:
        raise InputError(f"training data: {exc}") from exc
    out, dropped = [], 0
    for ex, (row,) in zip(examples, rows):
        full = tuple(row.input_ids) + (row.targets[-1],)
        labels = (IGNORE,) * row.prompt_len + tuple(row.targets)
        if max_length is not None and len(full) > max_length:
            dropped += 1
            continue
        out.append(EncodedExample(ex.id, full, labels))
    if dropped:
        log.warning("dropped %d of %d training examples longer than %d tokens", dropped, len(examples), max_length)
    if not out:
        raise InputError(f"no training example fits in max_length={max_length} tokens")
    return out


def data_hash(encoded: Sequence[EncodedExample]) -> str:
    """SHA-256 of the encoded training data (ids, tokens and labels), to refuse resuming on other data."""
    return sha256_json([[e.id, list(e.input_ids), list(e.labels)] for e in encoded])


class EncodedDataset(torch.utils.data.Dataset):
    """A map-style dataset over :class:`EncodedExample` for the Trainer."""

    def __init__(self, encoded: Sequence[EncodedExample]) -> None:
        self.encoded = list(encoded)

    def __len__(self) -> int:
        return len(self.encoded)

    def __getitem__(self, i: int) -> dict[str, Any]:
        e = self.encoded[i]
        return {"input_ids": e.input_ids, "labels": e.labels}


@dataclass
class AnswerCollator:
    """Right-pads a batch: pad id in ``input_ids``, 0 in ``attention_mask``, -100 in ``labels``."""

    pad_id: int

    def __call__(self, batch: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(b["input_ids"]) for b in batch)
        n = len(batch)
        input_ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        labels = torch.full((n, width), IGNORE, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for i, b in enumerate(batch):
            k = len(b["input_ids"])
            input_ids[i, :k] = torch.tensor(b["input_ids"], dtype=torch.long)
            labels[i, :k] = torch.tensor(b["labels"], dtype=torch.long)
            mask[i, :k] = 1
        return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def pad_id(tokenizer: Any) -> int:
    if tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    if tokenizer.eos_token_id is not None:
        return int(tokenizer.eos_token_id)
    raise InputError("the tokenizer has neither a pad nor an eos token to pad training batches with")


@torch.no_grad()
def answer_loss(model: Any, tokenizer: Any, encoded: Sequence[EncodedExample], batch_size: int = 8) -> float:
    """Mean cross-entropy per answer token of ``encoded`` under ``model`` (eval mode, no grad)."""
    collate = AnswerCollator(pad_id(tokenizer))
    device = model.get_input_embeddings().weight.device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for start in range(0, len(encoded), batch_size):
            chunk = encoded[start : start + batch_size]
            batch = {
                k: v.to(device)
                for k, v in collate([{"input_ids": e.input_ids, "labels": e.labels} for e in chunk]).items()
            }
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
            shift_logits, shift_labels = logits[:, :-1], batch["labels"][:, 1:]
            loss = torch.nn.functional.cross_entropy(
                shift_logits.reshape(-1, shift_logits.shape[-1]),
                shift_labels.reshape(-1),
                ignore_index=IGNORE,
                reduction="sum",
            )
            total += float(loss)
            count += int((shift_labels != IGNORE).sum())
    finally:
        model.train(was_training)
    return total / max(count, 1)
