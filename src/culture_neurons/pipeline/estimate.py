"""A rough time estimate printed before the long work starts, from timing one batch on this machine.

Scoring dominates a run: one batch of the first table still to score is timed, and the estimate is
that rate times every example still to score, plus the evaluation of the exported benchmarks under
each condition the config plans (timed on one batch of the first benchmark, no intervention). The
numbers are a guide, not a promise: the first batch includes warm-up, and another job on the same
cores changes everything.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from ..attribution.engine import score_examples
from ..evaluation.api import evaluate_rows
from .config import eval_options, scoring_options
from .runner import Context, FileRef


def _per_example(seconds: float, n: int) -> float:
    return seconds / max(n, 1)


def planned_conditions(ctx: Context) -> int:
    """How many conditions each evaluation benchmark is evaluated under (an upper bound)."""
    c = ctx.config
    n = 1
    randoms = c.select.random.seeds if c.select.general.enabled else 0
    for name in ("ablation", "enhancement"):
        if name in c.evaluate.experiments and c.select.general.enabled:
            n += 1 + randoms
    if "cross-culture" in c.evaluate.experiments and c.select.specific.enabled:
        countries = c.select.specific.countries
        n += len(countries) if isinstance(countries, list) else 8
    return n if c.evaluate.experiments else 0


def estimate_line(ctx: Context, pending: Sequence[FileRef]) -> str:
    """``[estimate] ...``: the expected minutes of scoring and evaluation, from one timed batch each."""
    model, tokenizer = ctx.model()
    c = ctx.config
    first = ctx.read(pending[0].rel)[: c.score.batch_size]
    start = time.perf_counter()
    score_examples(
        model,
        tokenizer,
        first,
        scoring_options(c, control=pending[0].role == "control"),
        site_map=c.model.site_map,
        progress=False,
    )
    score_rate = _per_example(time.perf_counter() - start, len(first))
    to_score = sum(len(ctx.read(f.rel)) for f in pending)
    evals = ctx.exports_of("eval")
    eval_rate, to_eval = 0.0, 0
    if evals and planned_conditions(ctx):
        batch = ctx.read(evals[0].rel)[: c.evaluate.batch_size]
        start = time.perf_counter()
        evaluate_rows(
            model,
            tokenizer,
            {evals[0].bench: batch},
            None,
            "suppress",
            c.evaluate.factor,
            condition="estimate",
            options=eval_options(c),
            site_map=c.model.site_map,
        )
        eval_rate = _per_example(time.perf_counter() - start, len(batch))
        to_eval = planned_conditions(ctx) * sum(len(ctx.read(f.rel)) for f in evals)
    seconds = score_rate * to_score + eval_rate * to_eval
    total = f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"
    parts = [f"scoring {to_score} examples at {score_rate:.2f} s each"]
    if to_eval:
        parts.append(f"evaluating up to {to_eval} example-conditions at {eval_rate:.2f} s each")
    return f"[estimate] about {total} on this machine ({'; '.join(parts)}; timed on one batch, finished steps excluded)"
