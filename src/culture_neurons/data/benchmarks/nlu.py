"""General NLU benchmarks for the "NLU unaffected" comparison: CommonsenseQA, QNLI and MRPC.

They are evaluation sets: every example of the default part is ``heldout`` (no neurons are found
on them), and the group is the benchmark's name. ``part="train"`` gives training examples (split
``train``) for the fine-tuning stage.

- CommonsenseQA (Talmor et al. 2019): ``dev_rand_split.jsonl`` / ``train_rand_split.jsonl``, in the
  flat form (``question``, ``choices{label,text}``, ``answerKey``) or the original nested form
  (``question{stem, choices[{label,text}]}``); hub ``tau/commonsense_qa``.
- QNLI (GLUE): ``dev.tsv`` / ``train.tsv`` with ``index, question, sentence, label``
  (``entailment``/``not_entailment``), read with quoting disabled; hub ``nyu-mll/glue`` ``qnli``
  (0 = entailment).
- MRPC (Dolan & Brockett 2005): ``msr_paraphrase_test.txt`` (test) and ``msr_paraphrase_train.txt``
  split by ``mrpc_dev_ids.tsv`` into validation and train, as GLUE does; ``Quality`` 1 = paraphrase.
  The hub's GLUE test split has no labels, so the test part needs the MSR files.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

from ...errors import InputError
from ..hub import HubSource, load_hub_rows
from ..readers import Row, find_file, read_records, read_text
from ..registry import Benchmark, LoadRequest, register
from ..splits import HELDOUT, TRAIN
from ..templates import ASK_ANSWER_CHOICE, CLOZE_TEMPLATE, Item, Template, ask_answer, ask_choice, json_template

NLU_TEMPLATES: tuple[Template, ...] = (
    json_template("nlu1", "{question}\n\n{options}\n\n", ask_answer("the best answer"), 0),
    json_template(
        "nlu2", "Answer the multiple-choice question.\n\nQuestion: {question}\n{options}\n\n", ask_choice("only"), 1
    ),
    json_template(
        "nlu3",
        "Pick the option that best answers the question below.\n\n{question}\n\nOptions:\n{options}\n\n",
        ASK_ANSWER_CHOICE,
        2,
    ),
)


def _hub_or_local(
    req: LoadRequest,
    hub: HubSource,
    hub_columns: tuple[str, ...],
    files: tuple[str, ...],
    what: str,
    read: Callable[[Path], list[Row]],
) -> list[Row]:
    """The rows of one part: from the hub without a local path, else from ``req.path`` (a file, or
    a folder holding one of ``files``)."""
    if req.path is None:
        return load_hub_rows(hub, hub_columns)
    path = req.path if req.path.is_file() else find_file(req.path, files)
    if path is None:
        raise InputError(f"{req.path}: no {files[0]} ({what})")
    return read(path)


def _split_of(part: str) -> str:
    return TRAIN if part == "train" else HELDOUT


# ---------------------------------------------------------------------------------------------
# CommonsenseQA

CSQA_FILES = {
    "validation": ("dev_rand_split.jsonl", "validation.jsonl", "validation.parquet"),
    "train": ("train_rand_split.jsonl", "train.jsonl", "train.parquet"),
}


def csqa_items(rows: list[Row], part: str) -> list[Item]:
    items = []
    for row in rows:
        question = row.need("question")
        choices = row.get("choices")
        if isinstance(question, dict):  # the original nested form
            choices = question.get("choices")
            question = question.get("stem", "")
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
        key = str(row.need("answerKey")).strip()
        if key not in labels:
            raise InputError(f"{row.where}: answerKey {key!r} is not one of the choice labels {labels}")
        qid = str(row.need("id")).strip()
        items.append(
            Item(
                id=f"commonsenseqa/{qid}",
                group="commonsenseqa",
                split=_split_of(part),
                question=str(question).strip(),
                options=tuple(texts),
                answer_index=labels.index(key),
                meta={"question_id": qid},
                source=row.where,
            )
        )
    return items


def load_csqa(req: LoadRequest) -> list[Item]:
    part = req.part or "validation"
    columns = ("id", "question", "answerKey")
    rows = _hub_or_local(
        req,
        HubSource("tau/commonsense_qa", None, part),
        columns,
        CSQA_FILES[part],
        f"CommonsenseQA {part}",
        lambda path: read_records(path, columns),
    )
    return csqa_items(rows, part)


# ---------------------------------------------------------------------------------------------
# QNLI

QNLI_FILES = {"validation": ("dev.tsv", "validation.tsv"), "train": ("train.tsv",)}
YES_NO = ("Yes", "No")


def qnli_items(rows: list[Row], part: str) -> list[Item]:
    items = []
    for row in rows:
        label = row.get("label")
        text = str(label).strip().lower()
        if text in ("entailment", "0"):
            gold = 0
        elif text in ("not_entailment", "1"):
            gold = 1
        else:
            raise InputError(f"{row.where}: label {label!r} is not entailment / not_entailment (or 0 / 1)")
        idx = str(row.get("index", row.get("idx", ""))).strip()
        if not idx:
            raise InputError(f"{row.where}: empty value in column 'index'")
        question = (
            f"Question: {str(row.need('question')).strip()}\nSentence: {str(row.need('sentence')).strip()}\n"
            "Does the sentence contain the answer to the question?"
        )
        items.append(
            Item(
                id=f"qnli/{part}/{idx}",
                group="qnli",
                split=_split_of(part),
                question=question,
                options=YES_NO,
                answer_index=gold,
                meta={"index": idx},
                source=row.where,
            )
        )
    return items


def load_qnli(req: LoadRequest) -> list[Item]:
    part = req.part or "validation"
    rows = _hub_or_local(
        req,
        HubSource("nyu-mll/glue", "qnli", part),
        ("question", "sentence", "label"),
        QNLI_FILES[part],
        f"GLUE QNLI {part}",
        lambda path: read_records(
            path, ("index", "question", "sentence", "label"), delimiter="\t", quoting=csv.QUOTE_NONE
        ),
    )
    return qnli_items(rows, part)


# ---------------------------------------------------------------------------------------------
# MRPC

MRPC_COLUMNS = ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String")


def mrpc_items(rows: list[Row], part: str) -> list[Item]:
    items = []
    for row in rows:
        label = str(row.get("Quality", row.get("label", ""))).strip()
        if label not in ("0", "1"):
            raise InputError(
                f"{row.where}: label {label!r} is not 0 or 1 (MRPC test labels are not on the hub; "
                "use msr_paraphrase_test.txt)"
            )
        a = str(row.get("#1 String", row.get("sentence1", ""))).strip()
        b = str(row.get("#2 String", row.get("sentence2", ""))).strip()
        if not a or not b:
            raise InputError(f"{row.where}: empty sentence")
        pair = f"{row.get('#1 ID', row.get('idx', ''))}-{row.get('#2 ID', '')}".strip("-")
        question = f"Sentence 1: {a}\nSentence 2: {b}\nDo the two sentences mean the same thing?"
        items.append(
            Item(
                id=f"mrpc/{part}/{pair}",
                group="mrpc",
                split=_split_of(part),
                question=question,
                options=YES_NO,
                answer_index=0 if label == "1" else 1,
                meta={"pair": pair},
                source=row.where,
            )
        )
    return items


def _dev_ids(path: Path) -> set[tuple[str, str]]:
    out = set()
    for lineno, line in enumerate(read_text(path).splitlines(), start=1):
        parts = line.strip().split("\t")
        if not line.strip():
            continue
        if len(parts) != 2:
            raise InputError(f"{path}:{lineno}: expected two tab-separated sentence ids")
        out.add((parts[0].strip(), parts[1].strip()))
    return out


def load_mrpc(req: LoadRequest) -> list[Item]:
    part = req.part or "test"
    if req.path is None:
        return mrpc_items(
            load_hub_rows(HubSource("nyu-mll/glue", "mrpc", part), ("sentence1", "sentence2", "label")), part
        )
    folder = req.path if req.path.is_dir() else req.path.parent
    name = "msr_paraphrase_test.txt" if part == "test" else "msr_paraphrase_train.txt"
    path = req.path if req.path.is_file() else folder / name
    if not path.is_file():
        raise InputError(f"{folder}: no {name} (MRPC {part})")
    rows = read_records(path, MRPC_COLUMNS, delimiter="\t", quoting=csv.QUOTE_NONE)
    if part != "test":
        ids_path = folder / "mrpc_dev_ids.tsv"
        if not ids_path.is_file():
            raise InputError(f"{folder}: no mrpc_dev_ids.tsv, which separates MRPC validation from train")
        dev = _dev_ids(ids_path)
        keep = (
            (lambda r: (r["#1 ID"].strip(), r["#2 ID"].strip()) in dev)
            if part == "validation"
            else (lambda r: (r["#1 ID"].strip(), r["#2 ID"].strip()) not in dev)
        )
        rows = [r for r in rows if keep(r)]
    return mrpc_items(rows, part)


register(
    Benchmark(
        name="commonsenseqa",
        title="CommonsenseQA validation (5-way, NLU control)",
        kind="nlu",
        load=load_csqa,
        templates=NLU_TEMPLATES,
        extra_templates=(CLOZE_TEMPLATE,),
        folder="commonsenseqa",
        markers=CSQA_FILES["validation"] + CSQA_FILES["train"],
        files="dev_rand_split.jsonl",
        hub=HubSource("tau/commonsense_qa", None, "validation"),
        by_country=False,
        parts=("validation", "train"),
        split_rule="evaluation only: all heldout",
        citation="Talmor et al. 2019, CommonsenseQA",
    )
)
register(
    Benchmark(
        name="qnli",
        title="GLUE QNLI validation (does the sentence answer the question?)",
        kind="nlu",
        load=load_qnli,
        templates=NLU_TEMPLATES,
        folder="qnli",
        markers=("dev.tsv", "train.tsv"),
        files="dev.tsv (or train.tsv)",
        hub=HubSource("nyu-mll/glue", "qnli", "validation"),
        by_country=False,
        parts=("validation", "train"),
        split_rule="evaluation only: all heldout (part train: train)",
        citation="Wang et al. 2018, GLUE",
    )
)
register(
    Benchmark(
        name="mrpc",
        title="MRPC test (are the two sentences paraphrases?)",
        kind="nlu",
        load=load_mrpc,
        templates=NLU_TEMPLATES,
        folder="mrpc",
        markers=("msr_paraphrase_test.txt", "msr_paraphrase_train.txt"),
        files="msr_paraphrase_test.txt (+ msr_paraphrase_train.txt, mrpc_dev_ids.tsv)",
        hub=HubSource("nyu-mll/glue", "mrpc", "test"),
        by_country=False,
        parts=("test", "validation", "train"),
        split_rule="evaluation only: all heldout (part train: train)",
        citation="Dolan & Brockett 2005, MRPC",
    )
)
