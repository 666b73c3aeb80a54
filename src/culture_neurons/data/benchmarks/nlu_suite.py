"""NLU benchmarks that small models can do: ARC, PIQA, OpenBookQA, HellaSwag, WinoGrande, BoolQ.

Each is one :class:`~.mcq_table.McqBenchmark` declaration with lm-eval's zero-shot formulation as
its ``cloze`` template (the prompt, then each option as a continuation), lm-eval's hub dataset, the
published file names, and the published split sizes. The options keep their published order (the
sources already randomised it), so the gold index is the published one.

| benchmark | prompt (``cloze``) | choices | metric |
|---|---|---|---|
| ARC-Easy, ARC-Challenge | ``Question: {question}\\nAnswer:`` | 3 to 5 answer texts | acc_norm |
| PIQA | ``Question: {goal}\\nAnswer:`` | sol1, sol2 | acc |
| OpenBookQA | ``{question_stem}`` | 4 answer texts | acc_norm |
| HellaSwag | ``{activity_label}: {ctx_a} {Ctx_b}`` | 4 endings | acc_norm |
| WinoGrande | the words before the blank | each option + the rest of the sentence | acc |
| BoolQ | ``{passage}\\nQuestion: {question}?\\nAnswer:`` | no, yes | acc |
"""

from __future__ import annotations

from ..hub import HubSource
from ..templates import CLOZE_TEMPLATE, Template
from .mcq_formats import ai2_doc, boolq_doc, hellaswag_doc, piqa_doc, piqa_rows, winogrande_doc
from .mcq_table import LETTER_TEMPLATES, McqBenchmark, Part, records, register_mcq

#: The prompt is the question text itself (OpenBookQA's stem, HellaSwag's context, WinoGrande's start).
PLAIN_CLOZE = Template("cloze", "{question}", slot=0)
BOOLQ_CLOZE = Template("cloze", "{context}\nQuestion: {question}?\nAnswer:", slot=0)

AI2_COLUMNS = ("id", "question", "answerKey")


def arc(variant: str, what: str, test: int, dev: int, train: int) -> McqBenchmark:
    """ARC-Easy or ARC-Challenge: the AI2 release's file names (``ARC-Easy-Test.jsonl``), then plain
    ones (``test.jsonl``, as a hub export is named), and the hub config of the same name."""
    return McqBenchmark(
        name=variant.lower(),
        title=f"{variant} test (grade-school science{what}, 3-5 way; acc_norm)",
        short=variant,
        parts=(
            Part("test", (f"{variant}-Test.jsonl", "test.jsonl", "test.parquet"), test),
            Part("validation", (f"{variant}-Dev.jsonl", "validation.jsonl", "validation.parquet"), dev),
            Part("train", (f"{variant}-Train.jsonl", "train.jsonl", "train.parquet"), train),
        ),
        read=records(AI2_COLUMNS),
        doc=ai2_doc,
        cloze=CLOZE_TEMPLATE,
        letter_templates=LETTER_TEMPLATES,
        hub=HubSource("allenai/ai2_arc", variant),
        hub_columns=("id", "question", "choices", "answerKey"),
        metric="acc_norm",
        n_choices=(3, 4, 5),
        folder=variant.lower().replace("-", "_"),
        citation="Clark et al. 2018, ARC",
    )


ARC_EASY = register_mcq(arc("ARC-Easy", "", 2376, 570, 2251))
ARC_CHALLENGE = register_mcq(arc("ARC-Challenge", ", hard", 1172, 299, 1119))
PIQA = register_mcq(
    McqBenchmark(
        name="piqa",
        title="PIQA validation (physical commonsense, 2-way)",
        short="PIQA",
        parts=(Part("validation", ("valid.jsonl",), 1838), Part("train", ("train.jsonl",), 16113)),
        read=piqa_rows,
        doc=piqa_doc,
        cloze=CLOZE_TEMPLATE,
        letter_templates=LETTER_TEMPLATES,
        hub=HubSource("baber/piqa", None),  # lm-eval's copy; the authors' ybisk/piqa is a loading script
        hub_columns=("goal", "sol1", "sol2", "label"),
        n_choices=(2,),
        folder="piqa",
        files="valid.jsonl + valid-labels.lst",
        citation="Bisk et al. 2020, PIQA",
    )
)
OPENBOOKQA = register_mcq(
    McqBenchmark(
        name="openbookqa",
        title="OpenBookQA test (elementary science, 4-way; acc_norm)",
        short="OpenBookQA",
        parts=(
            Part("test", ("test.jsonl",), 500),
            Part("validation", ("dev.jsonl",), 500),
            Part("train", ("train.jsonl",), 4957),
        ),
        read=records(AI2_COLUMNS),
        doc=ai2_doc,
        cloze=PLAIN_CLOZE,
        letter_templates=LETTER_TEMPLATES,
        hub=HubSource("allenai/openbookqa", "main"),
        hub_columns=("id", "question_stem", "choices", "answerKey"),
        metric="acc_norm",
        n_choices=(4,),
        folder="openbookqa",
        citation="Mihaylov et al. 2018, OpenBookQA",
    )
)
HELLASWAG = register_mcq(
    McqBenchmark(
        name="hellaswag",
        title="HellaSwag validation (which ending follows, 4-way; acc_norm)",
        short="HellaSwag",
        parts=(
            Part("validation", ("hellaswag_val.jsonl", "validation.jsonl"), 10042),
            Part("train", ("hellaswag_train.jsonl", "train.jsonl"), 39905),
        ),
        read=records(("ind", "activity_label", "ctx_a", "ctx_b", "endings", "label")),
        doc=hellaswag_doc,
        cloze=PLAIN_CLOZE,
        hub=HubSource("Rowan/hellaswag", None),
        hub_columns=("ind", "activity_label", "ctx_a", "ctx_b", "endings", "label"),
        metric="acc_norm",
        n_choices=(4,),
        folder="hellaswag",
        citation="Zellers et al. 2019, HellaSwag",
    )
)
WINOGRANDE = register_mcq(
    McqBenchmark(
        name="winogrande",
        title="WinoGrande dev (fill the blank, 2-way; full-sentence scoring, see docs/data.md)",
        short="WinoGrande",
        parts=(Part("validation", ("dev.jsonl",), 1267), Part("train", ("train_xl.jsonl",), 40398)),
        read=records(("qID", "sentence", "option1", "option2", "answer")),
        doc=winogrande_doc,
        cloze=PLAIN_CLOZE,
        hub=HubSource("allenai/winogrande", "winogrande_xl"),
        hub_columns=("sentence", "option1", "option2", "answer"),
        n_choices=(2,),
        folder="winogrande",
        citation="Sakaguchi et al. 2020, WinoGrande",
    )
)
BOOLQ = register_mcq(
    McqBenchmark(
        name="boolq",
        title="BoolQ dev (yes/no questions about a passage)",
        short="BoolQ",
        parts=(Part("validation", ("dev.jsonl",), 3270), Part("train", ("train.jsonl",), 9427)),
        read=records(("question", "answer", "passage")),
        doc=boolq_doc,
        cloze=BOOLQ_CLOZE,
        hub=HubSource("google/boolq", None),
        hub_columns=("question", "answer", "passage"),
        n_choices=(2,),
        folder="boolq",
        citation="Clark et al. 2019, BoolQ",
    )
)
