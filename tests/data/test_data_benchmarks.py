"""CulturalBench, NormAd, WorldValuesBench, the NLU sets and CountryRC, from tiny published-format files."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from culture_neurons.data import build_examples, load_items
from culture_neurons.data.countries import BLEND_COUNTRIES, TARGET_COUNTRIES
from culture_neurons.data.splits import kl_divergence, kl_split
from culture_neurons.errors import InputError


def test_culturalbench_easy(culturalbench_dir):
    items = load_items("culturalbench-easy", data_dir=culturalbench_dir)
    assert [it.group for it in items] == ["Spain", "Spain", "Spain", "China", "China", "USA"]
    # first half (rounded up) of each country's questions identify neurons
    assert [it.split for it in items] == [
        "identification",
        "identification",
        "heldout",
        "identification",
        "heldout",
        "identification",
    ]
    tapas = items[2]
    assert tapas.options == ("beer", "milk", "soda") and tapas.gold == "beer"  # the empty option is dropped
    assert items[1].gold == "2pm"


def test_culturalbench_hard(culturalbench_dir):
    items = load_items("culturalbench-hard", data_dir=culturalbench_dir)
    assert len(items) == 12
    assert Counter(it.gold for it in items) == {"True": 3, "False": 9}
    # the four rows of a question share its split
    by_q = {}
    for it in items:
        by_q.setdefault((it.group, it.meta["question_id"]), set()).add(it.split)
    assert all(len(s) == 1 for s in by_q.values())
    assert by_q[("Spain", "0")] == {"identification"} and by_q[("Spain", "1")] == {"heldout"}


def test_normad(normad_file):
    items = load_items("normad", data_dir=normad_file.parent)
    assert Counter(it.group for it in items) == {"Spain": 6, "USA": 6}
    assert Counter((it.group, it.meta["gold"], it.split) for it in items) == {
        (c, g, s): 1 for c in ("Spain", "USA") for g in ("yes", "no", "neutral") for s in ("identification", "heldout")
    }
    it = items[0]
    assert it.question == "Is what Alex did socially acceptable?" and it.context == "Story 1 happens."
    exs = build_examples("normad", data_dir=normad_file.parent, templates="all")
    assert all(ex.labels == ("1", "2", "3") for ex in exs)
    words = {"yes": "Yes,", "no": "No,", "neutral": "Neither"}
    for ex in exs:
        assert ex.options[ex.labels.index(ex.answer)].startswith(words[ex.meta["gold"]])
    assert {ex.labels.index(ex.answer) for ex in exs} == {0, 1, 2}  # the gold number varies


def test_kl_split_picks_the_most_different_questions():
    from collections import Counter as C

    counts = {
        "A": {"q1": C({1: 10}), "q2": C({1: 5, 2: 5}), "q3": C({2: 10})},
        "B": {"q1": C({1: 10}), "q2": C({1: 5, 2: 5}), "q3": C({1: 10})},
    }
    split = kl_split(counts, top_k=1)
    assert split[("A", "q3")] == "identification" and split[("B", "q3")] == "identification"
    assert split[("A", "q1")] == "heldout"
    assert kl_divergence({1: 1.0}, {1: 1.0}) == pytest.approx(0.0, abs=1e-9)


def test_worldvaluesbench(wvb_dir):
    items = load_items("worldvaluesbench", data_dir=wvb_dir, min_answers=5, top_k=1)
    by_id = {it.id: it for it in items}
    assert set(by_id) == {f"wvb/{c}/Q{q}" for c in ("Mexico", "Spain", "UK") for q in range(1, 5)}
    assert by_id["wvb/UK/Q4"].answers == ("1",) and by_id["wvb/Mexico/Q4"].answers == ("4",)
    assert by_id["wvb/Mexico/Q1"].answers == ("4",) and by_id["wvb/UK/Q1"].answers == ("1",)
    assert by_id["wvb/UK/Q2"].meta["answer_counts"] == {"2": 5}  # the -2 missing code is ignored
    # each country's most different question identifies neurons
    ident = {it.id for it in items if it.split == "identification"}
    assert ident == {"wvb/UK/Q4", "wvb/Mexico/Q1", "wvb/Spain/Q1"}  # Spain: a tie, the first question wins
    ex = build_examples("worldvaluesbench", data_dir=wvb_dir, min_answers=5, countries="UK")[0]
    assert (ex.scale_min, ex.scale_max, ex.answer) == (1, 4, "1") and ex.options is None
    assert "from 1 to 4" in ex.prompt and "the United Kingdom" in ex.prompt
    # min_answers drops thin (country, question) cells
    assert load_items("worldvaluesbench", data_dir=wvb_dir, min_answers=7) == []


def test_worldvaluesbench_needs_answer_files(tmp_path, wvb_dir):
    (wvb_dir / "full_value_qa.tsv").unlink()
    with pytest.raises(InputError, match="no full_value_qa.tsv; WorldValuesBench needs the answer TSVs"):
        load_items("worldvaluesbench", data_dir=wvb_dir)


def test_worldvaluesbench_metadata_errors(wvb_dir):
    meta = json.loads((wvb_dir / "question_metadata.json").read_text())
    meta["Q2"]["answer_scale_max"] = ""
    (wvb_dir / "question_metadata.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="question Q2: an ordinal question needs answer_scale_min < answer_scale_max"):
        load_items("worldvaluesbench", data_dir=wvb_dir)


def test_commonsenseqa_both_forms(nlu_dir):
    items = load_items("commonsenseqa", data_dir=nlu_dir)
    assert [(it.gold, it.split, it.group) for it in items] == [
        ("fridge", "heldout", "commonsenseqa"),
        ("honey", "heldout", "commonsenseqa"),
    ]
    exs = build_examples("commonsenseqa", data_dir=nlu_dir)
    assert exs[0].labels == tuple("ABCDE")
    # --countries does not apply to NLU sets and is ignored
    assert len(load_items("commonsenseqa", data_dir=nlu_dir, countries="China")) == 2


def test_qnli_and_mrpc(nlu_dir):
    qnli = load_items("qnli", data_dir=nlu_dir)
    assert [it.gold for it in qnli] == ["Yes", "No"]
    assert 'What is "x"?' in qnli[0].question  # quotes are kept verbatim (quoting is disabled)
    mrpc = load_items("mrpc", data_dir=nlu_dir)
    assert [it.gold for it in mrpc] == ["Yes", "No"] and 'He said "yes" .' in mrpc[0].question
    assert [it.id for it in load_items("mrpc", data_dir=nlu_dir, part="validation")] == ["mrpc/validation/23-24"]
    train = load_items("mrpc", data_dir=nlu_dir, part="train")
    assert len(train) == 2 and {it.split for it in train} == {"train"}
    with pytest.raises(InputError, match="unknown part 'dev'"):
        load_items("mrpc", data_dir=nlu_dir, part="dev")
    with pytest.raises(InputError, match="no examples for split 'identification'"):
        build_examples("qnli", data_dir=nlu_dir, split="identification")


def test_countryrc_builtin():
    items = load_items("countryrc")
    passages = {it.meta["passage_id"] for it in items}
    assert len(passages) >= 50
    assert len(items) == len(passages) * 8 and Counter(it.group for it in items) == {
        c: len(passages) for c in TARGET_COUNTRIES
    }
    ordered = list(dict.fromkeys(it.meta["passage_id"] for it in items))
    half = (len(ordered) + 1) // 2
    for it in items:
        assert it.split == ("identification" if ordered.index(it.meta["passage_id"]) < half else "heldout")
        assert len(it.options) == 4 and len(set(it.options)) == 4
        assert "{" not in it.context and "{" not in it.question
        from culture_neurons.data.countries import get_country

        target = get_country(it.group)
        assert it.gold == target.option and target.name in it.context
        others = [c for c in BLEND_COUNTRIES if get_country(c).option in it.options[1:]]
        assert len(others) == 3 and "West Java" not in (others if it.group == "Indonesia" else [])
        if "dummy_country" in it.meta:
            dummy = get_country(it.meta["dummy_country"])
            assert dummy.option in it.options[1:] and dummy.name in it.context
    assert sum("dummy_country" in it.meta for it in items) >= 8 * 10


def test_countryrc_external_file(tmp_path):
    path = tmp_path / "rc.json"
    path.write_text(
        json.dumps(
            [
                {"id": "a", "context": "Kim moved to {country} for work.", "question": "Where does Kim work?"},
                {
                    "id": "b",
                    "context": "Lee studied in {country}, not {country_dummy}.",
                    "question": "Where did Lee study?",
                },
            ]
        ),
        encoding="utf-8",
    )
    items = load_items("countryrc", data_dir=path, countries=["Greece", "Spain"])
    assert [it.id for it in items] == [
        "countryrc/a/Greece",
        "countryrc/a/Spain",
        "countryrc/b/Greece",
        "countryrc/b/Spain",
    ]
    assert [it.split for it in items] == ["identification"] * 2 + ["heldout"] * 2
    path.write_text(json.dumps([{"id": "a", "context": "No placeholder.", "question": "Where?"}]), encoding="utf-8")
    with pytest.raises(InputError, match=r"rc\.json: record 1: 'context' must contain the placeholder \{country\}"):
        load_items("countryrc", data_dir=path)
    path.write_text(
        json.dumps([{"id": "a", "context": "In {city} and {country}.", "question": "Where?"}]), encoding="utf-8"
    )
    with pytest.raises(InputError, match=r"record 1: unknown placeholder \{city\}"):
        load_items("countryrc", data_dir=path)
