"""Label sanity: the attribution target is the first token of the gold label after the prompt.

For that to mean anything, each option label must start with its own token right where the prompt
ends: not an empty tokenisation, not the same first token as another label, and not merged with
the prompt's last characters (as ``"Answer: "`` + ``"A"`` can be). :func:`label_problems` checks
this for a tokenizer; :func:`assert_labels_ok` raises one clear error per benchmark.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import InputError
from .example import Example

#: How much of the prompt's end is tokenised with each label. Tokenisers split text into pieces at
#: spaces and punctuation, so the last few dozen characters decide how a label attaches.
TAIL_CHARS = 48


def _ids(tokenizer: Any, text: str) -> list[int]:
    out = tokenizer(text, add_special_tokens=False)
    ids = out["input_ids"] if isinstance(out, dict) or hasattr(out, "keys") else out
    return list(ids)


def first_label_tokens(tokenizer: Any, prompt: str, labels: Sequence[str]) -> list[int | str | None]:
    """For each label: its first token id after ``prompt``; ``None`` when it adds no token; the
    string ``"merged"`` when the label changes how the prompt's end is tokenised."""
    tail = prompt[-TAIL_CHARS:]
    base = _ids(tokenizer, tail)
    out: list[int | str | None] = []
    for label in labels:
        ids = _ids(tokenizer, tail + label)
        if ids[: len(base)] != base:
            out.append("merged")
        elif len(ids) == len(base):
            out.append(None)
        else:
            out.append(ids[len(base)])
    return out


def label_problems(examples: Sequence[Example], tokenizer: Any, limit: int = 20) -> list[str]:
    """Up to ``limit`` problems, each naming the example id. Examples without labels are skipped."""
    problems: list[str] = []
    cache: dict[tuple[str, tuple[str, ...]], list[int | str | None]] = {}
    for ex in examples:
        if not ex.labels:
            continue
        key = (ex.prompt[-TAIL_CHARS:], tuple(ex.labels))
        if key not in cache:
            cache[key] = first_label_tokens(tokenizer, ex.prompt, ex.labels)
        firsts = cache[key]
        issue = None
        if ex.answer not in ex.labels:
            issue = f"gold label {ex.answer!r} is not one of the labels {list(ex.labels)}"
        elif any(f is None for f in firsts):
            bad = [lab for lab, f in zip(ex.labels, firsts) if f is None]
            issue = f"label(s) {bad} tokenise to nothing after the prompt"
        elif any(f == "merged" for f in firsts):
            bad = [lab for lab, f in zip(ex.labels, firsts) if f == "merged"]
            issue = (
                f"label(s) {bad} merge with the end of the prompt into one token; "
                "end the prompt so that the label starts a new token"
            )
        elif len(set(firsts)) != len(firsts):
            issue = f"labels {list(ex.labels)} do not all start with different tokens"
        if issue:
            problems.append(f"example {ex.id}: {issue}")
            if len(problems) >= limit:
                break
    return problems


def assert_labels_ok(examples: Sequence[Example], tokenizer: Any, benchmark: str = "examples") -> None:
    """Raise :class:`InputError` when any label fails :func:`label_problems`."""
    problems = label_problems(examples, tokenizer, limit=4)
    if problems:
        more = " (and maybe more)" if len(problems) >= 4 else ""
        raise InputError(
            f"{benchmark}: labels are not usable as single-token targets for this tokenizer: "
            + "; ".join(problems[:3])
            + more
            + ". Try --labels numbers/letters or another template"
        )
