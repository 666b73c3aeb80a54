"""WorldValuesBench (Zhao et al. 2024): value questions of the World Values Survey, per country.

Inputs, as the WorldValuesBench pipeline (``dataset_construction/data_preparation.py``) writes them:

- ``question_metadata.json``: per question id, ``question``, ``category``, ``use_case``
  (``value``/``demographic``), ``answer_scale_min``, ``answer_scale_max``, ``answer_data_type``;
- ``full_value_qa.tsv``: one row per participant (``D_INTERVIEW``), one column per value question;
- ``full_demographic_qa.tsv``: the same participants with ``B_COUNTRY`` (country name as text).

The answer TSVs are built from the WVS wave 7 raw data, which may not be redistributed, so the
project ships none. For each (country, ordinal value question) with at least ``min_answers`` valid
answers, the gold is the country's majority answer (ties go to the smaller value). Split: per
country, the 40 questions whose answer distribution differs most from the all-country
distribution (KL divergence) identify neurons; the rest are held out.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import InputError
from ..countries import resolve_country
from ..options import BenchmarkOption
from ..readers import read_json
from ..registry import Benchmark, LoadRequest, register
from ..splits import kl_split
from ..templates import Item, Template

METADATA_FILE = "question_metadata.json"
META_KEYS = ("question", "use_case", "answer_scale_min", "answer_scale_max", "answer_data_type")


@dataclass(frozen=True)
class WvbQuestion:
    """One WorldValuesBench question's metadata."""

    id: str
    question: str
    category: str
    use_case: str
    scale_min: int | None
    scale_max: int | None
    data_type: str


def _int_or_none(value: Any, where: str, key: str) -> int | None:
    if value in ("", None):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: {key} {value!r} is not a number") from exc
    if not f.is_integer():
        raise InputError(f"{where}: {key} {value!r} is not a whole number")
    return int(f)


