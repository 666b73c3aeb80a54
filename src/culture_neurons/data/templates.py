"""Items, instruction templates, deterministic option shuffling, and rendering into ``Example``.

A benchmark loader produces :class:`Item` records: the question, its options in source order, the
gold option, the group and the split. Rendering an item with a :class:`Template` gives the
``Example`` that ``culture-neurons score`` reads:

- the options are shuffled by a stable hash of (item, template slot), so the same export is
  byte-identical on every machine, and a control prompt lists its question's options in the same
  order (control templates share slots with the question templates);
- labels are letters (``A``-``H``) or numbers (``1``-``9``);
- the prompt ends exactly where the answer label goes. A template's ``answer_prefix`` (for example
  ``{"answer_choice":"``, as in the BLEnD prompt) is the start of the model's reply: without a chat
  template it follows the instruction after a blank line; with one, it follows the assistant header.

All template wording is the project's own.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from .countries import display_name
from .example import Example

LETTERS = "ABCDEFGH"
NUMBERS = "123456789"
LABEL_STYLES = ("letters", "numbers")


@dataclass(frozen=True)
class Item:
    """One benchmark question before rendering.

    Attributes:
        id: unique within the benchmark, stable across runs.
        group: canonical country (or the benchmark name for NLU sets).
        split: ``identification``, ``heldout`` or ``train``.
        question: the question text, without options.
        options: option texts in source order (empty for short-answer and scale questions).
        answer_index: index of the gold option in ``options``.
        context: a passage or story shown before the question.
        answers: accepted free-text answers (short-answer questions); the first is the reference.
        scale_min, scale_max: the range of a scale question; the gold is ``answers[0]``.
        shuffle: whether the options may be reordered.
        shuffle_key: what the option order is hashed from (defaults to ``id``); a control item
            uses its question's key so both list the options in the same order.
        meta: extra fields copied into the example (question id, topic, ...).
        source: where the item was read (file and line), for error messages; not exported.
    """

    id: str
    group: str
    split: str
    question: str
    options: tuple[str, ...] = ()
    answer_index: int | None = None
    context: str | None = None
    answers: tuple[str, ...] = ()
    scale_min: float | None = None
    scale_max: float | None = None
    shuffle: bool = True
    shuffle_key: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    source: str | None = field(default=None, compare=False, hash=False)

    @property
    def gold(self) -> str:
        """The gold answer text."""
        if self.answer_index is not None:
            return self.options[self.answer_index]
        return self.answers[0]


@dataclass(frozen=True)
class Template:
    """An instruction template.

    ``text`` may use ``{question}``, ``{options}``, ``{context}``, ``{country}``, ``{label_word}``
    (``letter``/``number``), ``{label_list}`` (``A, B, C or D``), ``{first_label}``,
    ``{last_label}``, ``{scale_min}`` and ``{scale_max}``. Literal braces are doubled.
    """

    id: str
    text: str
    answer_prefix: str = ""
    option_line: str = "{label}. {option}"
    slot: int = 0


def option_labels(n: int, style: str = "letters") -> tuple[str, ...]:
    """The first ``n`` labels of a style."""
    pool = LETTERS if style == "letters" else NUMBERS if style == "numbers" else None
    if pool is None:
        raise InputError(f"unknown label style {style!r}; use one of {', '.join(LABEL_STYLES)}")
    if n > len(pool):
        raise InputError(f"{n} options do not fit {style} labels (at most {len(pool)})")
    return tuple(pool[:n])


def stable_seed(*parts: object) -> int:
    """A 64-bit seed from the SHA-256 of the parts (independent of PYTHONHASHSEED and platform)."""
    blob = "\x1f".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big")


def shuffled_order(key: str, n: int) -> list[int]:
    """A permutation of ``range(n)`` fixed by ``key``."""
    order = list(range(n))
    random.Random(stable_seed(key)).shuffle(order)
    return order


def _label_list(labels: tuple[str, ...]) -> str:
    if len(labels) <= 1:
        return "".join(labels)
    return ", ".join(labels[:-1]) + " or " + labels[-1]


def render_body(
    item: Item, template: Template, label_style: str
) -> tuple[str, tuple[str, ...], tuple[str, ...], str | None]:
    """Fill a template. Returns (instruction text, option texts, labels, gold label or None)."""
    options: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    gold: str | None = None
    if item.options:
        order = list(range(len(item.options)))
        if item.shuffle:
            order = shuffled_order(f"{item.shuffle_key or item.id}|slot{template.slot}", len(item.options))
        options = tuple(item.options[i] for i in order)
        labels = option_labels(len(options), label_style)
        if item.answer_index is not None:
            gold = labels[order.index(item.answer_index)]
    option_block = "\n".join(template.option_line.format(label=lab, option=o) for lab, o in zip(labels, options))
    fields = {
        "question": item.question,
        "options": option_block,
        "context": item.context or "",
        "country": display_name(item.group),
        "label_word": "letter" if label_style == "letters" else "number",
        "label_list": _label_list(labels),
        "first_label": labels[0] if labels else "",
        "last_label": labels[-1] if labels else "",
        "scale_min": _fmt_num(item.scale_min),
        "scale_max": _fmt_num(item.scale_max),
    }
    body = template.text.format(**fields).strip()
    return body, options, labels, gold


def _fmt_num(x: float | None) -> str:
    if x is None:
        return ""
    return str(int(x)) if float(x).is_integer() else str(x)


def compose_prompt(body: str, answer_prefix: str, tokenizer: Any = None) -> tuple[str, bool]:
    """The text the model reads, and whether the chat template was applied."""
    if tokenizer is not None:
        from ..models.prompting import has_chat_template, render_prompt

        if has_chat_template(tokenizer):
            return render_prompt(tokenizer, body) + answer_prefix, True
    if answer_prefix:
        return f"{body}\n\n{answer_prefix}", False
    return body, False


def render_item(
    item: Item, template: Template, dataset: str, label_style: str = "letters", tokenizer: Any = None
) -> Example:
    """Render one item with one template into an :class:`Example`."""
    body, options, labels, gold = render_body(item, template, label_style)
    prompt, applied = compose_prompt(body, template.answer_prefix, tokenizer)
    if gold is not None:
        answer = gold
    elif item.answers:
        answer = item.answers[0]
    else:
        raise InputError(f"{dataset} item {item.id}: no gold answer")
    meta = dict(item.meta)
    if item.answers and item.answer_index is None and item.scale_min is None:
        meta["answers"] = list(item.answers)
    return Example(
        id=f"{item.id}#{template.id}",
        prompt=prompt,
        answer=answer,
        group=item.group,
        dataset=dataset,
        split=item.split,
        template_id=template.id,
        options=options or None,
        labels=labels or None,
        scale_min=item.scale_min,
        scale_max=item.scale_max,
        chat_template_applied=applied,
        meta=meta,
    )


# ---------------------------------------------------------------------------------------------
# The JSON-answer endings that the letter-answer templates of several benchmarks share. Each
# returns the closing request and the answer prefix the model's reply starts with.


def ask_answer(what: str) -> tuple[str, str]:
    """``Reply in JSON with the <label> of WHAT, as in {"answer":"<label>"}.``"""
    return (
        f'Reply in JSON with the {{label_word}} of {what}, as in {{{{"answer":"<{{label_word}}>"}}}}.',
        '{"answer":"',
    )


def ask_choice(adverb: str = "only") -> tuple[str, str]:
    """``Give ADVERB the <label> (A, B, C or D) in the JSON field "choice".``"""
    return f'Give {adverb} the {{label_word}} ({{label_list}}) in the JSON field "choice".', '{"choice":"'


ASK_ANSWER_CHOICE = ('Respond with JSON only: {{"answer_choice":"<{label_word}>"}}', '{"answer_choice":"')


def json_template(template_id: str, head: str, ask: tuple[str, str], slot: int) -> Template:
    """A template whose text is ``head`` followed by a JSON-answer ending from :func:`ask_answer`,
    :func:`ask_choice` or :data:`ASK_ANSWER_CHOICE`."""
    text, prefix = ask
    return Template(template_id, head + text, answer_prefix=prefix, slot=slot)


# ---------------------------------------------------------------------------------------------
# Template sets shared by several benchmarks. Slots pair question templates with control
# templates: slot k of the control set words the same request as slot k of the question set,
# minus the question.

MCQ_TEMPLATES: tuple[Template, ...] = (
    Template(
        "mcq1",
        "{question} Do not explain your choice. Pick exactly one of the options below and reply "
        'in JSON with its {label_word}, as in {{"answer_choice":"<{label_word}>"}}.\n\n{options}',
        answer_prefix='{"answer_choice":"',
        slot=0,
    ),
    Template(
        "mcq2",
        "Answer this question about everyday life.\n\nQuestion: {question}\n{options}\n\n"
        'Give only the {label_word} of the best option, as JSON: {{"answer":"<{label_word}>"}}',
        answer_prefix='{"answer":"',
        slot=1,
    ),
    Template(
        "mcq3",
        "Here is a multiple-choice question.\n\n{question}\n\nOptions:\n{options}\n\n"
        'Which option is right? Put just its {label_word} ({label_list}) in the JSON field "choice".',
        answer_prefix='{"choice":"',
        slot=2,
    ),
    Template(
        "mcq4",
        "Choose the answer most people there would give.\n\n{question}\n{options}\n\n"
        'Respond in JSON with the key "answer_choice" and a single {label_word} as its value.',
        answer_prefix='{"answer_choice":"',
        slot=3,
    ),
)

CONTROL_TEMPLATES: tuple[Template, ...] = (
    Template(
        "ctl1",
        "Here are some options. Do not explain your choice. Pick exactly one of them and reply in "
        'JSON with its {label_word}, as in {{"answer_choice":"<{label_word}>"}}.\n\n{options}',
        answer_prefix='{"answer_choice":"',
        slot=0,
    ),
    Template(
        "ctl2",
        "Look at the options below and choose any one of them.\n\n{options}\n\n"
        'Give only the {label_word} of your choice, as JSON: {{"answer":"<{label_word}>"}}',
        answer_prefix='{"answer":"',
        slot=1,
    ),
    Template(
        "ctl3",
        "Here is a list of options.\n\nOptions:\n{options}\n\n"
        'Pick one of them. Put just its {label_word} ({label_list}) in the JSON field "choice".',
        answer_prefix='{"choice":"',
        slot=2,
    ),
    Template(
        "ctl4",
        "Please select one of the following options.\n\n{options}\n\n"
        'Respond in JSON with the key "answer_choice" and a single {label_word} as its value.',
        answer_prefix='{"answer_choice":"',
        slot=3,
    ),
)

#: A cloze form for option-text scoring (the ``answer``/``choice`` targets): no option list, and
#: the prompt ends with "Answer:" so an option's text can follow it.
CLOZE_TEMPLATE = Template("cloze", "Question: {question}\nAnswer:", slot=0)

#: The control form of the cloze template: the options and a neutral instruction, no question.
CONTROL_CLOZE_TEMPLATE = Template("cloze", "Here are some options:\n{options}\nPick any one of them.\nAnswer:", slot=0)


def control_item(item: Item) -> Item:
    """The control form of a multiple-choice item: same options and gold, no question."""
    return Item(
        id=f"{item.id}/control",
        group=item.group,
        split=item.split,
        question="",
        options=item.options,
        answer_index=item.answer_index,
        shuffle=item.shuffle,
        shuffle_key=item.shuffle_key or item.id,
        meta={**item.meta, "control_of": item.id},
    )
