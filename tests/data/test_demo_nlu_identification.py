"""The built-in NLU identification set (demo-nlu-id): registered, scorable, and disjoint from demo-nlu."""

from __future__ import annotations

import json

from culture_neurons.data import build_examples, get_benchmark
from culture_neurons.data.benchmarks.demo import demo_path


def _records(name):
    return json.loads(demo_path(name).read_text(encoding="utf-8"))["items"]


def test_registered_as_an_nlu_identification_set():
    bench = get_benchmark("demo-nlu-id")
    assert bench.kind == "nlu" and bench.builtin and not bench.by_country
    exs = build_examples("demo-nlu-id", split="identification", templates="all")
    assert len(exs) == 96 * len(bench.templates)
    assert {e.split for e in exs} == {"identification"} and {e.group for e in exs} == {"demo-nlu-id"}
    for e in exs:  # the gold label names the gold text, whatever the option order
        rec_id = e.id.split("/", 1)[1].split("#")[0]
        rec = next(r for r in _records("nlu_identification.json") if r["id"] == rec_id)
        assert e.options[e.labels.index(e.answer)] == rec["options"][rec["answer"]]


def test_disjoint_from_the_held_out_demo_nlu_set():
    held = _records("nlu.json")
    ident = _records("nlu_identification.json")
    assert len(ident) == 96 and len({r["id"] for r in ident}) == 96
    key = lambda r: (
        r.get("context", "").strip().lower(),
        r["question"].strip().lower(),
        r["options"][r["answer"]].lower(),
    )
    assert not {key(r) for r in held} & {key(r) for r in ident}
    assert not {r["id"] for r in held} & {r["id"] for r in ident}
    held_ids = {e.id for e in build_examples("demo-nlu")}
    assert not held_ids & {e.id for e in build_examples("demo-nlu-id")}
    for r in ident:
        assert len({o.lower() for o in r["options"]}) == len(r["options"]) == 4 and 0 <= r["answer"] < 4
