"""BLEnD: the multiple-choice builder, the official file, the control set and short answers."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from culture_neurons.data import build_examples, load_items
from culture_neurons.data.benchmarks.blend import similar
from culture_neurons.errors import InputError


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ("apple", "apples", True),
        ("tea", "green tea", True),
        ("12", "12.0", True),
        ("rice", "noodles", False),
        ("basketball", "football", False),
        ("fish and chips", "rice and beans", False),  # function words do not count
        ("Kimchi", "kimchi", True),
    ],
)
def test_lexical_similarity(a, b, expected):
    assert similar(a, b) is expected
    assert similar(b, a) is expected


def test_builder_follows_the_published_rules(blend_dir):
    items = load_items("blend", data_dir=blend_dir)
    # Worked out by hand from the fixture (see conftest): Q3 is dropped for every country because
    # one annotator marked it "not applicable" in Greece.
    counts = Counter(it.group for it in items)
    assert counts == {"China": 5, "Spain": 5, "UK": 8, "USA": 3, "Greece": 6}
    assert {it.meta["question_id"] for it in items} == {"Q1", "Q2"}
    by_id = {it.id: it for it in items}
    china = by_id["blend/China/Q1/v0"]
    assert china.options == ("rice", "apple", "bread", "cookies")
    assert china.answer_index == 0 and china.split == "identification"
    assert china.question == "Question Q1 about China?"
    # "apples" (USA) is blocked next to the already chosen "apple" (UK); UK's own "apple" blocks it too.
    assert all("apples" not in it.options for it in items if it.group in ("China", "Spain", "UK"))
    # Ties for the top answer give one set of variants per gold answer (USA: apples, cookies).
    usa = sorted(it.options[0] for it in items if it.group == "USA" and it.meta["question_id"] == "Q1")
    assert usa == ["apples", "cookies"]
    # Greece would have 8 variants on Q1 (2 gold answers x 4 combinations); at most 5 are kept.
    assert sum(1 for it in items if it.group == "Greece" and it.meta["question_id"] == "Q1") == 5
    # "tea" never sits next to "green tea".
    for it in items:
        assert not ({"tea", "green tea"} <= set(it.options))
    # Topic split: Q2 is Family, so held out.
    assert {it.split for it in items if it.meta["question_id"] == "Q2"} == {"heldout"}
    for it in items:
        assert len(set(o.lower() for o in it.options)) == 4


def test_builder_max_variants_and_filter_scope(blend_dir):
    one = load_items("blend", data_dir=blend_dir, max_variants=1)
    assert Counter(it.group for it in one) == {"China": 2, "Spain": 2, "UK": 2, "USA": 2, "Greece": 2}
    per_country = load_items("blend", data_dir=blend_dir, filter_scope="country")
    q3 = {it.group for it in per_country if it.meta["question_id"] == "Q3"}
    assert "Greece" not in q3 and "UK" in q3
    uk = next(it for it in per_country if it.id == "blend/UK/Q3/v0")
    assert uk.options == ("football", "basketball", "table tennis", "baseball")
    with pytest.raises(InputError, match="filter_scope"):
        load_items("blend", data_dir=blend_dir, filter_scope="nope")


def test_builder_country_filter_keeps_distractors_from_all_countries(blend_dir):
    only = load_items("blend", data_dir=blend_dir, countries=["China"])
    full = [it for it in load_items("blend", data_dir=blend_dir) if it.group == "China"]
    assert only == full


def test_control_is_the_question_removed(blend_dir):
    mcq = build_examples("blend", data_dir=blend_dir, templates="all")
    ctl = build_examples("blend-control", data_dir=blend_dir, templates="all")
    assert len(mcq) == len(ctl)
    for q, c in zip(mcq, ctl):
        assert c.id.startswith(q.id.split("#")[0] + "/control#")
        assert (c.options, c.labels, c.answer, c.group, c.split) == (q.options, q.labels, q.answer, q.group, q.split)
        assert "Question Q" not in c.prompt and "Question Q" in q.prompt


def test_official_mcq_file(blend_mcq_file):
    items = load_items("blend", data_dir=blend_mcq_file.parent)
    by_id = {it.id: it for it in items}
    assert set(by_id) == {"blend/UK/Q1/v0", "blend/UK/Q1/v1", "blend/South_Korea/Q2/v0", "blend/USA/Q2/v0"}
    assert by_id["blend/UK/Q1/v0"].gold == "beta0"
    assert by_id["blend/UK/Q1/v1"].gold == "alpha1"
    assert by_id["blend/UK/Q1/v0"].question == "What is Q1 in UK?"
    assert by_id["blend/South_Korea/Q2/v0"].split == "heldout"
    assert by_id["blend/UK/Q1/v0"].split == "identification"
    assert len(load_items("blend", data_dir=blend_mcq_file, max_variants=1)) == 3


def test_official_file_bad_label(blend_mcq_file):
    text = blend_mcq_file.read_text(encoding="utf-8").replace(",B\n", ",E\n", 1)
    blend_mcq_file.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=r"mc_questions_file\.csv:\d+: answer_idx 'E' is not one of the choice labels"):
        load_items("blend", data_dir=blend_mcq_file)


def test_official_file_without_topics(tmp_path, blend_mcq_file):
    lone = tmp_path / "lone" / "mc_questions_file.csv"
    lone.parent.mkdir()
    lone.write_bytes(blend_mcq_file.read_bytes())
    with pytest.raises(InputError, match="no topic for question Q1; put BLEnD's questions/ folder"):
        load_items("blend", data_dir=lone)


def test_annotation_files_in_hub_list_form(blend_dir):
    path = blend_dir / "annotations" / "UK_data.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps([{"ID": k, **v} for k, v in data.items()]), encoding="utf-8")
    assert Counter(it.group for it in load_items("blend", data_dir=blend_dir))["UK"] == 8


def test_unknown_country_file(blend_dir):
    (blend_dir / "annotations" / "Atlantis_data.json").write_text("{}", encoding="utf-8")
    with pytest.raises(InputError, match=r"Atlantis_data\.json: unknown country 'Atlantis'"):
        load_items("blend", data_dir=blend_dir)


def test_short_answer_questions(blend_dir):
    items = load_items("blend-saq", data_dir=blend_dir)
    assert len(items) == 15  # 5 countries x 3 questions, no filtering
    china = next(it for it in items if it.id == "blend-saq/China/Q2")
    assert china.answers == ("green tea", "hot water")
    ex = build_examples("blend-saq", data_dir=blend_dir, countries="China")[0]
    assert ex.answer == "rice" and ex.meta["answers"] == ["rice", "noodles"] and ex.options is None
    assert ex.prompt.endswith("Answer:")


def test_real_blend_builder(shared_data):
    """The builder on the real BLEnD release: sizes per country and split, and option sanity."""
    items = load_items("blend", data_dir=shared_data / "blend")
    counts = Counter((it.group, it.split) for it in items)
    expected = {
        "China": (141, 149),
        "Indonesia": (142, 137),
        "Iran": (139, 134),
        "Mexico": (145, 130),
        "South Korea": (145, 145),
        "Spain": (145, 116),
        "UK": (138, 131),
        "USA": (134, 126),
    }
    for country, (ident, held) in expected.items():
        assert (counts[(country, "identification")], counts[(country, "heldout")]) == (ident, held), country
    assert len(items) == 4451 and len({it.group for it in items}) == 16
    per_question = Counter((it.group, it.meta["question_id"]) for it in items)
    assert max(per_question.values()) == 5
    for it in items:
        assert len(it.options) == 4 and len({o.lower() for o in it.options}) == 4
        assert it.answer_index == 0
        # exactly one correct: no wrong option is lexically close to the gold
        assert not any(similar(it.options[0], o) for o in it.options[1:])
        assert it.split == ("identification" if it.meta["topic"] in ("Food", "Work life", "Sport") else "heldout")
