"""General NLU benchmarks for the "NLU unaffected" comparison: CommonsenseQA, QNLI and MRPC.

They are evaluation sets: every example of the default part is ``heldout`` (no neurons are found
on them), and the group is the benchmark's name. ``part="train"`` gives training examples (split
``train``) for the fine-tuning stage. Each is one :class:`~.mcq_table.McqBenchmark` declaration.

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
from pathlib import Path

from ...errors import InputError
from ..hub import HubSource
from ..readers import Row, read_records, read_text
from ..templates import CLOZE_TEMPLATE, Template
from .mcq_formats import ai2_doc
from .mcq_table import LETTER_TEMPLATES, Doc, McqBenchmark, Part, records, register_mcq

#: The letter-answer templates of the NLU sets (kept under this name for the demo sets).
NLU_TEMPLATES = LETTER_TEMPLATES
YES_NO = ("Yes", "No")
#: QNLI's and MRPC's question already ends in the yes/no question, so the cloze form only adds "Answer:".
YES_NO_CLOZE = Template("cloze", "{question}\nAnswer:", slot=0)

COMMONSENSEQA = register_mcq(
    McqBenchmark(
        name="commonsenseqa",
        title="CommonsenseQA validation (5-way, NLU control)",
        short="CommonsenseQA",
        parts=(
            Part("validation", ("dev_rand_split.jsonl", "validation.jsonl", "validation.parquet"), 1221),
            Part("train", ("train_rand_split.jsonl", "train.jsonl", "train.parquet"), 9741),
        ),
        read=records(("id", "question", "answerKey")),
        doc=ai2_doc,
        cloze=CLOZE_TEMPLATE,
        letter_templates=LETTER_TEMPLATES,
        hub=HubSource("tau/commonsense_qa", None),
        hub_columns=("id", "question", "answerKey"),
        shuffle=True,
        folder="commonsenseqa",
        citation="Talmor et al. 2019, CommonsenseQA",
    )
)


def qnli_doc(row: Row, _index: int, part: str) -> Doc:
    """A QNLI row: does the sentence contain the answer to the question (``entailment`` = Yes)?"""
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
    return Doc(f"{part}/{idx}", question, YES_NO, gold, meta={"index": idx})


QNLI = register_mcq(
    McqBenchmark(
        name="qnli",
        title="GLUE QNLI validation (does the sentence answer the question?)",
        short="GLUE QNLI",
        parts=(Part("validation", ("dev.tsv", "validation.tsv"), 5463), Part("train", ("train.tsv",), 104743)),
        read=records(("index", "question", "sentence", "label"), delimiter="\t", quoting=csv.QUOTE_NONE),
        doc=qnli_doc,
        cloze=YES_NO_CLOZE,
        letter_templates=LETTER_TEMPLATES,
        hub=HubSource("nyu-mll/glue", "qnli"),
        hub_columns=("question", "sentence", "label"),
        shuffle=True,
        folder="qnli",
        files="dev.tsv (or train.tsv)",
        citation="Wang et al. 2018, GLUE",
    )
)

MRPC_COLUMNS = ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String")


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


def mrpc_rows(path: Path, part: Part) -> list[Row]:
    """The MSR file's rows of ``part``: the test file as it is; validation and train are the train
    file's rows whose id pair is, or is not, in ``mrpc_dev_ids.tsv`` beside it (GLUE's split)."""
    rows = read_records(path, MRPC_COLUMNS, delimiter="\t", quoting=csv.QUOTE_NONE)
    if part.name == "test":
        return rows
    ids_path = path.parent / "mrpc_dev_ids.tsv"
    if not ids_path.is_file():
        raise InputError(f"{path.parent}: no mrpc_dev_ids.tsv, which separates MRPC validation from train")
    dev = _dev_ids(ids_path)
    want = part.name == "validation"
    return [r for r in rows if ((r["#1 ID"].strip(), r["#2 ID"].strip()) in dev) == want]


def mrpc_doc(row: Row, _index: int, part: str) -> Doc:
    """An MRPC pair: do the two sentences mean the same thing (``Quality`` 1 = Yes)?"""
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
    return Doc(f"{part}/{pair}", question, YES_NO, 0 if label == "1" else 1, meta={"pair": pair})


MRPC = register_mcq(
    McqBenchmark(
        name="mrpc",
        title="MRPC test (are the two sentences paraphrases?)",
        short="MRPC",
        parts=(
            Part("test", ("msr_paraphrase_test.txt",), 1725),
            Part("validation", ("msr_paraphrase_train.txt",), 408),
            Part("train", ("msr_paraphrase_train.txt",), 3668),
        ),
        read=mrpc_rows,
        doc=mrpc_doc,
        cloze=YES_NO_CLOZE,
        letter_templates=LETTER_TEMPLATES,
        hub=HubSource("nyu-mll/glue", "mrpc"),
        hub_columns=("sentence1", "sentence2", "label"),
        shuffle=True,
        folder="mrpc",
        files="msr_paraphrase_test.txt (+ msr_paraphrase_train.txt, mrpc_dev_ids.tsv)",
        citation="Dolan & Brockett 2005, MRPC",
    )
)
