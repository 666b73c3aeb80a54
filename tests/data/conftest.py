"""Fixtures for the data layer: tiny files in each benchmark's published format, a tiny tokenizer
with a chat template, and the location of the real benchmark copies (../shared/data).

No test here may reach the network: the hub is switched off for every test, and tests that
exercise the hub path replace ``culture_neurons.data.hub._load_dataset``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Every data test runs with the hub off; reaching ``datasets`` at all is a test failure."""
    import culture_neurons.data.hub as hub

    def refuse(*args, **kwargs):
        raise AssertionError("a data test tried to load from the hub")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(hub, "_load_dataset", refuse)


@pytest.fixture
def shared_data() -> Path:
    """The real benchmark copies; tests using them skip on a fresh clone without ../shared/data."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


def write_csv(path: Path, header: list[str], rows: list[list[object]], delimiter: str = ",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _ann(answers: list[tuple[str, int]], idk: int = 0, na: int = 0) -> dict:
    return {
        "question": "q",
        "en_question": "q",
        "annotations": [{"answers": [a], "en_answers": [a], "count": n} for a, n in answers],
        "idks": {"idk": idk, "no-answer": 0, "not-applicable": na},
    }


# Five countries, three questions. Q1 (Food) is clean; Q2 (Family) is clean; Q3 (Sport) has a
# "not applicable" mark for Greece, so the authors' rule drops it for every country.
BLEND_ANSWERS = {
    "Q1": {
        "UK": [("apple", 4), ("banana", 1)],
        "US": [("apples", 3), ("cookies", 3), ("chips", 2)],
        "China": [("rice", 5), ("noodles", 2)],
        "Spain": [("bread", 3), ("olives", 2)],
        "Greece": [("feta", 2), ("honey", 2)],
    },
    "Q2": {
        "UK": [("tea", 3)],
        "US": [("coffee", 4)],
        "China": [("green tea", 4), ("hot water", 2)],
        "Spain": [("wine", 2)],
        "Greece": [("ouzo", 3)],
    },
    "Q3": {
        "UK": [("football", 3)],
        "US": [("baseball", 3)],
        "China": [("table tennis", 3)],
        "Spain": [("football", 2)],
        "Greece": [("basketball", 4)],
    },
}
BLEND_TOPICS = {"Q1": "Food", "Q2": "Family", "Q3": "Sport"}
BLEND_FILE_COUNTRY = {"UK": "UK", "US": "US", "China": "China", "Spain": "Spain", "Greece": "Greece"}


@pytest.fixture
def blend_dir(tmp_path) -> Path:
    """BLEnD's short-answer release: annotations/<Country>_data.json + questions/<Country>_questions.csv."""
    root = tmp_path / "blend"
    (root / "annotations").mkdir(parents=True)
    for country in BLEND_FILE_COUNTRY:
        records = {}
        for qid, per in BLEND_ANSWERS.items():
            rec = _ann(per[country], na=1 if (qid == "Q3" and country == "Greece") else 0)
            place = "the UK" if country == "UK" else "the US" if country == "US" else country
            rec["question"] = rec["en_question"] = f"Question {qid} about {place}?"
            records[qid] = rec
        (root / "annotations" / f"{country}_data.json").write_text(json.dumps(records), encoding="utf-8")
        write_csv(
            root / "questions" / f"{country}_questions.csv",
            ["", "ID", "Topic", "Source", "Question", "Translation"],
            [
                [i, qid, BLEND_TOPICS[qid], "English (US)", f"Question {qid}", f"Question {qid}"]
                for i, qid in enumerate(BLEND_ANSWERS)
            ],
        )
    return root


