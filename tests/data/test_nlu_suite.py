"""The multiple-choice declarations (data/benchmarks/mcq_table.py) and the NLU benchmarks declared with them.

Tiny files in the published formats live in ``tests/data/nlu_files/`` (project-written items, a few
lines each); the real copies in ``../shared/data`` check the published split sizes.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
from click.testing import CliRunner

from culture_neurons.chance import chance_level
from culture_neurons.data import hub
from culture_neurons.data.benchmarks.mcq_formats import hellaswag_text
from culture_neurons.data.benchmarks.mcq_table import Doc, McqBenchmark, Part, declared_mcqs, get_mcq, records
from culture_neurons.data.cli import data as data_cli
from culture_neurons.data.example import read_examples
from culture_neurons.data.registry import LoadRequest, build_examples, get_benchmark, load_items
from culture_neurons.data.templates import CLOZE_TEMPLATE
from culture_neurons.errors import InputError
from tests.data.nlu_hub_rows import FILES, hub_rows, read_rows

NEW = ("arc-easy", "arc-challenge", "piqa", "openbookqa", "hellaswag", "winogrande", "boolq")

EXPECTED = {
    "arc-easy": (["heat", "Mars", "light", "water"], [4, 3, 4, 5]),
    "arc-challenge": (["gravity", "blocked light"], [4, 4]),
    "piqa": (["Add ice to it.", "Use a dry towel.", "Twist the lid."], [2, 2, 2]),
    "openbookqa": (["star", "sunlight", "frozen"], [4, 4, 4]),
    "hellaswag": (["pours it on the tea.", " Wet the cloth and wipe."], [4, 4]),
    "winogrande": (["Ann was kind.", "plate was weak."], [2, 2]),
    "boolq": (["yes", "no"], [2, 2]),
}


@pytest.mark.parametrize("name", NEW)
def test_tiny_published_files_give_the_gold_and_the_choices(name):
    items = load_items(name, data_dir=FILES)
    golds, sizes = EXPECTED[name]
    assert [it.gold for it in items] == golds and [len(it.options) for it in items] == sizes
    assert {it.split for it in items} == {"heldout"} and {it.group for it in items} == {name}
    examples = build_examples(name, data_dir=FILES, templates="cloze")
    # the published option order is kept, so the gold index is the published one
    assert [ex.options for ex in examples] == [it.options for it in items]
    assert chance_level(examples) == pytest.approx(sum(1 / n for n in sizes) / len(sizes))


def test_cloze_prompts_follow_lm_evals_formulations():
    def first(name):
        return build_examples(name, data_dir=FILES, templates="cloze")[0]

    assert first("arc-easy").prompt == "Question: What melts ice?\nAnswer:"
    assert first("piqa").prompt == "Question: Cool a hot drink.\nAnswer:"
    assert first("openbookqa").prompt == "The sun is a"
    assert first("hellaswag").prompt == "Making tea: A man boils water. He"
    boolq = first("boolq")
    assert boolq.prompt == "Ice is frozen water and is cold.\nQuestion: is ice cold?\nAnswer:"
    assert boolq.options == ("no", "yes") and boolq.answer == "B"
    wino = first("winogrande")
    assert wino.prompt == "Ann gave Bo a gift because" and wino.options == ("Ann was kind.", "Bo was kind.")
    assert wino.meta["question_id"] == "tiny-1"


def test_hellaswag_text_drops_wikihow_markers_as_lm_eval_does():
    assert hellaswag_text("Clean: [header] How to x [title] Get a cloth. ") == "Clean: How to x. Get a cloth."
    assert hellaswag_text("[step] Wipe it.") == " Wipe it."  # lm-eval strips before removing the marker


def test_arc_numeric_labels_and_parts():
    third = load_items("arc-easy", data_dir=FILES)[2]
    assert third.id == "arc-easy/Tiny_3" and third.answer_index == 1 and third.meta == {"question_id": "Tiny_3"}
    dev = load_items("arc-easy", data_dir=FILES, part="validation")
    assert [it.id for it in dev] == ["arc-easy/TinyDev_1", "arc-easy/TinyDev_2"]
    with pytest.raises(InputError, match=r"no ARC-Easy-Train\.jsonl \(ARC-Easy train\)"):
        load_items("arc-easy", data_dir=FILES, part="train")


@pytest.mark.parametrize("name", NEW)
def test_the_hub_copy_gives_the_same_items(name, monkeypatch):
    spec = get_mcq(name)
    calls = []

    def fake(hub_id, config, split, **kwargs):
        calls.append((hub_id, config, split))
        return hub_rows(name)

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "_load_dataset", fake)
    assert load_items(name) == load_items(name, data_dir=FILES)  # ids, questions, choices, golds
    assert calls == [(spec.hub.id, spec.hub.config, spec.parts[0].name)]


def test_piqa_labels_file_must_be_beside_and_aligned(tmp_path):
    shutil.copy(FILES / "piqa" / "valid.jsonl", tmp_path / "valid.jsonl")
    with pytest.raises(InputError, match=r"valid\.jsonl: no valid-labels\.lst beside it"):
        load_items("piqa", data_dir=tmp_path)
    (tmp_path / "valid-labels.lst").write_text("0\n1\n")
    with pytest.raises(InputError, match=r"2 labels for the 3 rows of valid\.jsonl"):
        load_items("piqa", data_dir=tmp_path)
    (tmp_path / "valid-labels.lst").write_text("0\n1\n2\n")
    with pytest.raises(InputError, match=r"valid-labels\.lst:3: label '2' is not 0 or 1"):
        load_items("piqa", data_dir=tmp_path)


@pytest.mark.parametrize(
    "name, file, row, message",
    [
        ("boolq", "dev.jsonl", {"question": "q", "answer": "true", "passage": "p"}, "is not true or false"),
        (
            "winogrande",
            "dev.jsonl",
            {"qID": "x", "sentence": "No blank.", "option1": "a", "option2": "b", "answer": "1"},
            "has no blank",
        ),
        (
            "winogrande",
            "dev.jsonl",
            {"qID": "x", "sentence": "_ ran.", "option1": "a", "option2": "b", "answer": "1"},
            "starts with the blank",
        ),
        (
            "winogrande",
            "dev.jsonl",
            {"qID": "x", "sentence": "A _ ran.", "option1": "a", "option2": "b", "answer": "3"},
            "answer '3' is not one of 1, 2",
        ),
        (
            "openbookqa",
            "test.jsonl",
            {
                "id": "x",
                "question": {"stem": "s", "choices": [{"label": "A", "text": "a"}, {"label": "B", "text": "b"}]},
                "answerKey": "A",
            },
            "2 choices, but OpenBookQA questions have 4",
        ),
        (
            "hellaswag",
            "hellaswag_val.jsonl",
            {"ind": 1, "activity_label": "a", "ctx_a": "b", "ctx_b": "c", "endings": ["w", "x", "y", "z"], "label": 4},
            "label 4 is not one of",
        ),
    ],
)
def test_a_bad_row_is_one_error_naming_the_line(tmp_path, name, file, row, message):
    folder = tmp_path / name
    folder.mkdir()
    (folder / file).write_text(json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=rf"{file}:1: .*{message}"):
        load_items(name, data_dir=folder)


def test_every_declaration_is_registered_with_its_metric():
    names = [spec.name for spec in declared_mcqs()]
    assert names[:3] == ["commonsenseqa", "qnli", "mrpc"] and set(NEW) <= set(names)
    norm = {name for name in names if get_benchmark(name).metric == "acc_norm"}
    assert norm == {"arc-easy", "arc-challenge", "openbookqa", "hellaswag"}
    for name in names:
        bench = get_benchmark(name)
        assert "cloze" in {t.id for t in bench.templates + bench.extra_templates}, name
        assert bench.kind == "nlu" and not bench.by_country
    with pytest.raises(InputError, match="not a multiple-choice declaration"):
        get_mcq("blend")


def test_a_new_declaration_costs_a_few_lines(tmp_path):
    """What docs/data.md shows: a reader, a doc function, a template, and the registry does the rest."""
    (tmp_path / "qa.csv").write_text("q,right,wrong\nSky colour?,blue,green\n", encoding="utf-8")
    spec = McqBenchmark(
        name="tiny-qa",
        title="tiny",
        short="Tiny",
        parts=(Part("test", ("qa.csv",), 1),),
        read=records(("q", "right", "wrong")),
        doc=lambda row, i, part: Doc(f"{part}/{i}", row["q"], (row["wrong"], row["right"]), 1),
        cloze=CLOZE_TEMPLATE,
    )
    bench = spec.benchmark()
    (item,) = bench.load(LoadRequest(path=tmp_path))
    assert (item.id, item.gold, item.options, item.split) == ("tiny-qa/test/0", "blue", ("green", "blue"), "heldout")
    assert bench.templates[0].id == "cloze" and bench.parts == ("test",)
    with pytest.raises(ValueError, match="metric must be one of acc, acc_norm"):
        dataclasses.replace(spec, metric="f1")


def test_cli_export_and_export_lm_eval(tmp_path):
    runner = CliRunner()
    out = tmp_path / "arc.jsonl"
    result = runner.invoke(
        data_cli, ["export", "arc-easy", "--data-dir", str(FILES), "--templates", "cloze", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    examples = read_examples(out)
    assert len(examples) == 4 and examples[0].options[0] == "heat"
    result = runner.invoke(data_cli, ["export-lm-eval", "piqa", "--data-dir", str(FILES), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    docs = read_rows(tmp_path / "cn_piqa_heldout_cloze.jsonl")
    assert [d["gold"] for d in docs] == [0, 1, 0] and docs[1]["choices"] == ["Use a wet rag.", "Use a dry towel."]
    info = runner.invoke(data_cli, ["info", "arc-easy"])
    assert "published: test 2,376, validation 570" in info.output and "nlu1, nlu2, nlu3 (+ cloze" in info.output


# ---------------------------------------------------------------------------------------------
# The real copies: counts equal the published split sizes.

REAL = [
    ("arc-easy", "test"),
    ("arc-easy", "validation"),
    ("arc-challenge", "test"),
    ("piqa", "validation"),
    ("openbookqa", "test"),
    ("commonsenseqa", "validation"),
    ("qnli", "validation"),
    ("mrpc", "test"),
    ("mrpc", "validation"),
    ("mrpc", "train"),
]


@pytest.mark.parametrize("name, part", REAL)
def test_real_counts_equal_the_published_split_sizes(shared_data, name, part):
    items = load_items(name, data_dir=shared_data, part=part)
    assert len(items) == get_mcq(name).part(part).published
    sizes = get_mcq(name).n_choices
    assert not sizes or {len(it.options) for it in items} <= set(sizes)


def test_real_published_sizes_are_the_papers():
    sizes = {(s.name, p.name): p.published for s in declared_mcqs() for p in s.parts}
    assert sizes[("arc-easy", "test")] == 2376 and sizes[("arc-easy", "validation")] == 570
    assert sizes[("arc-challenge", "test")] == 1172 and sizes[("piqa", "validation")] == 1838
    assert sizes[("openbookqa", "test")] == 500 and sizes[("hellaswag", "validation")] == 10042
    assert sizes[("winogrande", "validation")] == 1267 and sizes[("boolq", "validation")] == 3270


def test_real_arc_chance_level(shared_data):
    examples = build_examples("arc-easy", data_dir=shared_data, templates="cloze")
    # 2,365 questions with 4 choices, 7 with 3 and 4 with 5
    assert chance_level(examples) == pytest.approx((2365 / 4 + 7 / 3 + 4 / 5) / 2376)


def test_shuffle_is_a_typed_option_with_the_declarations_default():
    published = build_examples("arc-easy", data_dir=FILES, templates="nlu1")
    shuffled = build_examples("arc-easy", data_dir=FILES, templates="nlu1", shuffle="true")
    assert [ex.options for ex in published] == [it.options for it in load_items("arc-easy", data_dir=FILES)]
    assert [ex.options for ex in shuffled] != [ex.options for ex in published]
    for a, b in zip(published, shuffled):  # same options and the same gold text, another order
        assert sorted(a.options) == sorted(b.options)
        assert a.options[a.labels.index(a.answer)] == b.options[b.labels.index(b.answer)]
    assert get_benchmark("commonsenseqa").resolve_options({}) == {"shuffle": True}
    assert get_benchmark("piqa").resolve_options({}) == {"shuffle": False}
    with pytest.raises(InputError, match="piqa: option shuffle must be true or false, got 'maybe'"):
        load_items("piqa", data_dir=FILES, shuffle="maybe")
