"""Size caps: cap_examples against a slow oracle, and the CLI cap against the pipeline's max_per_group."""

from __future__ import annotations

import hashlib
import random

import pytest
from click.testing import CliRunner

from culture_neurons.cli import cli
from culture_neurons.data import Example, build_examples, read_examples
from culture_neurons.data.sampling import cap_examples
from culture_neurons.errors import InputError


def _oracle(examples, max_per_group, limit, seed):
    """Plain restatement of the rule: rank every example by its hash, walk the ranking, keep what fits."""

    def key(ex):
        base = ex.meta.get("control_of") or ex.id.split("#")[0]
        text = str(base) if seed == 0 else f"{seed}\x00{base}"
        return hashlib.sha256(text.encode()).hexdigest()

    ranked = sorted(enumerate(examples), key=lambda p: (key(p[1]), p[0]))
    chosen = []
    for pos, ex in ranked:
        if max_per_group and sum(1 for _, e in chosen if e.group == ex.group) >= max_per_group:
            continue
        chosen.append((pos, ex))
    if limit:
        chosen = chosen[:limit]
    return [ex for _, ex in sorted(chosen, key=lambda p: p[0])]


def _examples(n, groups, rng):
    out = []
    for i in range(n):
        g = rng.choice(groups)
        out.append(Example(id=f"q{i}#t{rng.randint(0, 2)}", prompt="p", answer="A", group=g))
    return out


@pytest.mark.parametrize("trial", range(20))
def test_cap_examples_matches_oracle(trial):
    rng = random.Random(trial)
    exs = _examples(rng.randint(0, 40), ["Spain", "UK", "日本"], rng)
    mpg, limit, seed = rng.choice([None, 0, 1, 3]), rng.choice([None, 0, 2, 7]), rng.choice([0, 0, 5])
    got = cap_examples(exs, max_per_group=mpg, limit=limit, seed=seed)
    assert [e.id for e in got] == [e.id for e in _oracle(exs, mpg, limit, seed)]


def test_seed_changes_the_sample_and_zero_is_the_default():
    exs = _examples(60, ["A"], random.Random(1))
    a = cap_examples(exs, max_per_group=10)
    assert a == cap_examples(exs, max_per_group=10, seed=0)
    assert [e.id for e in a] != [e.id for e in cap_examples(exs, max_per_group=10, seed=3)]
    assert len(cap_examples(exs, limit=5, seed=3)) == 5


def test_control_examples_keep_the_same_questions():
    orig = [Example(id=f"q{i}", prompt="p", answer="A", group="g") for i in range(30)]
    ctrl = [Example(id=f"c{i}", prompt="p", answer="A", group="g", meta={"control_of": f"q{i}"}) for i in range(30)]
    kept_o = [e.id for e in cap_examples(orig, max_per_group=7)]
    kept_c = [e.meta["control_of"] for e in cap_examples(ctrl, max_per_group=7)]
    assert kept_o == kept_c


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_bad_caps_are_one_line_errors(bad):
    with pytest.raises(InputError, match="max_per_group must be an integer"):
        cap_examples([], max_per_group=bad)


def test_cli_cap_equals_the_pipeline_config_cap(tmp_path):
    from culture_neurons.pipeline import cap_per_group

    out = tmp_path / "capped.jsonl"
    result = CliRunner().invoke(
        cli, ["data", "export", "demo-culture", "--split", "identification", "--max-per-group", "5", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    got = [e.id for e in read_examples(out)]
    full = build_examples("demo-culture", split="identification")
    assert got == [e.id for e in cap_per_group(full, 5)]  # what the pipeline's config key uses
    assert got == [e.id for e in _oracle(full, 5, None, 0)]  # the rule, restated independently
    assert len(got) == 5 * len({e.group for e in full}) < len(full)
    limited = tmp_path / "limited.jsonl"
    result = CliRunner().invoke(
        cli,
        [
            "data",
            "export",
            "demo-culture",
            "--split",
            "identification",
            "--max-per-group",
            "5",
            "--limit",
            "7",
            "--seed",
            "2",
            "--out",
            str(limited),
        ],
    )
    assert result.exit_code == 0, result.output
    assert [e.id for e in read_examples(limited)] == [
        e.id for e in cap_examples(full, max_per_group=5, limit=7, seed=2)
    ]
    assert "wrote 7 examples" in result.output


def test_cap_options_gives_three_values_or_one_caps():
    import click

    from culture_neurons.data.sampling import Caps, cap_options

    seen = {}

    @click.command()
    @cap_options
    def three(max_per_group, limit, seed):
        seen["three"] = (max_per_group, limit, seed)

    @click.command()
    @cap_options
    @click.option("--name", default="x")
    def one(caps, name):
        seen["one"] = (caps, name)

    assert CliRunner().invoke(three, ["--max-per-group", "4", "--seed", "2"]).exit_code == 0
    assert CliRunner().invoke(one, ["--limit", "5", "--name", "y"]).exit_code == 0
    assert seen == {"three": (4, None, 2), "one": (Caps(None, 5, 0), "y")}
    res = CliRunner().invoke(three, ["--limit", "-1"])
    assert res.exit_code == 2 and "--limit" in res.output
