"""The batched model passes behind the evaluation scorers (:mod:`.scorers`).

- :func:`first_token_rows`: one forward pass with logits at the last prompt position only; the
  probability of each option label (softmax over the label tokens' first-token logits), and the
  prediction as either the most probable label (``choice``) or the greedy next token (``generate``);
- :func:`generate_texts`: greedy continuations of a few tokens;
- :func:`loglik_rows`: lm-evaluation-harness style option log-likelihoods (``acc`` and ``acc_norm``).

All rows are batched; prompts are left-padded with position ids that count real tokens.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch

from ..data.example import Example
from ..errors import InputError
from ..intervention.rowwise import copies_of
from ..likelihood import (
    collate_rows,
    encode_rows,
    gold_option,
    grouped_softmax,
    length_batches,
    option_loglik_batches,
    option_rows,
)
from ..likelihood.rows import Row
from ..likelihood.tags import batch_examples

_PUNCT = "\"'`.,:;!?)]}"


def clean_label(text: str) -> str:
    """A decoded prediction as compared by exact match: whitespace and quote/closing punctuation stripped."""
    return text.strip().strip(_PUNCT).strip()


def copied_rows(rows: Sequence[Sequence[Row]], copies: int) -> list[list[Row]]:
    """Each example's rows ``copies`` times (item-major), renumbered so copy ``c`` of example ``i`` is
    example ``i * copies + c``: tokenised once, scored once per copy."""
    return [[replace(r, example=i * copies + c) for r in rs] for i, rs in enumerate(rows) for c in range(copies)]


def _device(model: Any) -> torch.device:
    return model.get_input_embeddings().weight.device


def _pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)


def _last_logits(model: Any, batch: Any) -> torch.Tensor:
    """Logits at the last (prompt) position of a left-padded batch, ``[B, V]`` float32."""
    params = inspect.signature(model.forward).parameters
    kwargs: dict[str, Any] = {
        "input_ids": batch.input_ids,
        "attention_mask": batch.attention_mask.long(),
        "use_cache": False,
    }
    if "position_ids" in params:
        kwargs["position_ids"] = batch.position_ids
    if "logits_to_keep" in params:
        kwargs["logits_to_keep"] = 1
    with batch_examples([r.example for r in batch.rows]):
        logits = model(**kwargs).logits
    return logits[:, -1].float()


def _label_continuations(ex: Example) -> tuple[list[str], int]:
    """Each option label written the way the gold answer is (same surrounding whitespace), and the gold index."""
    labels = list(ex.labels or [])
    if not labels:
        raise InputError(
            f"example {ex.id!r} has options but no labels; "
            "the generate and choice scorers need labels (use --scorer loglik)"
        )
    answer = ex.answer
    gold = answer.strip()
    stripped = [label.strip() for label in labels]
    if gold not in stripped:
        raise InputError(f"example {ex.id!r}: answer {ex.answer!r} is not one of its labels {labels}")
    lead = answer[: len(answer) - len(answer.lstrip())]
    trail = answer[len(answer.rstrip()) :]
    return [lead + s + trail for s in stripped], stripped.index(gold)


def first_token_rows(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    prompts: list[str],
    add_special: bool,
    batch_size: int,
    pick_label: bool,
    tick: Callable[[int], None],
    copies: int = 1,
) -> list[dict[str, Any]]:
    """One row per multiple-choice example (``copies`` per example, item-major) from a last-position
    forward pass.

    ``pick_label``: predict the most probable option label (the ``choice`` scorer) rather than the
    decoded greedy next token (``generate``). Rows: ``prediction, gold, correct, option_probs, options``.
    """
    conts, golds = zip(*(_label_continuations(ex) for ex in examples))
    rows = encode_rows(tokenizer, prompts, conts, add_special, [ex.id for ex in examples], first_token_only=True)
    label_tokens = [[r.targets[0] for r in rs] for rs in rows]
    for ex, toks in zip(examples, label_tokens):
        if len(set(toks)) != len(toks):
            raise InputError(
                f"example {ex.id!r}: two option labels start with the same token, so label probabilities are ambiguous"
            )
    if copies > 1:
        rows, label_tokens, golds = copied_rows(rows, copies), copies_of(label_tokens, copies), copies_of(golds, copies)
        examples = copies_of(examples, copies)
    device, pad = _device(model), _pad_id(tokenizer)
    out: list[dict[str, Any]] = [{} for _ in examples]
    with torch.no_grad():
        for idx in length_batches([rows[i][:1] for i in range(len(rows))], batch_size):
            batch = collate_rows(idx, [rows[i][:1] for i in idx], pad, "left").to(device)
            logits = _last_logits(model, batch)
            top = logits.argmax(-1).tolist()
            width = max(len(label_tokens[i]) for i in idx)
            tok = torch.tensor(
                [label_tokens[i] + [label_tokens[i][0]] * (width - len(label_tokens[i])) for i in idx],
                device=logits.device,
            )
            valid = torch.tensor([[j < len(label_tokens[i]) for j in range(width)] for i in idx], device=logits.device)
            picked = logits.gather(1, tok).masked_fill(~valid, float("-inf"))
            probs = picked.softmax(-1).cpu()
            for slot, i in enumerate(idx):
                ex, n = examples[i], len(label_tokens[i])
                labels = [s.strip() for s in ex.labels]
                p = probs[slot, :n].tolist()
                if pick_label:
                    pred = labels[int(probs[slot, :n].argmax())]
                else:
                    pred = clean_label(tokenizer.decode([top[slot]], skip_special_tokens=True))
                gold = labels[golds[i]]
                out[i] = {
                    "prediction": pred,
                    "gold": gold,
                    "correct": pred == gold,
                    "option_probs": p,
                    "options": labels,
                }
            tick(len(idx))
    return out


def generate_texts(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    add_special: bool,
    max_new_tokens: int,
    batch_size: int,
    tick: Callable[[int], None],
) -> list[str]:
    """Greedy continuations (decoded, special tokens dropped), batched with left padding."""
    ids = tokenizer(prompts, add_special_tokens=add_special)["input_ids"]
    for i, seq in enumerate(ids):
        if not seq:
            raise InputError(f"prompt #{i} tokenises to nothing")
    device, pad = _device(model), _pad_id(tokenizer)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out = [""] * len(ids)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            width = max(len(ids[i]) for i in idx)
            input_ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                input_ids[row, width - len(ids[i]) :] = torch.tensor(ids[i])
                mask[row, width - len(ids[i]) :] = 1
            with batch_examples(idx):
                gen = model.generate(
                    input_ids=input_ids.to(device),
                    attention_mask=mask.to(device),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=pad,
                    num_beams=1,
                )
            for row, i in enumerate(idx):
                out[i] = tokenizer.decode(gen[row, width:].tolist(), skip_special_tokens=True)
            tick(len(idx))
    return out


def loglik_rows(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    prompts: list[str],
    add_special: bool,
    batch_size: int,
    tick: Callable[[int], None],
    copies: int = 1,
) -> list[dict[str, Any]]:
    """One row per multiple-choice example (``copies`` per example, item-major) from the option texts'
    log-likelihoods as continuations.

    Rows: ``prediction, gold, correct`` (summed log-likelihood), ``correct_norm`` (per character),
    ``option_probs, options``.
    """
    rows = option_rows(tokenizer, examples, prompts, add_special)
    golds = [gold_option(ex) for ex in examples]
    if copies > 1:
        rows, golds, examples = copied_rows(rows, copies), copies_of(golds, copies), copies_of(examples, copies)
    out: list[dict[str, Any]] = [{} for _ in examples]
    for idx, batch_rows, sums, counts in option_loglik_batches(model, rows, batch_size, _pad_id(tokenizer)):
        slot = {i: n for n, i in enumerate(idx)}
        groups = torch.tensor([slot[r.example] for r in batch_rows])
        probs = grouped_softmax(sums / counts, groups, len(idx)).tolist()
        sums = sums.tolist()
        per: dict[int, list[tuple[float, float]]] = {i: [] for i in idx}
        for row, s, p in zip(batch_rows, sums, probs):
            per[row.example].append((s, p))
        for i in idx:
            ex = examples[i]
            options = list(ex.options)
            lengths = [len(o) for o in options]  # lm-eval's acc_norm: the choice text, without the delimiter
            total = [s for s, _ in per[i]]
            normed = [s / max(n, 1) for s, n in zip(total, lengths)]
            pick = max(range(len(total)), key=lambda j: (total[j], -j))
            pick_norm = max(range(len(normed)), key=lambda j: (normed[j], -j))
            names = [s.strip() for s in ex.labels] if ex.labels else [o.strip() for o in options]
            out[i] = {
                "prediction": names[pick],
                "gold": names[golds[i]],
                "correct": pick == golds[i],
                "correct_norm": pick_norm == golds[i],
                "option_probs": [p for _, p in per[i]],
                "options": names,
            }
        tick(len(idx))
    return out
