"""NormAd (Rao et al. 2024): is an action in a short story socially acceptable in a country?

Published columns read: ``ID, Country, Story, Gold Label`` (``yes``/``no``/``neutral``). The three
answers become options with number labels (1-3) in a deterministic shuffled order, so the gold
label is not always the same number. Split: within each (country, gold label), the first half of
the stories identify neurons.
"""

from __future__ import annotations

import re

from ...errors import InputError
from ..countries import resolve_country
from ..hub import HubSource, load_hub_rows
from ..readers import Row, find_file, read_records
from ..registry import Benchmark, LoadRequest, register
from ..splits import half_split_by
from ..templates import ASK_ANSWER_CHOICE, Item, Template, ask_answer, ask_choice, json_template

HUB_ID = "akhilayerukola/NormAd"
COLUMNS = ("ID", "Country", "Story", "Gold Label")
FILES = ("normad.csv", "NormAd.csv", "normad.parquet", "normad.jsonl", "train.csv")
OPTIONS = ("Yes, it is acceptable", "No, it is not acceptable", "Neither; it depends")
_LABELS = {"yes": 0, "no": 1, "neutral": 2}


_QUESTION_AT_END = re.compile(r"^(.*?[.!?\"'])\s+([^.!?]*\?)\s*$", re.S)


def split_story(story: str) -> tuple[str, str]:
    """(story, question): a final question in the story is used as the question."""
    story = story.strip()
    match = _QUESTION_AT_END.match(story)
    if match:
        return match.group(1).strip(), match.group(2).strip()
    return story, "Is what the person did socially acceptable there?"


def normad_items(rows: list[Row], countries: tuple[str, ...] | None) -> list[Item]:
    """One item per story."""
    parsed = []
    for row in rows:
        country = resolve_country(row.need("Country"), "normad", where=row.where)
        label = str(row.need("Gold Label")).strip().lower()
        if label not in _LABELS:
            raise InputError(f"{row.where}: Gold Label {label!r} is not one of yes, no, neutral")
        parsed.append((row, country, str(row.need("ID")).strip(), label))
    split = half_split_by(parsed, stratum=lambda p: (p[1], p[3]), key=lambda p: p[2])
    items = []
    for row, country, sid, label in parsed:
        if countries is not None and country not in countries:
            continue
        story, question = split_story(str(row.need("Story")))
        items.append(
            Item(
                id=f"normad/{sid}",
                group=country,
                split=split[sid],
                question=question,
                context=story,
                options=OPTIONS,
                answer_index=_LABELS[label],
                meta={"story_id": sid, "gold": label},
                source=row.where,
            )
        )
    return items


def load(req: LoadRequest) -> list[Item]:
    if req.path is None:
        rows = load_hub_rows(HubSource(HUB_ID, None, "train"), COLUMNS)
    else:
        path = req.path if req.path.is_file() else find_file(req.path, FILES)
        if path is None:
            csvs = sorted(p for p in req.path.iterdir() if p.suffix.lower() in (".csv", ".parquet", ".jsonl"))
            if len(csvs) != 1:
                raise InputError(f"{req.path}: expected one NormAd file (normad.csv), found {len(csvs)} candidates")
            path = csvs[0]
        rows = read_records(path, COLUMNS)
    return normad_items(rows, req.countries)


TEMPLATES: tuple[Template, ...] = (
    json_template(
        "normad1",
        "{context}\n\nThink about the social norms of {country}. {question}\n\n{options}\n\n",
        ask_answer("your answer"),
        0,
    ),
    json_template(
        "normad2",
        "Here is a short story set in {country}.\n\n{context}\n\nQuestion: {question}\n{options}\n\n",
        ask_choice("only"),
        1,
    ),
    json_template(
        "normad3",
        "Read the situation and judge it by the customs of {country}.\n\n{context}\n\n{question}\n"
        "Options:\n{options}\n\n",
        ASK_ANSWER_CHOICE,
        2,
    ),
    Template(
        "normad4",
        "Situation: {context}\n\nWould people in {country} find this acceptable?\n{options}\n\n"
        'Answer in JSON with the key "answer" and a single {label_word}.',
        answer_prefix='{"answer":"',
        slot=3,
    ),
)

register(
    Benchmark(
        name="normad",
        title="NormAd (social acceptability of stories, 75 countries)",
        kind="culture",
        load=load,
        templates=TEMPLATES,
        label_style="numbers",
        folder="normad",
        markers=FILES,
        files="normad.csv (ID, Country, Story, Gold Label)",
        hub=HubSource(HUB_ID, None, "train"),
        split_rule="first half of each (country, gold label) → identification; second half → heldout",
        citation="Rao et al. 2024, NormAd",
    )
)
