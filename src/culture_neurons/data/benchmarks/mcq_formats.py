"""Published multiple-choice formats as :class:`~.mcq_table.Doc` rows: the ``doc`` and ``read`` of a declaration.

Each function reads both the published file's fields and the hub copy's, where they differ, so one
declaration serves ``--data-dir`` and the hub:

- AI2 (ARC, OpenBookQA, CommonsenseQA): ``id, question{stem, choices[{text,label}]}, answerKey``, or
  the hub's flat ``question`` (OpenBookQA: ``question_stem``) with ``choices{text[], label[]}``;
- PIQA: ``goal, sol1, sol2`` with the labels in ``<name>-labels.lst`` beside the JSONL (the hub: ``label``);
- HellaSwag: ``ind, activity_label, ctx_a, ctx_b, endings, label``, preprocessed as lm-eval does;
- WinoGrande: ``qID, sentence, option1, option2, answer`` (``"1"``/``"2"``);
- BoolQ: ``question, title, answer`` (a JSON boolean), ``passage``.
"""

from __future__ import annotations

import re
from pathlib import Path

from ...errors import InputError
from ..readers import Row, read_records, read_text
from .mcq_table import Doc, Part, gold_of, need_text

# ---------------------------------------------------------------------------------------------
# AI2 (ARC, OpenBookQA, CommonsenseQA)


def ai2_choices(row: Row, choices: object) -> tuple[list[str], list[str]]:
    """Labels and texts of an AI2 ``choices`` value: a list of ``{label, text}`` or ``{label: [], text: []}``."""
    if isinstance(choices, list):
        labels = [str(c.get("label", "")).strip() for c in choices]
        texts = [str(c.get("text", "")).strip() for c in choices]
    elif isinstance(choices, dict):
        labels = [str(x).strip() for x in choices.get("label", [])]
        texts = [str(x).strip() for x in choices.get("text", [])]
    else:
        raise InputError(f"{row.where}: missing 'choices' (a {{label, text}} object or a list)")
    if len(labels) != len(texts) or len(labels) < 2 or not all(texts):
        raise InputError(f"{row.where}: 'choices' needs matching non-empty labels and texts")
    return labels, texts


def ai2_doc(row: Row, _index: int, _part: str) -> Doc:
    """An AI2-format row (nested or flat); the gold is the choice whose label is ``answerKey``."""
    stem = row.get("question_stem")  # OpenBookQA's hub copy
    question = stem if stem is not None else row.need("question")
    choices = row.get("choices")
    if isinstance(question, dict):  # the published nested form
        choices = question.get("choices")
        question = question.get("stem", "")
    labels, texts = ai2_choices(row, choices)
    key = str(row.need("answerKey")).strip()
    if key not in labels:
        raise InputError(f"{row.where}: answerKey {key!r} is not one of the choice labels {labels}")
    qid = str(row.need("id")).strip()
    return Doc(qid, str(question).strip(), tuple(texts), labels.index(key), meta={"question_id": qid})


# ---------------------------------------------------------------------------------------------
# PIQA

ZERO_ONE = {"0": 0, "1": 1}


def piqa_rows(path: Path, _part: Part) -> list[Row]:
    """PIQA rows with their ``label``: from the rows themselves (a hub export) or the aligned
    ``<name>-labels.lst`` beside the JSONL (``valid.jsonl`` → ``valid-labels.lst``)."""
    rows = read_records(path, ("goal", "sol1", "sol2"))
    if all("label" in r for r in rows):
        return rows
    labels_path = path.with_name(f"{path.stem}-labels.lst")
    if not labels_path.is_file():
        raise InputError(f"{path}: no {labels_path.name} beside it (PIQA's labels: one 0 or 1 per line, row by row)")
    lines = [(n, line.strip()) for n, line in enumerate(read_text(labels_path).splitlines(), start=1) if line.strip()]
    if len(lines) != len(rows):
        raise InputError(
            f"{labels_path}: {len(lines)} labels for the {len(rows)} rows of {path.name}; "
            "the two files must be aligned line by line"
        )
    for row, (lineno, label) in zip(rows, lines):
        if label not in ZERO_ONE:
            raise InputError(f"{labels_path}:{lineno}: label {label!r} is not 0 or 1")
        row["label"] = label
    return rows


