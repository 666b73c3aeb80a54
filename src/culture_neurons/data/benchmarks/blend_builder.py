"""Rebuilding BLEnD's multiple-choice questions from the short-answer annotations.

The rules (from the BLEnD paper and code, with the synonym check made lexical) are listed in the
docstring of :mod:`culture_neurons.data.benchmarks.blend`.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from ...errors import InputError
from ..splits import topic_split
from ..templates import Item
from .blend_release import answers_of, country_order, country_slug, english_question, question_fails

# The lexical similarity check that replaces the authors' GPT-4 synonym check.

_STOP = frozenset(
    ["a", "an", "the", "of", "and", "or", "in", "on", "at", "to", "for", "with", "from", "by", "as", "is", "are", "be"]
    + ["de", "del", "la", "el", "los", "las", "le"]
)
_TIME = re.compile(r"^\d{1,2}(:\d{2})?\s*(am|pm|a\.m\.|p\.m\.)?$", re.I)
_DATE = re.compile(r"^\d{1,2}/\d{1,2}$")


def _words(text: str) -> set[str]:
    words = re.findall(r"[\w']+", text.lower())
    out = set()
    for w in words:
        if w in _STOP:
            continue
        if len(w) > 3 and w.endswith("es") and not w.endswith("ses"):
            w = w[:-2]
        elif len(w) > 2 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]
        out.add(w)
    return out


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
        return True
    except ValueError:
        return False


def similar(a: str, b: str) -> bool:
    """Whether two answers are too close to both be options (same number, shared word, containment)."""
    x, y = a.strip().lower(), b.strip().lower()
    if not x or not y:
        return x == y
    if _is_number(x) and _is_number(y):
        return float(x.replace(",", "")) == float(y.replace(",", ""))
    if x == y or (min(len(x), len(y)) >= 3 and (x in y or y in x)):
        return True
    return bool(_words(x) & _words(y))


def _format_ok(question: str, answer: str) -> bool:
    if "HH:MM" in question:
        return bool(_TIME.match(answer.strip()))
    if "MM/DD" in question:
        return bool(_DATE.match(answer.strip()))
    if "Arabic" in question:
        return _is_number(answer.strip())
    return True


def _distractors(
    annotations: dict[str, dict[str, dict[str, Any]]],
    all_countries: list[str],
    country: str,
    qid: str,
    question: str,
    own: list[tuple[str, int]],
) -> dict[str, str]:
    """The wrong options of one (country, question): ``{other country: answer}``."""
    candidates = []
    for other in all_countries:
        if other == country or qid not in annotations[other]:
            continue
        for answer, votes in answers_of(annotations[other][qid]):
            if votes >= 2:
                candidates.append((votes, answer, other))
    candidates.sort(key=lambda t: -t[0])  # stable: ties keep country and file order
    chosen: dict[str, str] = {}
    blocked: set[str] = set()
    for _, answer, other in candidates:
        if other in chosen or answer in blocked or not _format_ok(question, answer):
            continue
        if any(similar(answer, own_answer) for own_answer, _ in own) or any(
            similar(answer, c) for c in chosen.values()
        ):
            blocked.add(answer)
            continue
        chosen[other] = answer
    return chosen


def _variants(
    country: str, qid: str, topic: str, question: str, golds: list[str], chosen: dict[str, str], max_variants: int
) -> list[Item]:
    items: list[Item] = []
    for gold in golds:
        for combo in itertools.combinations(chosen.items(), 3):
            if len(items) >= max_variants:
                return items
            items.append(
                Item(
                    id=f"blend/{country_slug(country)}/{qid}/v{len(items)}",
                    group=country,
                    split=topic_split(topic),
                    question=question,
                    options=(gold, *(a for _, a in combo)),
                    answer_index=0,
                    meta={
                        "question_id": qid,
                        "topic": topic,
                        "option_countries": {gold: country, **{a: c for c, a in combo}},
                    },
                )
            )
    return items


def build_mcq_items(
    annotations: dict[str, dict[str, dict[str, Any]]],
    topics: dict[str, str],
    countries: tuple[str, ...] | None = None,
    max_variants: int = 5,
    filter_scope: str = "all",
) -> list[Item]:
    """Multiple-choice items from the short-answer annotations (rules in the blend module docstring)."""
    if filter_scope not in ("all", "country"):
        raise InputError(f"blend: filter_scope must be 'all' or 'country', not {filter_scope!r}")
    if max_variants < 1:
        raise InputError("blend: max_variants must be at least 1")
    all_countries = country_order(annotations)
    targets = [c for c in all_countries if countries is None or c in countries]
    qids = list(dict.fromkeys(q for c in all_countries for q in annotations[c]))
    items: list[Item] = []
    for qid in qids:
        if qid not in topics:
            continue
        failing = {c for c in all_countries if qid in annotations[c] and question_fails(annotations[c][qid])}
        if filter_scope == "all" and failing:
            continue
        for country in targets:
            record = annotations[country].get(qid)
            if record is None or country in failing:
                continue
            question = english_question(country, record)
            own = [(a, n) for a, n in answers_of(record) if _format_ok(question, a)]
            if not own:
                continue
            top = max(n for _, n in own)
            golds = list(dict.fromkeys(a for a, n in own if n == top))
            chosen = _distractors(annotations, all_countries, country, qid, question, own)
            if len(chosen) >= 3:
                items += _variants(country, qid, topics[qid], question, golds, chosen, max_variants)
    return items
