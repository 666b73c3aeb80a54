"""Scoring examples: the paper's greedy exact match, option-token argmax, option log-likelihood,
WorldValuesBench alignment and BLEnD short-answer matching.

Which scorer an example gets depends on what it is (:func:`example_kind`):

- ``mcq`` (it has labels or options): the chosen scorer:
  - ``generate`` (the paper's): the greedy next token after the prompt, decoded, compared with the
    gold label by exact match (surrounding whitespace and quote/closing punctuation removed, so a
    token such as ``A"`` reads as ``A``);
  - ``choice``: argmax over the option labels' first tokens at the last prompt position;
  - ``loglik``: lm-evaluation-harness style, the log-likelihood of each option text as a
    continuation; ``correct`` is the argmax of the summed log-likelihood (lm-eval ``acc``),
    ``correct_norm`` of the sum divided by the continuation's length in characters (``acc_norm``).
    It uses :mod:`culture_neurons.likelihood`, the implementation behind the scoring engine's
    ``choice`` target.
- ``scale`` (``scale_min``/``scale_max`` set, WorldValuesBench): greedy generation of a few tokens,
  the leading integer is the prediction, and the score is the alignment
  ``100 * (1 - |pred - gold| / max(|min - gold|, |max - gold|))``, 0 when no in-range integer was given.
- ``saq`` (a list of accepted ``answers`` in the example's meta, BLEnD short answers): greedy
  generation, correct when an annotator answer occurs in it (:mod:`.saq`).
- ``open`` (none of the above): greedy generation, exact match.

``generate`` and ``choice`` share one forward pass with logits at the last position only, and
report the probability of each option label (softmax over the label tokens' logits).
All rows are batched; prompts are left-padded with position ids that count real tokens.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from ..attribution.batching import length_batches, prompt_texts
from ..data.example import Example
from ..distributed import gather_in_order, shard, world
from ..errors import InputError
from ..likelihood import (
    collate_rows,
    encode_rows,
    gold_option,
    grouped_softmax,
    option_continuation,
    option_loglik_batches,
    option_rows,
)
from .saq import saq_match

SCORERS = ("generate", "choice", "loglik")
KINDS = ("mcq", "scale", "saq", "open")
_PUNCT = "\"'`.,:;!?)]}"


@dataclass(frozen=True)
class EvalOptions:
    """How examples are scored.

    Attributes:
        scorer: ``generate`` (the paper's), ``choice`` or ``loglik``; applies to multiple-choice examples.
        batch_size: examples per forward pass (``loglik``: examples, each with all its options).
        chat_template: wrap prompts in the tokenizer's chat template when it has one.
        max_new_tokens: tokens generated for ``generate`` on multiple-choice and open examples (1 = the paper's).
        scale_max_new_tokens: tokens generated for scale (WorldValuesBench) examples.
        saq_max_new_tokens: tokens generated for short-answer (BLEnD SAQ) examples.
    """

    scorer: str = "generate"
    batch_size: int = 8
    chat_template: bool = True
    max_new_tokens: int = 1
    scale_max_new_tokens: int = 4
    saq_max_new_tokens: int = 24

    def validate(self) -> None:
        if self.scorer not in SCORERS:
            raise InputError(f"unknown scorer {self.scorer!r}; choose one of {', '.join(SCORERS)}")
        for name in ("batch_size", "max_new_tokens", "scale_max_new_tokens", "saq_max_new_tokens"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def example_kind(ex: Example) -> str:
    """``scale``, ``saq``, ``mcq`` or ``open`` (see the module docstring)."""
    if ex.scale_min is not None and ex.scale_max is not None:
        return "scale"
    if ex.options or ex.labels:
        return "mcq"
    if isinstance(ex.meta.get("answers"), list) and ex.meta["answers"]:
        return "saq"
    return "open"


def clean_label(text: str) -> str:
    """A decoded prediction as compared by exact match: whitespace and quote/closing punctuation stripped."""
    return text.strip().strip(_PUNCT).strip()


_INT = re.compile(r"^\s*[\"'`]?\s*([+-]?\d+)(?![\d])(?!\.\d)")


def parse_scale(text: str) -> int | None:
    """The integer a scale answer starts with (``7``, ``7"}``, `` 10.``), or None (``7.5``, ``seven``)."""
    m = _INT.match(text)
    return int(m.group(1)) if m else None


def alignment(pred: int | None, gold: float, lo: float, hi: float) -> float:
    """WorldValuesBench alignment in [0, 100]; 0 when ``pred`` is None or outside [lo, hi]."""
    if pred is None or not lo <= pred <= hi:
        return 0.0
    span = max(abs(lo - gold), abs(hi - gold))
    if span == 0:
        return 100.0 if pred == gold else 0.0
    return 100.0 * (1.0 - abs(pred - gold) / span)


# ---------------------------------------------------------------------------------------------
# model calls


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
    logits = model(**kwargs).logits
    return logits[:, -1].float()


def _label_continuations(ex: Example) -> tuple[list[str], int]:
    """Each option label written the way the gold answer is (same surrounding whitespace), and the gold index."""
    labels = list(ex.labels or [])
    if not labels:
        raise InputError(
            f"example {ex.id!r} has options but no labels; the generate and choice scorers need labels (use --scorer loglik)"
        )
    answer = ex.answer
    gold = answer.strip()
    stripped = [label.strip() for label in labels]
    if gold not in stripped:
        raise InputError(f"example {ex.id!r}: answer {ex.answer!r} is not one of its labels {labels}")
    lead = answer[: len(answer) - len(answer.lstrip())]
    trail = answer[len(answer.rstrip()) :]
    return [lead + s + trail for s in stripped], stripped.index(gold)


def _first_token_rows(
    model: Any, tokenizer: Any, examples: Sequence[Example], prompts: list[str], add_special: bool, opts: EvalOptions
) -> list[dict[str, Any]]:
    conts, golds = zip(*(_label_continuations(ex) for ex in examples))
    rows = encode_rows(tokenizer, prompts, conts, add_special, [ex.id for ex in examples], first_token_only=True)
    label_tokens = [[r.targets[0] for r in rs] for rs in rows]
    for ex, toks in zip(examples, label_tokens):
        if len(set(toks)) != len(toks):
            raise InputError(
                f"example {ex.id!r}: two option labels start with the same token, so label probabilities are ambiguous"
            )
    device, pad = _device(model), _pad_id(tokenizer)
    out: list[dict[str, Any]] = [{} for _ in examples]
    with torch.no_grad():
        for idx in length_batches([rows[i][:1] for i in range(len(rows))], opts.batch_size):
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
                if opts.scorer == "choice":
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
    return out


def _generate(
    model: Any, tokenizer: Any, prompts: list[str], add_special: bool, max_new_tokens: int, batch_size: int
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
    return out


def _loglik_rows(
    model: Any, tokenizer: Any, examples: Sequence[Example], prompts: list[str], add_special: bool, opts: EvalOptions
) -> list[dict[str, Any]]:
    rows = option_rows(tokenizer, examples, prompts, add_special)
    golds = [gold_option(ex) for ex in examples]
    out: list[dict[str, Any]] = [{} for _ in examples]
    for idx, batch_rows, sums, counts in option_loglik_batches(model, rows, opts.batch_size, _pad_id(tokenizer)):
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
            lengths = [len(option_continuation(prompts[i], o)) for o in options]
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
    return out


def evaluate_examples(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    options: EvalOptions | None = None,
    progress: bool = False,
    **overrides: Any,
) -> list[dict[str, Any]]:
    """Score ``examples`` and return one row per example, in input order.

    Row keys: ``id, benchmark, country, split, template, kind, scorer, prediction, gold, correct,
    correct_norm (loglik only), score`` (1/0, or alignment / 100 for scale examples),
    ``option_probs`` and ``options`` (multiple-choice examples).
    """
    opts = replace(options or EvalOptions(), **overrides)
    opts.validate()
    if not examples:
        raise InputError("no examples to evaluate")
    rank, world_size = world()
    if world_size == 1:
        return _evaluate_local(model, tokenizer, examples, opts, progress)
    # Data parallel: each rank takes a round-robin shard; every rank gets all rows back, in input order.
    mine = shard(range(len(examples)), rank, world_size)
    local = _evaluate_local(model, tokenizer, [examples[i] for i in mine], opts, progress and rank == 0) if mine else []
    return gather_in_order(list(zip(mine, local)), len(examples), "evaluation rows")


def _evaluate_local(
    model: Any, tokenizer: Any, examples: Sequence[Example], opts: EvalOptions, progress: bool
) -> list[dict[str, Any]]:
    prompts, add_special = prompt_texts(tokenizer, examples, opts.chat_template)
    kinds = [example_kind(ex) for ex in examples]
    results: list[dict[str, Any]] = [{} for _ in examples]

    def part(kind: str) -> list[int]:
        return [i for i, k in enumerate(kinds) if k == kind]

    mcq = part("mcq")
    if mcq:
        exs, ps = [examples[i] for i in mcq], [prompts[i] for i in mcq]
        if opts.scorer == "loglik":
            got = _loglik_rows(model, tokenizer, exs, ps, add_special, opts)
        else:
            got = _first_token_rows(model, tokenizer, exs, ps, add_special, opts)
            if opts.scorer == "generate" and opts.max_new_tokens > 1:
                texts = _generate(model, tokenizer, ps, add_special, opts.max_new_tokens, opts.batch_size)
                for g, text in zip(got, texts):
                    g["prediction"] = clean_label(text)
                    g["correct"] = g["prediction"] == g["gold"]
        for i, g in zip(mcq, got):
            results[i] = {**g, "score": float(g["correct"])}
    for kind, n_tokens in (
        ("scale", opts.scale_max_new_tokens),
        ("saq", opts.saq_max_new_tokens),
        ("open", opts.max_new_tokens),
    ):
        idx = part(kind)
        if not idx:
            continue
        texts = _generate(model, tokenizer, [prompts[i] for i in idx], add_special, n_tokens, opts.batch_size)
        for i, text in zip(idx, texts):
            ex = examples[i]
            if kind == "scale":
                pred = parse_scale(text)
                try:
                    gold = float(ex.answer.strip())
                except ValueError:
                    raise InputError(f"example {ex.id!r}: scale answer {ex.answer!r} is not a number") from None
                value = alignment(pred, gold, float(ex.scale_min), float(ex.scale_max))
                results[i] = {
                    "prediction": text.strip(),
                    "parsed": pred,
                    "gold": ex.answer.strip(),
                    "correct": pred is not None and pred == gold,
                    "score": value / 100.0,
                }
            elif kind == "saq":
                hit = saq_match(text, [str(a) for a in ex.meta["answers"]])
                results[i] = {
                    "prediction": text.strip(),
                    "gold": ex.answer,
                    "matched": hit,
                    "correct": hit is not None,
                    "score": float(hit is not None),
                }
            else:
                pred = clean_label(text)
                results[i] = {
                    "prediction": pred,
                    "gold": clean_label(ex.answer),
                    "correct": pred == clean_label(ex.answer),
                    "score": float(pred == clean_label(ex.answer)),
                }
    rows = []
    for ex, kind, res in zip(examples, kinds, results):
        rows.append(
            {
                "id": ex.id,
                "benchmark": ex.dataset or "",
                "country": ex.group,
                "split": ex.split or "",
                "template": ex.template_id or "",
                "kind": kind,
                "scorer": opts.scorer if kind == "mcq" else "generate",
                "prediction": res["prediction"],
                "gold": res["gold"],
                "correct": bool(res["correct"]),
                "correct_norm": res.get("correct_norm"),
                "score": float(res["score"]),
                "option_probs": res.get("option_probs"),
                "options": res.get("options"),
            }
        )
    return rows
