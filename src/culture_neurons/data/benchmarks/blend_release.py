"""Reading BLEnD's short-answer release: ``annotations/<Country>_data.json`` (answers and votes)
and ``questions/<Country>_questions.csv`` (ids and topics), in the repository or the hub form."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import InputError
from ..countries import BLEND_COUNTRIES, resolve_country
from ..readers import Row, read_json, read_records

QUESTION_COLUMNS = ("ID", "Topic")
ENGLISH_LOCAL = {"UK", "USA"}  # countries whose local question text is English


def _country_from_filename(path: Path, suffix: str) -> str:
    stem = path.name[: -len(suffix)]
    return resolve_country(stem, "blend", where=str(path))


def read_annotations(folder: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """``{country: {question id: record}}`` from ``annotations/<Country>_data.json``.

    Accepts the repository form (an object keyed by id) and the hub form (a list with ``ID``).
    """
    files = sorted(folder.glob("*_data.json"))
    if not files:
        raise InputError(f"{folder}: no <Country>_data.json files (BLEnD annotations/)")
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for path in files:
        country = _country_from_filename(path, "_data.json")
        out[country] = annotation_records(read_json(path), str(path))
    return out


def annotation_records(data: Any, where: str) -> dict[str, dict[str, Any]]:
    """Check one country's annotation records (repository dict or hub list form); ``{id: record}``."""
    if isinstance(data, list):
        records = {}
        for i, rec in enumerate(data, start=1):
            if not isinstance(rec, dict) or "ID" not in rec:
                raise InputError(f"{where}: record {i}: expected an object with an 'ID' key")
            records[str(rec["ID"])] = rec
        data = records
    if not isinstance(data, dict) or not data:
        raise InputError(f"{where}: expected a non-empty JSON object keyed by question id")
    for qid, rec in data.items():
        for key in ("annotations", "idks"):
            if not isinstance(rec, dict) or key not in rec:
                raise InputError(f"{where}: question {qid}: missing key {key!r}")
        if not isinstance(rec["annotations"], list):
            raise InputError(f"{where}: question {qid}: 'annotations' must be a list")
    return data


def read_questions(folder: Path) -> dict[str, dict[str, Row]]:
    """``{country: {question id: row}}`` from ``questions/<Country>_questions.csv``."""
    files = sorted(folder.glob("*_questions.csv"))
    if not files:
        raise InputError(f"{folder}: no <Country>_questions.csv files (BLEnD questions/)")
    out: dict[str, dict[str, Row]] = {}
    for path in files:
        country = _country_from_filename(path, "_questions.csv")
        out[country] = {str(r.need("ID")): r for r in read_records(path, QUESTION_COLUMNS)}
    return out


def topics_from(questions: dict[str, dict[str, Row]]) -> dict[str, str]:
    """``{question id: topic}`` from the per-country question tables (the first country that has it)."""
    topics: dict[str, str] = {}
    for per in questions.values():
        for qid, row in per.items():
            topics.setdefault(qid, str(row.need("Topic")).strip())
    return topics


def answers_of(record: dict[str, Any]) -> list[tuple[str, int]]:
    """(first English answer, votes) per annotation, in file order (the file is sorted by votes)."""
    out = []
    for ann in record["annotations"]:
        en = ann.get("en_answers") or []
        if en and str(en[0]).strip():
            out.append((str(en[0]).strip(), int(ann.get("count", 0))))
    return out


def question_fails(record: dict[str, Any]) -> bool:
    """The authors' drop rule: "not applicable", more than 2 no-answers, or a top answer with under 2 votes."""
    idks = record.get("idks") or {}
    if idks.get("not-applicable", 0) > 0 or sum(int(v) for v in idks.values()) > 2:
        return True
    answers = answers_of(record)
    return bool(answers) and max(c for _, c in answers) < 2


def english_question(country: str, record: dict[str, Any]) -> str:
    """The English question text (the local text for English-speaking countries)."""
    if country in ENGLISH_LOCAL and record.get("question"):
        return str(record["question"]).strip()
    return str(record.get("en_question") or record.get("question") or "").strip()


def country_order(countries) -> list[str]:
    """Countries in BLEnD's canonical order (unknown ones last, alphabetically)."""
    rank = {c: i for i, c in enumerate(BLEND_COUNTRIES)}
    return sorted(countries, key=lambda c: (rank.get(c, len(rank)), c))


def country_slug(country: str) -> str:
    """The country part of a BLEnD item id (``South Korea`` -> ``South_Korea``); part of the ids, so fixed."""
    return country.replace(" ", "_")
