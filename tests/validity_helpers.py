"""Multiple-choice examples with options, templates and question ids for the validity tests."""

from __future__ import annotations

from culture_neurons.data import Example

FOODS = ["sushi", "tacos", "paella", "tea", "rice", "bread", "kimchi", "curry"]


def choice_examples(
    n: int,
    groups=("Japan", "Mexico", "Spain"),
    templates=("cloze", "alt"),
    split="identification",
    dataset="demo",
    control=False,
) -> list[Example]:
    """``n`` questions (cycling through ``groups``), each rendered with every template; 4 options each."""
    out = []
    for i in range(n):
        g = groups[i % len(groups)]
        for t in templates:
            q = "" if control else f"Which food is from {g} number {i}?"
            prompt = f"Question: {q}\nAnswer:" if t == "cloze" else f"Q {q} A:"
            suffix = "/control" if control else ""
            out.append(
                Example(
                    id=f"{dataset}/{g}/{i}{suffix}#{t}",
                    prompt=prompt,
                    answer="ABCD"[i % 4],
                    group=g,
                    dataset=dataset,
                    split=split,
                    template_id=t,
                    options=tuple(FOODS[(i + j) % 8] for j in range(4)),
                    labels=("A", "B", "C", "D"),
                    meta={"question_id": f"q{i}"},
                )
            )
    return out
