"""BLEnD (Myung et al. 2024): multiple-choice questions, their control set, and short answers.

Sources, in order of preference:

1. the official multiple-choice file (``mc_questions_file.csv``, or the hub config
   ``multiple-choice-questions``): columns ``MCQID, ID, country, prompt, choices, answer_idx``;
2. the short-answer release (``annotations/<Country>_data.json`` + ``questions/<Country>_questions.csv``),
   from which :func:`build_mcq_items` rebuilds the multiple-choice questions with the authors'
   published rules (see below);
3. the hub (``nayeon212/BLEnD``) when no local path is given.

Rules of the builder (from the BLEnD paper and code), with one substitution:

- a question id is dropped when, for any country, its top answer got fewer than 2 votes, any
  annotator marked it "not applicable", or more than 2 annotators gave no answer / "I don't know"
  (``filter_scope="country"`` applies this per country instead);
- the correct option is a most-voted English answer of the country (ties give several variants);
- the wrong options are top answers (at least 2 votes) of other countries for the same question,
  at most one per country, highest vote count first, that share no word with any of the country's
  own answers nor with each other. The authors also asked GPT-4 whether two answers are synonyms;
  here that check is **lexical**: lower-cased words with plural ``s`` removed and common function
  words ignored, plus substring containment (``apple``/``apples``, ``tea``/``green tea`` clash);
- questions about times (``HH:MM``), dates (``MM/DD``) or numbers ("Arabic numerals") keep only
  answers in that format;
- each combination of 3 wrong options gives a variant; at most ``max_variants`` (5) variants are kept
  per (country, question id). The authors padded questions with fewer than 3 wrong options with
  GPT-4-written dummy options; the builder skips those (country, question) pairs instead.

The split is by topic (``questions/`` ``Topic`` column): Food, Work life and Sport identify neurons.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from ...errors import InputError
from ..countries import resolve_country
from ..hub import HubSource, load_hub_rows, load_hub_splits
from ..options import BenchmarkOption
from ..readers import Row, find_file, read_records
from ..registry import Benchmark, LoadRequest, register
from ..splits import topic_split
from ..templates import (
    CLOZE_TEMPLATE,
    CONTROL_CLOZE_TEMPLATE,
    CONTROL_TEMPLATES,
    MCQ_TEMPLATES,
    Item,
    Template,
    control_item,
)
from .blend_builder import build_mcq_items, similar
from .blend_release import (
    QUESTION_COLUMNS,
    annotation_records,
    country_order,
    country_slug,
    english_question,
    read_annotations,
    read_questions,
    topics_from,
)

HUB_ID = "nayeon212/BLEnD"
MCQ_FILES = ("mc_questions_file.csv", "mc_questions_file.parquet", "mc_questions_file.jsonl", "mc_questions_file.json")
MCQ_COLUMNS = ("MCQID", "ID", "country", "prompt", "choices", "answer_idx")


# ---------------------------------------------------------------------------------------------
# Reading the official multiple-choice file.

_INSTRUCTION = re.compile(r"\s*Without any explanation.*$", re.S)


def _question_from_prompt(prompt: str) -> str:
    head = prompt.split("\n\n", 1)[0]
    return _INSTRUCTION.sub("", head).strip()


def _parse_choices(raw: Any, where: str) -> dict[str, str]:
    if isinstance(raw, dict):
        choices = raw
    else:
        try:
            choices = json.loads(raw)
        except (TypeError, json.JSONDecodeError) as exc:
            raise InputError(f"{where}: column 'choices' is not a JSON object of label → option") from exc
    if not isinstance(choices, dict) or len(choices) < 2:
        raise InputError(f"{where}: column 'choices' must map at least two labels to options")
    return {str(k).strip(): str(v).strip() for k, v in choices.items()}


def mcq_items_from_rows(
    rows: list[Row], topics: dict[str, str] | None, countries: tuple[str, ...] | None, max_variants: int = 5
) -> list[Item]:
    """Items from the official multiple-choice rows, keeping ``max_variants`` per (country, question)."""
    items: list[Item] = []
    seen: Counter = Counter()
    for row in rows:
        qid = str(row.need("ID")).strip()
        country = resolve_country(row.need("country"), "blend", where=row.where)
        if countries is not None and country not in countries:
            continue
        choices = _parse_choices(row.need("choices"), row.where)
        labels = list(choices)
        answer = str(row.need("answer_idx")).strip()
        if answer not in choices:
            raise InputError(f"{row.where}: answer_idx {answer!r} is not one of the choice labels {labels}")
        topic = str(row.get("Topic") or row.get("topic") or "").strip() or (topics or {}).get(qid)
        if not topic:
            raise InputError(
                f"{row.where}: no topic for question {qid}; put BLEnD's questions/ folder "
                "(<Country>_questions.csv with a Topic column) next to the multiple-choice file"
            )
        if seen[(country, qid)] >= max_variants:
            continue
        variant = seen[(country, qid)]
        seen[(country, qid)] += 1
        options = tuple(choices[k] for k in labels)
        if len(set(o.lower() for o in options)) != len(options):
            raise InputError(f"{row.where}: repeated option text in 'choices'")
        items.append(
            Item(
                id=f"blend/{country_slug(country)}/{qid}/v{variant}",
                group=country,
                split=topic_split(topic),
                question=_question_from_prompt(str(row.need("prompt"))),
                options=options,
                answer_index=labels.index(answer),
                meta={"question_id": qid, "topic": topic, "mcq_id": str(row.get("MCQID", ""))},
            )
        )
    return items


# ---------------------------------------------------------------------------------------------
# Short-answer questions.


def saq_items(
    annotations: dict[str, dict[str, dict[str, Any]]],
    topics: dict[str, str],
    countries: tuple[str, ...] | None,
    language: str = "en",
) -> list[Item]:
    """One item per (country, question) with at least one annotated answer."""
    if language not in ("en", "local"):
        raise InputError(f"blend-saq: language must be 'en' or 'local', not {language!r}")
    items: list[Item] = []
    for country in country_order(annotations):
        if countries is not None and country not in countries:
            continue
        for qid, record in annotations[country].items():
            if qid not in topics:
                continue
            english = [str(a).strip() for ann in record["annotations"] for a in (ann.get("en_answers") or [])]
            local = [str(a).strip() for ann in record["annotations"] for a in (ann.get("answers") or [])]
            answers = tuple(dict.fromkeys(a for a in english + local if a))
            if not answers:
                continue
            question = (
                english_question(country, record) if language == "en" else str(record.get("question") or "").strip()
            )
            items.append(
                Item(
                    id=f"blend-saq/{country_slug(country)}/{qid}",
                    group=country,
                    split=topic_split(topics[qid]),
                    question=question,
                    answers=answers,
                    meta={"question_id": qid, "topic": topics[qid]},
                )
            )
    return items


# ---------------------------------------------------------------------------------------------
# Sources.


def _hub_topics() -> dict[str, str]:
    splits = load_hub_splits(HubSource(HUB_ID, "short-answer-questions", None), QUESTION_COLUMNS)
    rows = next(iter(splits.values()))
    return {str(r.need("ID")): str(r.need("Topic")).strip() for r in rows}


def _hub_annotations() -> dict[str, dict[str, dict[str, Any]]]:
    splits = load_hub_splits(HubSource(HUB_ID, "annotations", None), ("ID", "annotations", "idks"))
    out = {}
    for code, rows in splits.items():
        country = resolve_country(code, "blend", where=f"hub {HUB_ID}[annotations/{code}]")
        out[country] = annotation_records([dict(r) for r in rows], f"hub {HUB_ID}[annotations/{code}]")
    return out


def _local_topics(path: Path) -> dict[str, str] | None:
    folder = path if path.is_dir() else path.parent
    for candidate in (folder / "questions", folder.parent / "questions"):
        if candidate.is_dir():
            return topics_from(read_questions(candidate))
    return None


def load_mcq(req: LoadRequest) -> list[Item]:
    """BLEnD multiple-choice items from the official file, the short-answer release, or the hub."""
    max_variants, filter_scope = req.options["max_variants"], req.options["filter_scope"]
    if req.path is None:
        rows = load_hub_rows(HubSource(HUB_ID, "multiple-choice-questions", None), MCQ_COLUMNS)
        topics = None if any("Topic" in r or "topic" in r for r in rows[:1]) else _hub_topics()
        return mcq_items_from_rows(rows, topics, req.countries, max_variants)
    mcq_file = req.path if req.path.is_file() else find_file(req.path, MCQ_FILES)
    if mcq_file is not None:
        rows = read_records(mcq_file, MCQ_COLUMNS)
        return mcq_items_from_rows(rows, _local_topics(mcq_file), req.countries, max_variants)
    ann_dir, q_dir = req.path / "annotations", req.path / "questions"
    if ann_dir.is_dir() and q_dir.is_dir():
        return build_mcq_items(
            read_annotations(ann_dir),
            topics_from(read_questions(q_dir)),
            req.countries,
            max_variants=max_variants,
            filter_scope=filter_scope,
        )
    raise InputError(
        f"{req.path}: no BLEnD data found; expected {MCQ_FILES[0]} or the annotations/ and questions/ folders"
    )


def load_control(req: LoadRequest) -> list[Item]:
    """The control set: every multiple-choice item with its question removed."""
    return [control_item(it) for it in load_mcq(req)]


def load_saq(req: LoadRequest) -> list[Item]:
    """BLEnD short-answer items from ``annotations/`` + ``questions/`` or the hub."""
    language = req.options["language"]
    if req.path is None:
        return saq_items(_hub_annotations(), _hub_topics(), req.countries, language)
    folder = req.path if req.path.is_dir() else req.path.parent
    ann_dir, q_dir = folder / "annotations", folder / "questions"
    if not (ann_dir.is_dir() and q_dir.is_dir()):
        raise InputError(f"{folder}: BLEnD short-answer questions need the annotations/ and questions/ folders")
    return saq_items(read_annotations(ann_dir), topics_from(read_questions(q_dir)), req.countries, language)


SAQ_TEMPLATES: tuple[Template, ...] = (
    Template("saq1", "{question} Give one short answer, a word or a short phrase, without explaining it.\n\nAnswer:"),
    Template(
        "saq2",
        "You are from {country}. Answer this question in a few words, with no explanation.\n\n"
        "Question: {question}\nAnswer:",
    ),
    Template("saq3", "A question about daily life in {country}:\n{question}\n\nReply with just the answer.\nAnswer:"),
    Template(
        "saq4",
        "Answer the question below the way most local people would, as briefly as you can.\n\n{question}\nAnswer:",
    ),
)

MCQ_OPTIONS = (
    BenchmarkOption(
        "max_variants", int, 5, "at most this many variants (wrong-option combinations) per (country, question)", min=1
    ),
    BenchmarkOption(
        "filter_scope",
        str,
        "all",
        "drop a badly answered question for every country (all) or only for that country (country)",
        choices=("all", "country"),
    ),
)
SAQ_OPTIONS = (
    BenchmarkOption(
        "language",
        str,
        "en",
        "the question text in English (en) or in the local language (local)",
        choices=("en", "local"),
    ),
)

_MARKERS = ("annotations", "questions") + MCQ_FILES
_FILES = "mc_questions_file.csv, or the annotations/ and questions/ folders"
_SPLIT = "topic: Food, Work life, Sport → identification; Education, Family, Holidays → heldout"
_CITE = "Myung et al. 2024, BLEnD (NeurIPS Datasets and Benchmarks)"

BLEND = register(
    Benchmark(
        name="blend",
        title="BLEnD multiple-choice questions (16 countries/regions)",
        kind="culture",
        load=load_mcq,
        templates=MCQ_TEMPLATES,
        extra_templates=(CLOZE_TEMPLATE,),
        folder="blend",
        markers=_MARKERS,
        files=_FILES,
        hub=HubSource(HUB_ID, "multiple-choice-questions", None),
        options=MCQ_OPTIONS,
        split_rule=_SPLIT + "; at most 5 variants per (country, question)",
        citation=_CITE,
    )
)
BLEND_CONTROL = register(
    Benchmark(
        name="blend-control",
        title="BLEnD control: the same options with the question removed",
        kind="control",
        load=load_control,
        templates=CONTROL_TEMPLATES,
        extra_templates=(CONTROL_CLOZE_TEMPLATE,),
        folder="blend",
        markers=_MARKERS,
        files=_FILES,
        hub=HubSource(HUB_ID, "multiple-choice-questions", None),
        options=MCQ_OPTIONS,
        split_rule="as blend",
        citation=_CITE,
    )
)
BLEND_SAQ = register(
    Benchmark(
        name="blend-saq",
        title="BLEnD short-answer questions (generation)",
        kind="generation",
        load=load_saq,
        templates=SAQ_TEMPLATES,
        folder="blend",
        markers=("annotations", "questions"),
        files="the annotations/ and questions/ folders",
        hub=HubSource(HUB_ID, "annotations", None),
        options=SAQ_OPTIONS,
        split_rule=_SPLIT,
        citation=_CITE,
    )
)

__all__ = ["build_mcq_items", "mcq_items_from_rows", "read_annotations", "read_questions", "saq_items", "similar"]
