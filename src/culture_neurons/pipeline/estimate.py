"""A time estimate printed before the long work starts, from timing a few batches on this machine.

Scoring dominates a small run, evaluation a study. One batch of the first table still to score is
run as a warm-up (its time holds one-off costs: allocations, lazy initialisation), then ``REPEATS``
batches (at least one of every pending table, taken in turn) are timed. A batch's cost is measured
per character of its text (prompt, options and answer), since the tables of a run differ in length
far more than in anything else; the estimate is the median rate of the timed batches times every
character still to score. The evaluation of the exported benchmarks under each condition the config
plans is timed the same way, as the evaluate stage runs it: up to ``CONDITIONS_PER_PASS`` conditions
in one pass (here all of them the unchanged model, which costs what a masked condition costs). The
median keeps one batch slowed by another job from moving the estimate, and the range (fastest to
slowest timed batch) says how steady the machine was while it was timed. Neither says how busy the
machine will be later, and the validate and train stages are not included.

The demo's own wall time, measured once, is :data:`DEMO_MEASURED`: the README and ``demo --help``
both state it from here.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..attribution.engine import score_examples
from ..data.example import Example
from ..evaluation.api import evaluate_together
from ..intervention import RowCondition
from .config import eval_options, scoring_options
from .runner import Context, FileRef
from .study_size import CONDITIONS_PER_PASS, eval_conditions

#: Timed batches per estimate (after the warm-up one); more when more tables are pending.
REPEATS = 3
#: Timing stops once the timed batches have taken this long (after the first): a big model stays cheap to estimate.
BUDGET_S = 30.0


@dataclass(frozen=True)
class MeasuredRun:
    """A measured wall time of a whole run, with when and where it was measured.

    ``seconds`` leaves out the one-off GGUF dequantisation of a first run, ``first_run_s``.
    """

    seconds: int
    first_run_s: int
    date: str
    machine: str

    @property
    def text(self) -> str:
        """``6 min 32 s``: the form the README and the help text state."""
        minutes, seconds = divmod(self.seconds, 60)
        return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


#: ``culture-neurons demo`` in a fresh run directory (2 threads, the OMP defaults): 406 s from the command's start
#: to its end, of which 14 s dequantised the GGUF file (only the first run does). The stages: export 0.1 s, model
#: 1 s, score 50.6 s, select 0.1 s, evaluate 292.0 s, validate 44.2 s, report 1.1 s. Other jobs shared the cores
#: (the same 153-question evaluation took 4.2 s to 47 s), so on a quiet machine it is faster.
DEMO_MEASURED = MeasuredRun(
    seconds=392, first_run_s=14, date="2026-12-07", machine="2 CPU cores shared with other jobs"
)


@dataclass(frozen=True)
class Rate:
    """Seconds per unit of work (a character of example text) over the timed batches."""

    median: float
    low: float
    high: float
    batches: int


def rate_of(per_unit: Sequence[float]) -> Rate:
    """The median, fastest and slowest of the timed batches' rates (at least one)."""
    if not per_unit:
        raise ValueError("no timed batch")
    return Rate(float(statistics.median(per_unit)), float(min(per_unit)), float(max(per_unit)), len(per_unit))


@dataclass(frozen=True)
class Batch:
    """Examples of one table (its index among the tables timed) run together."""

    table: int
    examples: list[Example]


def size_of(example: Example) -> int:
    """The work an example stands for: the characters of its prompt, options and answer (at least 1)."""
    return max(1, len(example.prompt) + sum(len(o) for o in example.options or ()) + len(example.answer))