@pytest.fixture
def blend_mcq_file(tmp_path, blend_dir) -> Path:
    """The official multiple-choice file format, with BLEnD's questions/ beside it."""
    rows = []
    for n, (qid, country, answer) in enumerate(
        [("Q1", "UK", "B"), ("Q1", "UK", "A"), ("Q2", "South_Korea", "C"), ("Q2", "US", "D")]
    ):
        prompt = (
            f"What is {qid} in {country}? Without any explanation, choose only one from the given alphabet "
            'choices(e.g., A, B, C). Provide as JSON format: {"answer_choice":""}\n\nA. a\nB. b\nC. c\nD. d\n\nAnswer:'
        )
        choices = json.dumps({"A": f"alpha{n}", "B": f"beta{n}", "C": f"gamma{n}", "D": f"delta{n}"})
        rows.append([f"{qid}_{n}", qid, country, prompt, choices, "{}", answer])
    path = write_csv(
        blend_dir / "mc_questions_file.csv",
        ["MCQID", "ID", "country", "prompt", "choices", "choice_countries", "answer_idx"],
        rows,
    )
    return path


@pytest.fixture
def culturalbench_dir(tmp_path) -> Path:
    root = tmp_path / "culturalbench"
    header = [
        "data_idx",
        "question_idx",
        "prompt_question",
        "prompt_option_a",
        "prompt_option_b",
        "prompt_option_c",
        "prompt_option_d",
        "answer",
        "country",
    ]
    rows = [
        [
            0,
            0,
            "In Spain, what is eaten at midnight on New Year's Eve?",
            "grapes",
            "noodles",
            "dumplings",
            "cake",
            "A",
            "Spain",
        ],
        [1, 1, "In Spain, when is lunch usually eaten?", "11am", "2pm", "5pm", "8pm", "B", "Spain"],
        [2, 2, "In Spain, which drink is common with tapas?", "beer", "milk", "soda", "", "A", "Spain"],
        [
            3,
            3,
            "In China, what do people give at New Year?",
            "red envelopes",
            "socks",
            "flowers",
            "cards",
            "A",
            "China",
        ],
        [
            4,
            4,
            "In China, which dish is eaten at New Year in the north?",
            "pizza",
            "dumplings",
            "tacos",
            "bread",
            "B",
            "China",
        ],
        [
            5,
            5,
            "In the United States, what is eaten at Thanksgiving?",
            "turkey",
            "duck",
            "goose",
            "fish",
            "A",
            "United States",
        ],
    ]
    write_csv(root / "CulturalBench-Easy.csv", header, rows)
    hard_header = ["data_idx", "question_idx", "prompt_question", "prompt_option", "answer", "country"]
    hard = []
    for q, (country, good) in enumerate([("Spain", "grapes"), ("Spain", "2pm"), ("China", "dumplings")]):
        for k, option in enumerate([good, "x", "y", "z"]):
            hard.append([q * 4 + k, q, f"Question {q}?", option, "TRUE" if k == 0 else "FALSE", country])
    write_csv(root / "CulturalBench-Hard.csv", hard_header, hard)
    return root


@pytest.fixture
def normad_file(tmp_path) -> Path:
    rows = []
    n = 0
    for country in ("spain", "united_states_of_america"):
        for label in ("yes", "no", "neutral"):
            for _ in range(2):
                n += 1
                rows.append([n, country, f"Story {n} happens. Is what Alex did socially acceptable?", label])
    return write_csv(tmp_path / "normad" / "normad.csv", ["ID", "Country", "Story", "Gold Label"], rows)


