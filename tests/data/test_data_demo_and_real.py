"""The built-in demo data, and integration checks on the real benchmark copies (../shared/data)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from culture_neurons.data import build_examples, load_items
from culture_neurons.data.benchmarks.demo import demo_path
from culture_neurons.data.benchmarks.worldvaluesbench import load_metadata
from culture_neurons.data.countries import TARGET_COUNTRIES


def test_demo_culture_set():
    items = load_items("demo-culture")
    assert len(items) >= 320
    per_country = Counter(it.group for it in items)
    assert set(per_country) == set(TARGET_COUNTRIES) and min(per_country.values()) >= 40
    topics = Counter(it.meta["topic"] for it in items)
    assert set(topics) == {"Food", "Work life", "Sport", "Education", "Family", "Holidays/Celebration/Leisure"}
    assert min(topics.values()) >= 40  # balanced enough for the topic split
    for country in TARGET_COUNTRIES:
        split = Counter(it.split for it in items if it.group == country)
        assert 15 <= split["identification"] <= 30 and 12 <= split["heldout"] <= 30, (country, split)
    for it in items:
        assert len(it.options) == 4 and len({o.lower() for o in it.options}) == 4
        assert "{" not in it.question


def test_demo_conflicts_are_respected():
    items = {it.id: it for it in load_items("demo-culture")}
    assert "bullfighting" not in items["demo-culture/sport-national/Mexico"].options
    assert "charreria" not in items["demo-culture/sport-national/Spain"].options
    assert "Walmart" not in items["demo-culture/work-shops/Mexico"].options
    assert "the Latin alphabet" not in items["demo-culture/edu-script/Spain"].options[1:]


def test_demo_examples_carry_option_text_and_balanced_labels():
    exs = build_examples("demo-culture", templates="all")
    for ex in exs:
        gold = ex.options[ex.labels.index(ex.answer)]
        frame, country = ex.id.split("#")[0].split("/")[1:]
        assert gold == load_answer(frame, country.replace("_", " "))
    share = Counter(ex.answer for ex in exs)
    assert all(0.15 < share[letter] / len(exs) < 0.35 for letter in "ABCD"), share


_FRAMES = None


def load_answer(frame: str, country: str) -> str:
    global _FRAMES
    if _FRAMES is None:
        doc = json.loads(demo_path("culture.json").read_text(encoding="utf-8"))
        _FRAMES = {f["id"]: f["answers"] for f in doc["frames"]}
    return _FRAMES[frame][country]


def test_demo_control_and_nlu():
    ctl = load_items("demo-control")
    assert len(ctl) == len(load_items("demo-culture")) and all(it.question == "" for it in ctl)
    nlu = load_items("demo-nlu")
    assert len(nlu) >= 100 and {it.split for it in nlu} == {"heldout"}
    for it in nlu:
        assert len(set(it.options)) == len(it.options) == 4


def test_demo_sizes_fit_a_small_cpu_run():
    """The demo scores identification examples of the culture, control and CountryRC sets."""
    per_country = Counter()
    for name in ("demo-culture", "demo-control", "countryrc"):
        per_country.update(ex.group for ex in build_examples(name, split="identification"))
    assert all(60 <= per_country[c] <= 100 for c in TARGET_COUNTRIES), per_country


# ---------------------------------------------------------------------------------------------
# Real data (skipped on a fresh clone).


def test_real_commonsenseqa(shared_data):
    items = load_items("commonsenseqa", data_dir=shared_data)
    assert len(items) == 1221 and all(len(it.options) == 5 for it in items)


def test_real_nlu_sizes(shared_data):
    assert len(load_items("qnli", data_dir=shared_data)) == 5463
    assert len(load_items("mrpc", data_dir=shared_data)) == 1725
    assert len(load_items("mrpc", data_dir=shared_data, part="validation")) == 408
    assert len(load_items("mrpc", data_dir=shared_data, part="train")) == 3668


def test_real_worldvaluesbench_metadata(shared_data):
    meta = load_metadata(shared_data / "worldvaluesbench" / "question_metadata.json")
    assert len(meta) == 282
    ordinal = [q for q in meta.values() if q.use_case == "value" and q.data_type == "ordinal"]
    assert len(ordinal) == 239 and meta["Q1"].scale_min == 1 and meta["Q1"].scale_max == 4


def test_real_culturalbench(shared_data):
    items = load_items("culturalbench-easy", data_dir=shared_data)
    assert len(items) == 1227 and len({it.group for it in items}) == 45
    counts = Counter((it.group, it.split) for it in items)
    assert (counts[("China", "identification")], counts[("China", "heldout")]) == (30, 29)
    assert (counts[("USA", "identification")], counts[("USA", "heldout")]) == (10, 10)


def test_real_blend_export_and_labels(shared_data, tmp_path, tiny_chat_tokenizer):
    from culture_neurons.data import export_examples, label_problems, read_examples

    out = tmp_path / "x.jsonl"
    summary = export_examples("blend", out, split="identification", countries="targets", data_dir=shared_data / "blend")
    assert summary.n_examples == 141 + 142 + 139 + 145 + 145 + 145 + 138 + 134
    exs = read_examples(out)
    assert {ex.group for ex in exs} == set(TARGET_COUNTRIES)
    assert all(ex.prompt.endswith('{"answer_choice":"') for ex in exs)
    assert label_problems(exs, tiny_chat_tokenizer) == []


@pytest.mark.parametrize("name", ["blend-saq", "blend-control"])
def test_real_blend_variants(shared_data, name):
    items = load_items(name, data_dir=shared_data / "blend", countries="Spain")
    assert items and {it.group for it in items} == {"Spain"}