def batches_in_turn(tables: Sequence[Sequence[Example]], batch_size: int, count: int) -> list[Batch]:
    """``count`` batches taken from the tables in turn (table 0, 1, ..., 0, ...), each table's batches in order.

    A table shorter than the batches asked of it wraps around to its first example, so a tiny table
    still gives full batches (of at most its length). Empty tables are skipped.
    """
    kept = [(i, t) for i, t in enumerate(tables) if t]
    out = []
    for k in range(count if kept else 0):
        index, table = kept[k % len(kept)]
        start = (k // len(kept)) * batch_size
        out.append(Batch(index, [table[(start + j) % len(table)] for j in range(min(batch_size, len(table)))]))
    return out


def time_batches(
    run: Callable[[Batch], object],
    batches: Sequence[Batch],
    clock: Callable[[], float] = time.perf_counter,
    budget_s: float = BUDGET_S,
) -> Rate:
    """Run ``batches[0]`` as an untimed warm-up, then time the others until ``budget_s`` is spent.

    Returns the seconds per character (:func:`size_of`) of the timed batches; the first timed batch
    always runs, so at least two batches do.
    """
    if len(batches) < 2:
        raise ValueError("a warm-up batch and at least one timed batch are needed")
    run(batches[0])
    rates, spent = [], 0.0
    for batch in batches[1:]:
        start = clock()
        run(batch)
        seconds = clock() - start
        rates.append(seconds / sum(size_of(e) for e in batch.examples))
        spent += seconds
        if spent >= budget_s:
            break
    return rate_of(rates)


def duration(seconds: float) -> str:
    """``40 s`` below a minute and a half, else whole minutes (``4 min``)."""
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def span(low: float, high: float) -> str:
    """``3–5 min``, ``33–42 s``, ``40 s–2 min``, or one duration when both ends read the same."""
    lo, hi = duration(low), duration(high)
    if lo == hi:
        return lo
    for unit in (" min", " s"):
        if lo.endswith(unit) and hi.endswith(unit):
            return f"{lo.removesuffix(unit)}–{hi}"
    return f"{lo}–{hi}"


@dataclass(frozen=True)
class Part:
    """One kind of work still to do: its name, its count as the line shows it, its items, size and timed rate."""

    name: str  # "scoring", "evaluation"
    count: str  # "scoring 384 examples"
    items: int
    size: int  # characters (size_of) of all its items
    rate: Rate

    def seconds(self, rate: float) -> float:
        """The time of the whole part at ``rate`` seconds per character."""
        return rate * self.size


def estimate_text(parts: Sequence[Part]) -> str:
    """The ``[estimate]`` line: the median estimate, its range, and what each part counts and costs."""
    mid = sum(p.seconds(p.rate.median) for p in parts)
    low = sum(p.seconds(p.rate.low) for p in parts)
    high = sum(p.seconds(p.rate.high) for p in parts)
    each = "; ".join(f"{p.count} at {p.seconds(p.rate.median) / max(p.items, 1):.2f} s each" for p in parts)
    timed = " and ".join(f"{p.rate.batches} {p.name}" for p in parts)
    return (
        f"[estimate] about {duration(mid)} on this machine, range {span(low, high)} ({each}; median and range of "
        f"{timed} batches timed after a warm-up one; finished steps, validate and train not included; another "
        "job on these cores makes it longer)"
    )


def _scoring(ctx: Context, pending: Sequence[FileRef]) -> Part:
    model, tokenizer = ctx.model()
    c = ctx.config
    tables = [ctx.read(f.rel) for f in pending]
    options = [scoring_options(c, control=f.role == "control") for f in pending]

    def run(batch: Batch) -> None:
        score_examples(
            model, tokenizer, batch.examples, options[batch.table], site_map=c.model.site_map, progress=False
        )

    # One more batch than timed: the warm-up takes table 0's first, and the timed ones reach every table.
    batches = batches_in_turn(tables, c.score.batch_size, 1 + max(REPEATS, len(tables)))
    n = sum(len(t) for t in tables)
    size = sum(size_of(e) for t in tables for e in t)
    return Part("scoring", f"scoring {n} examples", n, size, time_batches(run, batches))


def _evaluation(ctx: Context) -> Part | None:
    c = ctx.config
    evals = ctx.exports_of("eval")
    conditions = [eval_conditions(c, f.bench) for f in evals]  # whole-benchmark equivalents, as a dry run counts
    if not evals or not any(conditions):
        return None
    model, tokenizer = ctx.model()
    tables = [ctx.read(f.rel) for f in evals]
    options = eval_options(c)
    # Timed as the stage runs it: up to CONDITIONS_PER_PASS conditions in one pass, each item once per condition,
    # in batches of about ``batch_size`` rows. One condition at a time costs several times more per
    # item-condition on some CPUs (small GEMMs), so timing it alone overstated a study's evaluation.
    together = min(CONDITIONS_PER_PASS, max(conditions)) if options.batch_conditions else 1
    labelled = [(f"estimate-{i}", RowCondition()) for i in range(together)]

    def run(batch: Batch) -> None:
        bench = evals[batch.table].bench
        evaluate_together(model, tokenizer, bench, batch.examples, labelled, options, site_map=c.model.site_map)

    per_batch = max(1, c.evaluate.batch_size // together)
    batches = batches_in_turn(tables, per_batch, 1 + max(REPEATS, len(tables)))
    n = sum(k * len(t) for k, t in zip(conditions, tables, strict=True))
    size = sum(k * sum(size_of(e) for e in t) for k, t in zip(conditions, tables, strict=True))
    rate = time_batches(run, batches)
    per_condition = Rate(rate.median / together, rate.low / together, rate.high / together, rate.batches)
    return Part("evaluation", f"evaluating up to {n} example-conditions", n, size, per_condition)


def estimate_line(ctx: Context, pending: Sequence[FileRef]) -> str:
    """``[estimate] ...``: the expected time of scoring and evaluation, with a range, from a few timed batches."""
    parts = [_scoring(ctx, pending)]
    evaluation = _evaluation(ctx)
    if evaluation is not None:
        parts.append(evaluation)
    return estimate_text(parts)