@pytest.fixture
def wvb_dir(tmp_path) -> Path:
    """question_metadata.json + full_value_qa.tsv + full_demographic_qa.tsv (the pipeline's output form)."""
    root = tmp_path / "worldvaluesbench"
    root.mkdir()
    meta = {
        "B_COUNTRY": {
            "question": "Country?",
            "category": "Technical",
            "use_case": "demographic",
            "answer_scale_min": "",
            "answer_scale_max": "",
            "answer_data_type": "non_ordinal",
        },
    }
    for q in range(1, 5):
        meta[f"Q{q}"] = {
            "question": f"On a scale of 1 to 4, how much is thing {q}?",
            "category": "Values",
            "use_case": "value",
            "answer_scale_min": 1,
            "answer_scale_max": 4,
            "answer_data_type": "ordinal",
        }
    (root / "question_metadata.json").write_text(json.dumps(meta), encoding="utf-8")
    demo_rows, value_rows = [], []
    # Spain gives the common answers 1, 2, 3, 4; Great Britain differs on Q4, Mexico on Q1.
    for pid in range(18):
        country = ("Great Britain", "Mexico", "Spain")[pid // 6]
        demo_rows.append([str(1000 + pid), country])
        answers = [1, 2, 3, 4]
        if country == "Great Britain":
            answers[3] = 1
        elif country == "Mexico":
            answers[0] = 4
        if pid == 0:
            answers[1] = -2  # a WVS missing code: ignored
        value_rows.append([str(1000 + pid)] + [str(a) for a in answers])
    write_csv(root / "full_demographic_qa.tsv", ["D_INTERVIEW", "B_COUNTRY"], demo_rows, delimiter="\t")
    write_csv(root / "full_value_qa.tsv", ["D_INTERVIEW", "Q1", "Q2", "Q3", "Q4"], value_rows, delimiter="\t")
    return root


@pytest.fixture
def nlu_dir(tmp_path) -> Path:
    root = tmp_path / "nlu"
    csqa = root / "commonsenseqa"
    csqa.mkdir(parents=True)
    flat = {
        "id": "c1",
        "question": "Where is milk kept cold?",
        "question_concept": "milk",
        "choices": {"label": list("ABCDE"), "text": ["fridge", "oven", "shelf", "car", "roof"]},
        "answerKey": "A",
    }
    nested = {
        "id": "c2",
        "answerKey": "B",
        "question": {
            "stem": "What do bees make?",
            "question_concept": "bees",
            "choices": [
                {"label": lab, "text": t} for lab, t in zip("ABCDE", ["milk", "honey", "wool", "silk", "glue"])
            ],
        },
    }
    (csqa / "dev_rand_split.jsonl").write_text(json.dumps(flat) + "\n" + json.dumps(nested) + "\n", encoding="utf-8")
    qnli = root / "qnli"
    qnli.mkdir()
    (qnli / "dev.tsv").write_text(
        "index\tquestion\tsentence\tlabel\n"
        '0\tWhat is "x"?\tThe "x" is a letter.\tentailment\n'
        "1\tWho ran?\tThe sky is blue.\tnot_entailment\n",
        encoding="utf-8",
    )
    mrpc = root / "mrpc"
    mrpc.mkdir()
    head = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    (mrpc / "msr_paraphrase_test.txt").write_text(
        head + '1\t11\t12\tHe said "yes" .\tHe agreed .\n0\t13\t14\tIt rained .\tShe sang .\n', encoding="utf-8"
    )
    (mrpc / "msr_paraphrase_train.txt").write_text(
        head + "1\t21\t22\tA .\tB .\n0\t23\t24\tC .\tD .\n1\t25\t26\tE .\tF .\n", encoding="utf-8"
    )
    (mrpc / "mrpc_dev_ids.tsv").write_text("23\t24\n", encoding="utf-8")
    return root


def build_tokenizer(tmp_path: Path, vocab_words: list[str], chat: bool = True):
    """A tiny word-level tokenizer (whitespace and punctuation split) with an optional chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "<s>": 1, "</s>": 2, "<|user|>": 3, "<|assistant|>": 4}
    for w in vocab_words:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", bos_token="<s>", eos_token="</s>", pad_token="</s>"
    )
    if chat:
        fast.chat_template = (
            "{% for m in messages %}<|user|>{{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}"
        )
    fast.save_pretrained(tmp_path)
    return fast


@pytest.fixture
def make_tokenizer():
    """The tiny-tokenizer builder, for tests that need an unusual vocabulary."""
    return build_tokenizer


@pytest.fixture
def tiny_chat_tokenizer(tmp_path):
    """A tokenizer that knows the letters and numbers used as labels, with a chat template."""
    words = list("ABCDEFGH") + list("123456789") + ["{", "}", '"', ":", "answer", "answer_choice", "choice"]
    return build_tokenizer(tmp_path / "tok", words)