def piqa_doc(row: Row, index: int, part: str) -> Doc:
    """A PIQA row: the goal, then each solution as a continuation (``label`` 0 = sol1).

    The texts are kept as published, trailing spaces included (230 of the validation split's
    solutions end in one), because lm-eval scores them so and its numbers are the reference.
    """
    choices = (str(row.need("sol1")), str(row.need("sol2")))
    return Doc(f"{part}/{index}", str(row.need("goal")), choices, gold_of(row, "label", ZERO_ONE))


# ---------------------------------------------------------------------------------------------
# HellaSwag


def hellaswag_text(text: str) -> str:
    """lm-eval's HellaSwag preprocessing: drop WikiHow's bracketed markers and double spaces."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def hellaswag_doc(row: Row, _index: int, _part: str) -> Doc:
    """A HellaSwag row as lm-eval builds it: ``activity_label: ctx_a Ctx_b``, then each ending."""
    endings = row.need("endings")
    if not isinstance(endings, list) or not all(isinstance(e, str) for e in endings):
        raise InputError(f"{row.where}: 'endings' must be a list of strings")
    ctx = f"{row.get('ctx_a') or ''} {str(row.get('ctx_b') or '').capitalize()}"
    query = hellaswag_text(f"{row.need('activity_label')}: {ctx}")
    gold = gold_of(row, "label", {str(i): i for i in range(len(endings))})
    ind = need_text(row, "ind")
    return Doc(ind, query, tuple(hellaswag_text(e) for e in endings), gold, meta={"ind": ind})


# ---------------------------------------------------------------------------------------------
# WinoGrande


def winogrande_doc(row: Row, index: int, part: str) -> Doc:
    """A WinoGrande row in the full-sentence form: the words before the blank are the prompt, and
    each option followed by the rest of the sentence is a continuation.

    lm-eval scores the rest of the sentence after each option instead (two prompts, one
    continuation), which a one-prompt scorer cannot express; see docs/data.md.
    """
    sentence = need_text(row, "sentence")
    blank = sentence.find("_")
    if blank < 0:
        raise InputError(f"{row.where}: the sentence has no blank '_' for the options to fill")
    before, after = sentence[:blank].rstrip(), sentence[blank + 1 :]
    if not before:
        raise InputError(f"{row.where}: the sentence starts with the blank, so there is no prompt before the options")
    choices = tuple((need_text(row, key) + after).rstrip() for key in ("option1", "option2"))
    # The hub copy has no qID, so the id is the row's place in its part, the same from either source.
    meta = {"question_id": str(row["qID"]).strip()} if row.get("qID") else {}
    return Doc(f"{part}/{index}", before, choices, gold_of(row, "answer", {"1": 0, "2": 1}), meta=meta)


# ---------------------------------------------------------------------------------------------
# BoolQ

NO_YES = ("no", "yes")


def boolq_doc(row: Row, index: int, part: str) -> Doc:
    """A BoolQ row: the passage, the question, then ``no`` / ``yes`` (lm-eval's SuperGLUE formulation)."""
    answer = row.get("answer")
    if not isinstance(answer, bool):
        raise InputError(f"{row.where}: answer {answer!r} is not true or false (a JSON boolean, as published)")
    meta = {"title": str(row["title"])} if row.get("title") else {}
    question, passage = str(row.need("question")), str(row.need("passage"))  # as published, like lm-eval
    return Doc(f"{part}/{index}", question, NO_YES, int(answer), context=passage, meta=meta)
