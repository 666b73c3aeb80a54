"""Built-in demo data, shipped with the package so the demo runs offline on a fresh machine.

- ``demo-culture``: 347 project-written multiple-choice questions about everyday life (food,
  work, sport, school, family, holidays) for the 8 target countries, in the BLEnD style: each
  question is built from a *frame* ("Which currency is used in {country}?") with one answer per
  country, and the wrong options are other countries' answers to the same frame. Pairs of
  countries whose answers overlap in reality are marked as conflicts and never used as each
  other's wrong options. Split by topic, like BLEnD.
- ``demo-control``: the same questions with the question removed.
- ``demo-nlu``: 104 project-written commonsense, category, opposite and short reading items
  (held out: the NLU side of the evaluation).
- ``demo-nlu-id``: 96 further project-written items of the same four kinds, none shared with
  ``demo-nlu`` (identification: scored to find general-ability neurons, which
  ``select --exclude`` then keeps out of the culture sets).

See ``data/demo/DATA_CARD.md`` for how the data was made and its limits. Every option carries its
text, so option-likelihood targets (``answer``/``choice``) and scorers work on it, and the gold
text is ``options[labels.index(answer)]``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from ...errors import InputError
from ..countries import country_name, resolve_country
from ..readers import read_json
from ..registry import Benchmark, LoadRequest, register
from ..splits import HELDOUT, IDENTIFICATION, topic_split
from ..templates import (
    CLOZE_TEMPLATE,
    CONTROL_CLOZE_TEMPLATE,
    CONTROL_TEMPLATES,
    MCQ_TEMPLATES,
    Item,
    control_item,
    stable_seed,
)
from .mcq_table import LETTER_TEMPLATES as NLU_TEMPLATES


def demo_path(name: str) -> Path:
    """Path of a built-in demo file (``culture.json``, ``nlu.json``)."""
    return Path(str(resources.files("culture_neurons.data") / "demo" / name))


def culture_items(doc: Any, where: str, countries: tuple[str, ...] | None = None) -> list[Item]:
    """Multiple-choice items from a frames document (see ``data/demo/culture.json``)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("frames"), list):
        raise InputError(f"{where}: expected an object with a 'frames' list")
    items: list[Item] = []
    seen: set[str] = set()
    for i, frame in enumerate(doc["frames"], start=1):
        at = f"{where}: frame {i}"
        for key in ("id", "topic", "question", "answers"):
            if key not in frame:
                raise InputError(f"{at}: missing key {key!r}")
        if frame["id"] in seen:
            raise InputError(f"{at}: duplicate frame id {frame['id']!r}")
        seen.add(frame["id"])
        if "{country}" not in frame["question"]:
            raise InputError(f"{at}: the question must contain {{country}}")
        answers = {resolve_country(c, where=at): str(a).strip() for c, a in frame["answers"].items()}
        conflicts = {frozenset(resolve_country(c, where=at) for c in pair) for pair in frame.get("conflicts", [])}
        for country, gold in answers.items():
            if countries is not None and country not in countries:
                continue
            pool: dict[str, str] = {}
            for other, text in answers.items():
                if other == country or frozenset((country, other)) in conflicts or text.lower() == gold.lower():
                    continue
                pool.setdefault(text.lower(), text)
            if len(pool) < 3:
                raise InputError(
                    f"{at}: only {len(pool)} usable wrong options for {country}; a frame needs "
                    "answers for at least 4 non-conflicting countries"
                )
            wrong = sorted(pool.values(), key=lambda t: stable_seed("demo-culture", frame["id"], country, t))[:3]
            items.append(
                Item(
                    id=f"demo-culture/{frame['id']}/{country.replace(' ', '_')}",
                    group=country,
                    split=topic_split(frame["topic"]),
                    question=frame["question"].replace("{country}", country_name(country)),
                    options=(gold, *wrong),
                    answer_index=0,
                    meta={"question_id": frame["id"], "topic": frame["topic"]},
                )
            )
    return items


