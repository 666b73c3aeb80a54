"""CountryRC: reading comprehension whose answer is the country named in the passage.

It exposes neurons that merely track country names. The project ships its own passages
(``data/builtin/countryrc.json``, 56 short passages in which a person's trip, job or study places
them in ``{country}``; some also mention a distractor ``{country_dummy}`` in passing). Each passage
is rendered once per target country; the options are the country plus 3 other BLEnD countries
(the passage's distractor country among them), chosen by a stable hash. A region is never a
distractor for the country it lies in (West Java for Indonesia).

An external file of the same kind can replace the built-in one: a JSON list of
``{id, context, question}`` objects whose context contains ``{country}`` and optionally
``{country_dummy}``. Split: the first half of the passages identify neurons.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from ...errors import InputError
from ..countries import BLEND_COUNTRIES, TARGET_COUNTRIES, get_country
from ..readers import Row, read_json_records
from ..registry import Benchmark, LoadRequest, register
from ..splits import first_half_split
from ..templates import Item, Template, stable_seed

PLACEHOLDERS = {"country", "country_dummy"}
_FIELD = re.compile(r"\{([^{}]*)\}")


def builtin_passages_path() -> Path:
    """Path of the project's own passages file."""
    return Path(str(resources.files("culture_neurons.data") / "builtin" / "countryrc.json"))


def read_passages(path: Path) -> list[Row]:
    """Validated passage records; a bad record names the file and record number."""
    rows = read_json_records(path, ("id", "context", "question"))
    seen: set[str] = set()
    for row in rows:
        pid = str(row.need("id")).strip()
        if pid in seen:
            raise InputError(f"{row.where}: duplicate id {pid!r}")
        seen.add(pid)
        context, question = str(row.need("context")), str(row.need("question"))
        if "{country}" not in context:
            raise InputError(f"{row.where}: 'context' must contain the placeholder {{country}}")
        for text in (context, question):
            unknown = set(_FIELD.findall(text)) - PLACEHOLDERS
            if unknown:
                raise InputError(
                    f"{row.where}: unknown placeholder {{{sorted(unknown)[0]}}}; "
                    "only {country} and {country_dummy} are allowed"
                )
    return rows


def _pool(target: str) -> list[str]:
    parent = get_country(target).parent
    return [c for c in BLEND_COUNTRIES if c != target and get_country(c).parent != target and c != parent]


def countryrc_items(rows: list[Row], countries: tuple[str, ...] | None) -> list[Item]:
    """One item per (passage, country)."""
    split = first_half_split([str(r["id"]).strip() for r in rows])
    targets = countries if countries is not None else TARGET_COUNTRIES
    items: list[Item] = []
    for row in rows:
        pid = str(row["id"]).strip()
        for target in targets:
            pool = _pool(target)
            ranked = sorted(pool, key=lambda c: stable_seed("countryrc", pid, target, c))
            dummy = ranked[0] if "{country_dummy}" in row["context"] + row["question"] else None
            distractors = ranked[:3]

            def fill(text: str, target: str = target, dummy: str | None = dummy) -> str:
                text = text.replace("{country}", get_country(target).name)
                return text.replace("{country_dummy}", get_country(dummy).name) if dummy else text

            context = fill(str(row["context"]).strip())
            options = (get_country(target).option,) + tuple(get_country(c).option for c in distractors)
            items.append(
                Item(
                    id=f"countryrc/{pid}/{target.replace(' ', '_')}",
                    group=target,
                    split=split[pid],
                    question=fill(str(row["question"]).strip()),
                    context=context[:1].upper() + context[1:],
                    options=options,
                    answer_index=0,
                    meta={"passage_id": pid, **({"dummy_country": dummy} if dummy else {})},
                )
            )
    return items


def load(req: LoadRequest) -> list[Item]:
    path = builtin_passages_path() if req.path is None else req.path
    if path.is_dir():
        candidates = sorted(path.glob("*.json"))
        if len(candidates) != 1:
            raise InputError(f"{path}: expected one CountryRC JSON file, found {len(candidates)}")
        path = candidates[0]
    return countryrc_items(read_passages(path), req.countries)


TEMPLATES: tuple[Template, ...] = (
    Template(
        "rc1",
        "Read the passage and answer the question.\n\nPassage: {context}\n\nQuestion: {question}\n{options}\n\n"
        'Reply in JSON with the {label_word} of the correct option, as in {{"answer":"<{label_word}>"}}.',
        answer_prefix='{"answer":"',
        slot=0,
    ),
    Template(
        "rc2",
        "{context}\n\n{question}\n\nOptions:\n{options}\n\n"
        'Give just the {label_word} ({label_list}) in the JSON field "choice".',
        answer_prefix='{"choice":"',
        slot=1,
    ),
    Template(
        "rc3",
        "Here is a short text.\n\n{context}\n\nAnswer from the text alone. {question}\n{options}\n\n"
        'Respond with JSON only: {{"answer_choice":"<{label_word}>"}}',
        answer_prefix='{"answer_choice":"',
        slot=2,
    ),
)

#: Cloze form for the answer/choice targets: the options are the continuations, not listed.
CLOZE_RC = Template("cloze", "Passage: {context}\n\nQuestion: {question}\nAnswer:", slot=0)

register(
    Benchmark(
        name="countryrc",
        title="CountryRC: the answer is the country named in the passage (project-written)",
        kind="countryrc",
        load=load,
        templates=TEMPLATES,
        extra_templates=(CLOZE_RC,),
        folder="countryrc",
        files="a JSON list of {id, context, question}",
        builtin=True,
        split_rule="first half of the passages → identification; second half → heldout",
        citation="project-written passages (after the CountryRC idea of Yamamoto et al. 2026)",
    )
)
