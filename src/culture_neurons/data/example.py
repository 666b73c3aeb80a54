"""The ``Example`` record and its JSONL form, the one input format of ``culture-neurons score``.

One JSON object per line. Required keys: ``id``, ``prompt``, ``answer``, ``group``. Optional keys
are the other fields of :class:`Example`; anything else is kept in ``Example.meta`` so that files
written by newer versions still load.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from ..fileio import atomic_path, check_input_file

REQUIRED_FIELDS = ("id", "prompt", "answer", "group")


@dataclass(frozen=True)
class Example:
    """One scored or evaluated question.

    Attributes:
        id: unique id within its file.
        prompt: the question as the model sees it (before the chat template unless
            ``chat_template_applied`` is true).
        answer: the gold answer; for letter questions a short label such as ``"A"`` whose first
            token is the attribution target.
        group: the group the example counts towards, usually a country.
        dataset: benchmark name, e.g. ``"blend"``.
        split: ``"identification"`` or ``"heldout"`` (or any other split name).
        template_id: which instruction template rendered the prompt.
        options: the option texts of a multiple-choice question, in label order.
        labels: the option labels (``"A"``, ``"B"``, ...) matching ``options``.
        scale_min, scale_max: the answer range of a scale question (WorldValuesBench).
        chat_template_applied: true when ``prompt`` already holds the chat-template rendering, so
            scoring must not wrap it again.
        meta: any further keys found in the source record.
    """

    id: str
    prompt: str
    answer: str
    group: str
    dataset: str | None = None
    split: str | None = None
    template_id: str | None = None
    options: tuple[str, ...] | None = None
    labels: tuple[str, ...] | None = None
    scale_min: float | None = None
    scale_max: float | None = None
    chat_template_applied: bool = False
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form: ``None`` fields and an empty ``meta`` are dropped."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "meta":
                out.update(value)
            elif value is not None and not (f.name == "chat_template_applied" and not value):
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, record: dict[str, Any], where: str = "record") -> Example:
        """Build an Example from a parsed JSON object; ``where`` names it in error messages."""
        if not isinstance(record, dict):
            raise InputError(f"{where}: expected a JSON object, got {type(record).__name__}")
        missing = [k for k in REQUIRED_FIELDS if k not in record]
        if missing:
            raise InputError(f"{where}: missing required field(s) {', '.join(missing)}")
        known = {f.name for f in dataclasses.fields(cls)} - {"meta"}
        kwargs: dict[str, Any] = {}
        for key in known & record.keys():
            value = record[key]
            if key in ("id", "group") and isinstance(value, (int, float)) and not isinstance(value, bool):
                value = str(value)
            if key in ("id", "prompt", "answer", "group") and not isinstance(value, str):
                raise InputError(f"{where}: field {key!r} must be a string, got {type(value).__name__}")
            if key in ("options", "labels") and value is not None:
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise InputError(f"{where}: field {key!r} must be a list of strings")
                value = tuple(value)
            kwargs[key] = value
        if not kwargs["id"]:
            raise InputError(f"{where}: field 'id' is empty")
        if not kwargs["group"].strip():
            raise InputError(
                f"{where}: field 'group' is empty; every example needs a group (a country, or the dataset name)"
            )
        meta = {k: v for k, v in record.items() if k not in known}
        return cls(**kwargs, meta=meta)


def read_examples(path: str | os.PathLike) -> list[Example]:
    """Read an examples JSONL file.

    A UTF-8 BOM and CRLF line endings are accepted; blank lines are skipped. A malformed line, a
    missing field or a repeated id raises :class:`InputError` naming the file and line number.
    """
    path = check_input_file(path, "examples file")  # FIFOs are read; folders and devices named as such
    examples: list[Example] = []
    seen: dict[str, int] = {}
    spellings: dict[str, tuple[str, int]] = {}  # group_key -> (first spelling, its line)
    with open(path, encoding="utf-8-sig", newline=None) as fh:
        try:
            lines = list(fh)
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: malformed JSON ({exc.msg} at column {exc.colno})") from exc
        ex = Example.from_dict(record, where)
        if ex.id in seen:
            raise InputError(f"{where}: duplicate id {ex.id!r} (first seen on line {seen[ex.id]})")
        seen[ex.id] = lineno
        first, first_line = spellings.setdefault(group_key(ex.group), (ex.group, lineno))
        if first != ex.group:
            raise InputError(
                f"{where}: group {ex.group!r} differs from {first!r} (line {first_line}) only by case or "
                "surrounding whitespace; use one spelling"
            )
        examples.append(ex)
    if not examples:
        raise InputError(f"{path}: no examples found")
    return examples


def write_examples(path: str | os.PathLike, examples: Iterable[Example]) -> int:
    """Write examples as JSONL, atomically. Returns the number written."""
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for ex in examples:
            fh.write(json.dumps(ex.to_dict(), ensure_ascii=False) + "\n")
            n += 1
    return n


def group_key(group: str) -> str:
    """What two group names must not share: the name without case and surrounding whitespace."""
    return group.strip().casefold()


def group_clash(groups: Iterable[str]) -> str | None:
    """A one-line problem with a list of group names (an empty one, or two that differ only by case
    or surrounding whitespace), or None."""
    first: dict[str, str] = {}
    for g in groups:
        if not str(g).strip():
            return f"an empty group name ({g!r})"
        other = first.setdefault(group_key(str(g)), str(g))
        if other != g:
            return f"groups {other!r} and {g!r} differ only by case or surrounding whitespace"
    return None


def group_names(examples: Sequence[Example]) -> list[str]:
    """The distinct groups in order of first appearance."""
    return list(dict.fromkeys(ex.group for ex in examples))
