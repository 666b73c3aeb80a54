"""Cloze forms for the option-text targets exist for the question, control and CountryRC sets."""

from __future__ import annotations

import pytest

from culture_neurons.data import build_examples


@pytest.mark.parametrize("bench", ["demo-culture", "demo-control", "countryrc"])
def test_cloze_exports_end_at_the_answer_and_carry_options(bench):
    examples = build_examples(bench, split="identification", templates="cloze")
    assert examples
    for ex in examples:
        assert ex.template_id == "cloze" and ex.prompt.endswith("Answer:")
        assert ex.options and ex.labels and ex.answer in ex.labels
    if bench == "demo-control":
        questions = {e.meta["control_of"] for e in examples}
        assert len(questions) == len(examples)
        assert all("?" not in ex.prompt for ex in examples)  # the question is removed
        assert all(all(opt in ex.prompt for opt in ex.options) for ex in examples)


def test_control_cloze_lists_options_in_the_question_order():
    questions = {
        e.id.split("#")[0]: e for e in build_examples("demo-culture", split="identification", templates="cloze")
    }
    for ctl in build_examples("demo-control", split="identification", templates="cloze"):
        assert ctl.options == questions[ctl.meta["control_of"]].options
        assert ctl.answer == questions[ctl.meta["control_of"]].answer
