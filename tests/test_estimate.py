"""The time estimate from injected timings (a fake clock, never the machine's), and the one demo time claim."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from culture_neurons.data.example import Example
from culture_neurons.pipeline.estimate import (
    DEMO_MEASURED,
    Batch,
    Part,
    Rate,
    batches_in_turn,
    duration,
    estimate_text,
    rate_of,
    size_of,
    span,
    time_batches,
)

ROOT = Path(__file__).resolve().parents[1]


def _example(i: int, chars: int = 10) -> Example:
    # prompt + answer = ``chars`` characters, no options
    return Example(id=f"e{i}", prompt="x" * (chars - 1), answer="A", group="g")


class FakeClock:
    """A clock that moves only when a batch 'runs', by the seconds the test scripted for that batch."""

    def __init__(self, seconds: list[float]) -> None:
        self.now, self.seconds, self.ran = 0.0, list(seconds), 0

    def __call__(self) -> float:
        return self.now

    def run(self, batch: Batch) -> None:
        self.now += self.seconds[self.ran]
        self.ran += 1


def _batches(n: int, size: int = 10, chars: int = 10) -> list[Batch]:
    return [Batch(0, [_example(k * size + j, chars) for j in range(size)]) for k in range(n)]


def test_the_warm_up_batch_is_not_timed():
    clock = FakeClock([50.0, 1.0, 1.0, 1.0])  # a slow warm-up (one-off costs), then steady batches
    rate = time_batches(clock.run, _batches(4), clock=clock)
    assert clock.ran == 4 and rate == Rate(median=0.01, low=0.01, high=0.01, batches=3)  # 1 s per 100 characters


def test_a_busy_batch_does_not_inflate_the_estimate_and_the_range_covers_it():
    clock = FakeClock([1.0, 20.0, 1.0, 1.2])  # another job held the cores during the first timed batch
    rate = time_batches(clock.run, _batches(4), clock=clock)
    assert rate.median == pytest.approx(0.012)  # the median of 1.0, 1.2 and 20: not the mean, 7.4
    assert rate.low == pytest.approx(0.01) and rate.high == pytest.approx(0.2)
    part = Part("scoring", "scoring 1000 examples", 1000, 10_000, rate)
    line = estimate_text([part])
    assert line.startswith(
        "[estimate] about 2 min on this machine, range 2–33 min (scoring 1000 examples at 0.12 s each"
    )
    assert "3 scoring batches timed after a warm-up one" in line


def test_timing_stops_once_the_budget_is_spent():
    clock = FakeClock([1.0, 40.0, 1.0, 1.0])
    rate = time_batches(clock.run, _batches(4), clock=clock, budget_s=30.0)
    assert clock.ran == 2 and rate.batches == 1 and rate.median == pytest.approx(0.4)
    with pytest.raises(ValueError, match="warm-up"):
        time_batches(clock.run, _batches(1), clock=clock)


def test_cost_is_per_character_so_longer_tables_take_longer():
    clock = FakeClock([1.0, 3.0, 1.0])  # warm-up, then the second table (3x as long, 3x the time), then the first
    short, long = [_example(i, 10) for i in range(4)], [_example(i, 30) for i in range(4)]
    batches = batches_in_turn([short, long], 4, 3)
    assert [b.table for b in batches] == [0, 1, 0]
    rate = time_batches(clock.run, batches, clock=clock)
    assert rate.low == rate.high == pytest.approx(1.0 / 40)  # the same rate per character for both tables
    sizes = sum(size_of(e) for e in short), sum(size_of(e) for e in long)
    assert sizes == (40, 120)
    assert size_of(Example(id="o", prompt="Q?", answer="B", group="g", options=["ab", "cde"])) == 8


def test_batches_reach_every_table_in_turn_and_wrap_around_a_short_one():
    a, b = [_example(i) for i in range(5)], [_example(10 + i) for i in range(2)]
    got = batches_in_turn([a, [], b], 4, 4)
    assert [x.table for x in got] == [0, 2, 0, 2]  # the empty table is skipped
    assert [e.id for e in got[0].examples] == ["e0", "e1", "e2", "e3"]
    assert [e.id for e in got[2].examples] == ["e4", "e0", "e1", "e2"]  # table 0's second batch wraps around
    assert [e.id for e in got[1].examples] == ["e10", "e11"]  # never longer than the table
    assert batches_in_turn([[], []], 4, 3) == []


@given(st.lists(st.floats(min_value=1e-3, max_value=1e3), min_size=2, max_size=8))
def test_the_range_covers_every_timed_batch(seconds):
    clock = FakeClock(seconds)
    rate = time_batches(clock.run, _batches(len(seconds)), clock=clock, budget_s=float("inf"))
    per_char = [s / 100 for s in seconds[1:]]
    assert rate.batches == len(per_char) and rate.low <= rate.median <= rate.high
    # (the fake clock adds floats, so a batch's time comes back within rounding of what was scripted)
    assert all(rate.low <= r * (1 + 1e-9) and r <= rate.high * (1 + 1e-9) for r in per_char)
    assert rate.low == pytest.approx(min(per_char)) and rate.high == pytest.approx(max(per_char))


def test_durations_and_ranges_read_plainly():
    assert duration(40) == "40 s" and duration(89.4) == "89 s" and duration(240) == "4 min"
    assert span(180, 300) == "3–5 min" and span(40, 130) == "40 s–2 min" and span(240, 250) == "4 min"
    two = estimate_text(
        [
            Part("scoring", "scoring 9 examples", 9, 900, rate_of([0.01, 0.02])),
            Part("evaluation", "evaluating up to 24 example-conditions", 24, 2400, rate_of([0.01])),
        ]
    )
    assert "scoring 9 examples at 1.50 s each; evaluating up to 24 example-conditions at 1.00 s each" in two
    assert "about 38 s on this machine, range 33–42 s" in two and "2 scoring and 1 evaluation batches" in two
    with pytest.raises(ValueError):
        rate_of([])


# ---------------------------------------------------------------------------------------------
# one demo time claim, in the README and in `demo --help`

_DURATION = re.compile(r"\d+ min(?: \d+ s)?|~?\d+ minutes?")


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_readme_and_demo_help_state_the_same_measured_time():
    from culture_neurons.cli import cli

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quickstart = _flat(readme.split("## Quickstart", 1)[1].split("```", 1)[0])
    result = CliRunner().invoke(cli, ["demo", "--help"])
    assert result.exit_code == 0, result.output
    help_text = _flat(result.output.split("Options:", 1)[0])
    for text in (quickstart, help_text):
        assert DEMO_MEASURED.text in text and DEMO_MEASURED.date in text, text
        assert DEMO_MEASURED.machine in text and f"once, {DEMO_MEASURED.first_run_s} s" in text, text
        assert _DURATION.findall(text) == [DEMO_MEASURED.text], text  # no second, disagreeing claim


def test_a_run_times_evaluation_as_the_stage_runs_it_many_conditions_in_one_pass(tmp_path, monkeypatch):
    from culture_neurons.pipeline import estimate, run_pipeline
    from culture_neurons.pipeline.study_size import CONDITIONS_PER_PASS
    from tests.pipeline_helpers import save_tiny_model, tiny_run_config

    calls = []
    real = estimate.evaluate_together

    def spy(model, tokenizer, name, examples, conditions, *args, **kwargs):
        calls.append((name, len(examples), len(conditions)))
        return real(model, tokenizer, name, examples, conditions, *args, **kwargs)

    monkeypatch.setattr(estimate, "evaluate_together", spy)
    config = tiny_run_config(save_tiny_model(tmp_path / "model"), tmp_path / "run")
    said: list[str] = []
    result = run_pipeline(config, progress=True, echo=said.append)
    # the stage table reads each stage's wall time, which holds the batched passes its steps' times leave out
    evaluate = next(r for r in result.stage_table().splitlines() if r.startswith("evaluate"))
    steps = sum(s.seconds for s in result.steps if s.stage == "evaluate")
    assert result.stage_wall["evaluate"] >= steps and evaluate.split()[-1] == f"{result.stage_wall['evaluate']:.1f}"
    line = next(x for x in said if x.startswith("[estimate]"))
    assert "evaluating up to" in line and "example-conditions" in line
    # the tiny config plans a handful of conditions per benchmark: all of them in one pass, a batch of rows
    together = {n for _, _, n in calls}
    assert len(together) == 1 and 1 < together.pop() <= CONDITIONS_PER_PASS
    assert {name for name, _, _ in calls} == {"demo-culture", "demo-nlu"}
    assert all(n * k <= config["evaluate"]["batch_size"] or n == 1 for _, n, k in calls)