def load_metadata(path: str | Path) -> dict[str, WvbQuestion]:
    """Parse ``question_metadata.json``; a missing key or a bad scale names the question."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict) or not data:
        raise InputError(f"{path}: expected a non-empty JSON object keyed by question id")
    out: dict[str, WvbQuestion] = {}
    for qid, rec in data.items():
        where = f"{path}: question {qid}"
        if not isinstance(rec, dict):
            raise InputError(f"{where}: expected an object")
        missing = [k for k in META_KEYS if k not in rec]
        if missing:
            raise InputError(f"{where}: missing key(s) {', '.join(repr(k) for k in missing)}")
        lo = _int_or_none(rec["answer_scale_min"], where, "answer_scale_min")
        hi = _int_or_none(rec["answer_scale_max"], where, "answer_scale_max")
        if rec["answer_data_type"] == "ordinal" and (lo is None or hi is None or lo >= hi):
            raise InputError(f"{where}: an ordinal question needs answer_scale_min < answer_scale_max")
        out[qid] = WvbQuestion(
            qid,
            str(rec["question"]).strip(),
            str(rec.get("category", "")),
            str(rec["use_case"]),
            lo,
            hi,
            str(rec["answer_data_type"]),
        )
    return out


def _find(folder: Path, kind: str, part: str) -> Path:
    names = [f"{part}_{kind}_qa.tsv"]
    for base in (folder, folder / part, folder / "WorldValuesBench" / part, folder / "WorldValuesBench"):
        for name in names:
            if (base / name).is_file():
                return base / name
    raise InputError(
        f"{folder}: no {names[0]}; WorldValuesBench needs the answer TSVs that its pipeline builds from the "
        "WVS wave 7 data (full_value_qa.tsv and full_demographic_qa.tsv)"
    )


def _read_tsv(path: Path, columns: list[str] | None = None, text: bool = True):
    import pandas as pd

    kwargs: dict[str, Any] = {"dtype": str, "keep_default_na": False} if text else {"dtype": {"D_INTERVIEW": str}}
    try:
        frame = pd.read_csv(path, sep="\t", encoding="utf-8", usecols=columns, **kwargs)
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason}); re-save the file as UTF-8") from exc
    except pd.errors.EmptyDataError as exc:
        raise InputError(f"{path}: the file is empty") from exc
    except ValueError as exc:  # usecols names a missing column
        raise InputError(f"{path}:1: {exc}") from exc
    if frame.empty:
        raise InputError(f"{path}: no data rows after the header")
    return frame


def wvb_items(
    metadata: dict[str, WvbQuestion],
    values_path: Path,
    demographics_path: Path,
    countries: tuple[str, ...] | None,
    min_answers: int = 10,
    top_k: int = 40,
) -> list[Item]:
    """Items (one per country and ordinal value question) with the majority answer as gold."""
    import pandas as pd

    questions = [q for q in metadata.values() if q.use_case == "value" and q.data_type == "ordinal"]
    demo = _read_tsv(demographics_path, ["D_INTERVIEW", "B_COUNTRY"])
    values = _read_tsv(values_path, text=False)
    if "D_INTERVIEW" not in values.columns:
        raise InputError(f"{values_path}:1: missing column 'D_INTERVIEW'")
    present = [q for q in questions if q.id in values.columns]
    if not present:
        raise InputError(f"{values_path}:1: none of the metadata's value question columns (Q1, Q2, ...) are present")
    resolved: dict[str, str] = {}
    for i, raw in enumerate(demo["B_COUNTRY"], start=2):
        if raw not in resolved:
            resolved[raw] = resolve_country(raw, "worldvaluesbench", where=f"{demographics_path}:{i}")
    country_of = dict(zip(demo["D_INTERVIEW"], demo["B_COUNTRY"].map(resolved)))
    row_country = values["D_INTERVIEW"].map(country_of)
    if row_country.isna().any():
        i = int(row_country.isna().to_numpy().argmax())
        raise InputError(
            f"{values_path}:{i + 2}: participant {values['D_INTERVIEW'].iloc[i]!r} is not in {demographics_path}"
        )
    counts: dict[str, dict[str, Counter]] = defaultdict(dict)
    for q in present:
        col = pd.to_numeric(values[q.id], errors="coerce")
        ok = col.notna() & (col % 1 == 0) & (col >= q.scale_min) & (col <= q.scale_max)
        table = col[ok].astype(int).groupby(row_country[ok]).value_counts()
        for (country, value), n in table.items():
            counts[country].setdefault(q.id, Counter())[int(value)] = int(n)
    kept = {
        c: {q.id: per[q.id] for q in present if q.id in per and sum(per[q.id].values()) >= min_answers}
        for c, per in counts.items()
    }
    split = kl_split({c: per for c, per in kept.items() if per}, top_k=top_k)
    items: list[Item] = []
    for country in sorted(kept):
        if countries is not None and country not in countries:
            continue
        for q in present:
            cnt = kept[country].get(q.id)
            if not cnt:
                continue
            majority = min(cnt, key=lambda v: (-cnt[v], v))
            items.append(
                Item(
                    id=f"wvb/{country.replace(' ', '_')}/{q.id}",
                    group=country,
                    split=split[(country, q.id)],
                    question=q.question,
                    answers=(str(majority),),
                    scale_min=q.scale_min,
                    scale_max=q.scale_max,
                    meta={
                        "question_id": q.id,
                        "category": q.category,
                        "answer_counts": {str(k): cnt[k] for k in sorted(cnt)},
                    },
                )
            )
    return items


def load(req: LoadRequest) -> list[Item]:
    folder = req.path if req.path.is_dir() else req.path.parent
    meta_path = next(
        (
            p
            for p in (
                folder / METADATA_FILE,
                folder / "WorldValuesBench" / METADATA_FILE,
                folder / "dataset_construction" / METADATA_FILE,
            )
            if p.is_file()
        ),
        None,
    )
    if meta_path is None:
        raise InputError(f"{folder}: no {METADATA_FILE} (WorldValuesBench question metadata)")
    metadata = load_metadata(meta_path)
    part = req.part or "full"
    return wvb_items(
        metadata,
        _find(folder, "value", part),
        _find(folder, "demographic", part),
        req.countries,
        min_answers=req.options["min_answers"],
        top_k=req.options["top_k"],
    )


OPTIONS = (
    BenchmarkOption(
        "min_answers", int, 10, "keep a (country, question) only with at least this many valid answers", min=1
    ),
    BenchmarkOption("top_k", int, 40, "per country, this many most distinctive questions identify neurons", min=0),
)

TEMPLATES: tuple[Template, ...] = (
    Template(
        "wvb1",
        "Imagine you are a person living in {country}. {question}\n\n"
        'Answer with one whole number from {scale_min} to {scale_max}, in JSON: {{"answer":"<number>"}}',
        answer_prefix='{"answer":"',
    ),
    Template(
        "wvb2",
        "A survey in {country} asked people the following.\n\n{question}\n\n"
        "What would a typical person there answer? Reply with a number between {scale_min} and "
        '{scale_max} in the JSON field "answer".',
        answer_prefix='{"answer":"',
    ),
    Template(
        "wvb3",
        "You grew up in {country} and are taking part in a values survey.\n\nQuestion: {question}\n\n"
        'Respond with JSON only, holding a single number ({scale_min}-{scale_max}): {{"score":"<number>"}}',
        answer_prefix='{"score":"',
    ),
    Template(
        "wvb4",
        "{question}\n\nAnswer as most people in {country} would, using a whole number from {scale_min} "
        'to {scale_max}. Use the JSON form {{"answer":"<number>"}}.',
        answer_prefix='{"answer":"',
    ),
)

register(
    Benchmark(
        name="worldvaluesbench",
        title="WorldValuesBench (WVS wave 7 value questions, majority answer per country)",
        kind="scale",
        load=load,
        templates=TEMPLATES,
        label_style="numbers",
        folder="worldvaluesbench",
        markers=(METADATA_FILE, "full_value_qa.tsv"),
        parts=("full", "train", "valid", "test"),
        options=OPTIONS,
        files="question_metadata.json, full_value_qa.tsv, full_demographic_qa.tsv",
        split_rule="per country, the 40 questions with the largest KL(country || all) → identification; rest → heldout",
        citation="Zhao et al. 2024, WorldValuesBench",
    )
)