def nlu_items(doc: Any, where: str, name: str = "demo-nlu", split: str = HELDOUT) -> list[Item]:
    """Items of a demo NLU set (``demo-nlu``: held out; ``demo-nlu-id``: identification)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
        raise InputError(f"{where}: expected an object with an 'items' list")
    items = []
    for i, rec in enumerate(doc["items"], start=1):
        at = f"{where}: item {i}"
        options = rec.get("options")
        if (
            not isinstance(options, list)
            or len(options) < 2
            or not isinstance(rec.get("answer"), int)
            or not 0 <= rec["answer"] < len(options)
        ):
            raise InputError(f"{at}: needs 'options' (a list) and 'answer' (an index into it)")
        question = rec["question"] if not rec.get("context") else f"{rec['context']}\n{rec['question']}"
        items.append(
            Item(
                id=f"{name}/{rec['id']}",
                group=name,
                split=split,
                question=question,
                options=tuple(options),
                answer_index=rec["answer"],
                meta={"question_id": rec["id"]},
            )
        )
    return items


def _culture_source(req: LoadRequest) -> tuple[Any, str]:
    path = demo_path("culture.json") if req.path is None else req.path
    if path.is_dir():
        path = path / "culture.json"
    return read_json(path), str(path)


def load_culture(req: LoadRequest) -> list[Item]:
    return culture_items(*_culture_source(req), req.countries)


def load_control(req: LoadRequest) -> list[Item]:
    return [control_item(it) for it in load_culture(req)]


def _nlu_file(req: LoadRequest, name: str) -> Path:
    path = demo_path(name) if req.path is None else req.path
    return path / name if path.is_dir() else path


def load_nlu(req: LoadRequest) -> list[Item]:
    path = _nlu_file(req, "nlu.json")
    return nlu_items(read_json(path), str(path))


def load_nlu_identification(req: LoadRequest) -> list[Item]:
    path = _nlu_file(req, "nlu_identification.json")
    return nlu_items(read_json(path), str(path), "demo-nlu-id", IDENTIFICATION)


_SPLIT = "topic: Food, Work life, Sport → identification; Education, Family, Holidays → heldout"

register(
    Benchmark(
        name="demo-culture",
        title="Demo: 347 everyday-culture questions, 8 countries (project-written)",
        kind="culture",
        load=load_culture,
        templates=MCQ_TEMPLATES,
        extra_templates=(CLOZE_TEMPLATE,),
        builtin=True,
        files="culture.json (frames)",
        split_rule=_SPLIT,
        citation="project-written, see DATA_CARD.md",
    )
)
register(
    Benchmark(
        name="demo-control",
        title="Demo control: the demo questions with the question removed",
        kind="control",
        load=load_control,
        templates=CONTROL_TEMPLATES,
        extra_templates=(CONTROL_CLOZE_TEMPLATE,),
        builtin=True,
        files="culture.json (frames)",
        split_rule="as demo-culture",
        citation="project-written",
    )
)
register(
    Benchmark(
        name="demo-nlu",
        title="Demo NLU: 104 commonsense and reading items (project-written)",
        kind="nlu",
        load=load_nlu,
        templates=NLU_TEMPLATES,
        extra_templates=(CLOZE_TEMPLATE,),
        builtin=True,
        by_country=False,
        files="nlu.json",
        split_rule="evaluation only: all heldout",
        citation="project-written",
    )
)
register(
    Benchmark(
        name="demo-nlu-id",
        title="Demo NLU identification: 96 general items to score, not shared with demo-nlu (project-written)",
        kind="nlu",
        load=load_nlu_identification,
        templates=NLU_TEMPLATES,
        extra_templates=(CLOZE_TEMPLATE,),
        builtin=True,
        by_country=False,
        files="nlu_identification.json",
        split_rule="identification only: scored to find general-ability neurons (select --exclude)",
        citation="project-written",
    )
)
