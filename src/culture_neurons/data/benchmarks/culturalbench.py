"""CulturalBench (Chiu et al. 2024): Easy (4-way multiple choice) and Hard (true/false per option).

Published columns:

- Easy: ``data_idx, question_idx, prompt_question, prompt_option_a..prompt_option_d, answer (A-D), country``
- Hard: ``data_idx, question_idx, prompt_question, prompt_option, answer (TRUE/FALSE), country``,
  four rows per question (one per candidate answer).

Split: for each country, the first half of its questions (in file order) identify neurons. Hard
rows of one question stay together.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import InputError
from ..countries import resolve_country
from ..hub import HubSource, load_hub_rows
from ..readers import Row, find_file, read_records
from ..registry import Benchmark, LoadRequest, register
from ..splits import half_split_by
from ..templates import (
    ASK_ANSWER_CHOICE,
    CLOZE_TEMPLATE,
    MCQ_TEMPLATES,
    Item,
    Template,
    ask_answer,
    ask_choice,
    json_template,
)

HUB_ID = "kellycyy/CulturalBench"
EASY_COLUMNS = (
    "question_idx",
    "prompt_question",
    "prompt_option_a",
    "prompt_option_b",
    "prompt_option_c",
    "prompt_option_d",
    "answer",
    "country",
)
HARD_COLUMNS = ("question_idx", "prompt_question", "prompt_option", "answer", "country")
EASY_FILES = ("CulturalBench-Easy.csv", "CulturalBench-Easy.parquet", "CulturalBench-Easy.jsonl")
HARD_FILES = ("CulturalBench-Hard.csv", "CulturalBench-Hard.parquet", "CulturalBench-Hard.jsonl")


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN from parquet
        return ""
    return str(value).strip()


def _qid(row: Row) -> str:
    value = row.need("question_idx")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def easy_items(rows: list[Row], countries: tuple[str, ...] | None) -> list[Item]:
    """Items of CulturalBench-Easy. Empty and repeated options are dropped; the rest keep their order."""
    parsed = []
    for row in rows:
        country = resolve_country(row.need("country"), "culturalbench", where=row.where)
        texts = [_text(row.get(f"prompt_option_{k}")) for k in "abcd"]
        answer = _text(row.need("answer")).upper()
        if answer not in ("A", "B", "C", "D"):
            raise InputError(f"{row.where}: answer {answer!r} is not one of the options A, B, C, D")
        gold_text = texts["ABCD".index(answer)]
        if not gold_text:
            raise InputError(f"{row.where}: the gold option {answer} is empty")
        # Empty options are dropped, and so is a repeated option (two published rows list the same
        # text twice); the gold keeps its text.
        options = list(dict.fromkeys(t for t in texts if t))
        options = [o for i, o in enumerate(options) if o.lower() not in {p.lower() for p in options[:i]}]
        gold = next(i for i, o in enumerate(options) if o.lower() == gold_text.lower())
        parsed.append((row, country, _qid(row), tuple(options), gold))
    split = half_split_by(parsed, stratum=lambda p: p[1], key=lambda p: p[2])
    items = []
    for row, country, qid, options, gold in parsed:
        if countries is not None and country not in countries:
            continue
        items.append(
            Item(
                id=f"culturalbench-easy/{qid}",
                group=country,
                split=split[qid],
                question=_text(row.need("prompt_question")),
                options=options,
                answer_index=gold,
                meta={"question_id": qid},
                source=row.where,
            )
        )
    return items


def _truth(value, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = _text(value).lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise InputError(f"{where}: answer {value!r} is not TRUE or FALSE")


def hard_items(rows: list[Row], countries: tuple[str, ...] | None) -> list[Item]:
    """Items of CulturalBench-Hard: one true/false item per (question, candidate answer) row."""
    parsed = []
    counts: dict[str, int] = {}
    for row in rows:
        country = resolve_country(row.need("country"), "culturalbench", where=row.where)
        qid = _qid(row)
        k = counts.get(qid, 0)
        counts[qid] = k + 1
        data_idx = _text(row.get("data_idx")) or f"{qid}.{k}"
        parsed.append((row, country, qid, data_idx, _truth(row.need("answer"), row.where)))
    split = half_split_by(parsed, stratum=lambda p: p[1], key=lambda p: p[2])
    items = []
    for row, country, qid, data_idx, truth in parsed:
        if countries is not None and country not in countries:
            continue
        question = _text(row.need("prompt_question"))
        statement = _text(row.need("prompt_option"))
        items.append(
            Item(
                id=f"culturalbench-hard/{qid}/{data_idx}",
                group=country,
                split=split[qid],
                question=f"{question}\nProposed answer: {statement}\nIs the proposed answer correct?",
                options=("True", "False"),
                answer_index=0 if truth else 1,
                shuffle_key=f"culturalbench-hard/{qid}/{data_idx}",
                meta={"question_id": qid},
                source=row.where,
            )
        )
    return items


def _rows(req: LoadRequest, names: tuple[str, ...], columns: tuple[str, ...], config: str) -> list[Row]:
    if req.path is None:
        return load_hub_rows(HubSource(HUB_ID, config, "test"), columns)
    path = req.path if req.path.is_file() else find_file(req.path, names)
    if path is None:
        raise InputError(f"{req.path}: no {names[0]} found (CulturalBench {config})")
    return read_records(Path(path), columns)


def load_easy(req: LoadRequest) -> list[Item]:
    return easy_items(_rows(req, EASY_FILES, EASY_COLUMNS, "CulturalBench-Easy"), req.countries)


def load_hard(req: LoadRequest) -> list[Item]:
    return hard_items(_rows(req, HARD_FILES, HARD_COLUMNS, "CulturalBench-Hard"), req.countries)


TF_TEMPLATES: tuple[Template, ...] = (
    json_template("tf1", "{question}\n\n{options}\n\n", ask_answer("your judgement"), 0),
    json_template(
        "tf2",
        "Judge the following answer to a question about culture.\n\n{question}\n{options}\n\n",
        ask_choice("just"),
        1,
    ),
    json_template(
        "tf3",
        "Read the question and the proposed answer, then decide.\n\n{question}\n\nOptions:\n{options}\n\n",
        ASK_ANSWER_CHOICE,
        2,
    ),
)

_SPLIT = "first half of each country's questions → identification; second half → heldout"
_CITE = "Chiu et al. 2024, CulturalBench"

register(
    Benchmark(
        name="culturalbench-easy",
        title="CulturalBench-Easy (4-way multiple choice, 45 countries)",
        kind="culture",
        load=load_easy,
        templates=MCQ_TEMPLATES,
        extra_templates=(CLOZE_TEMPLATE,),
        folder="culturalbench",
        markers=EASY_FILES,
        files="CulturalBench-Easy.csv",
        hub=HubSource(HUB_ID, "CulturalBench-Easy", "test"),
        split_rule=_SPLIT,
        citation=_CITE,
    )
)
register(
    Benchmark(
        name="culturalbench-hard",
        title="CulturalBench-Hard (true/false per candidate answer)",
        kind="culture",
        load=load_hard,
        templates=TF_TEMPLATES,
        folder="culturalbench",
        markers=HARD_FILES,
        files="CulturalBench-Hard.csv",
        hub=HubSource(HUB_ID, "CulturalBench-Hard", "test"),
        split_rule=_SPLIT + " (the four rows of a question stay together)",
        citation=_CITE,
    )
)
