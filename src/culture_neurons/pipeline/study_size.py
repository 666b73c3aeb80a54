"""How much work a config plans, counted from its example counts: what ``run --dry-run`` prints under "Planned work".

A time estimate needs a machine (:mod:`.estimate` times batches on it); a size does not. Each stage's
work is counted in the units that decide its cost:

- ``score``: examples scored, one forward and one backward pass each (an example's options are packed
  into one sequence);
- ``evaluate``: conditions times held-out items, one forward pass per item and condition;
- ``validate``: the conditions of the dose-response and specificity analyses times the items it
  evaluates, the single-neuron passes of the faithfulness analysis, and the identification examples
  it scores again in folds;
- ``train``: optimizer steps per module set, and the base and trained models' evaluations.

The counts are upper bounds where a stage may reuse work (a condition shared by two analyses is
evaluated once) and exact elsewhere. They read the config only, never a model, so they are the same
on every machine; ``tests/test_replication.py`` checks them for the ``replication`` preset by hand.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from .. import rundir
from ..data import get_benchmark
from ..errors import InputError
from .sections import PipelineConfig

CULTURE_KINDS = ("culture", "generation", "scale")

#: The most conditions one evaluate pass runs together. Batching conditions gains little beyond a few on a CPU
#: with AMX (docs/performance.md, "Many conditions in one pass"), a batch holds ``batch_size`` rows per
#: condition, and each pass's cells are written as soon as it ends, so a kill loses one pass at most.
CONDITIONS_PER_PASS = 16


@dataclass(frozen=True)
class StageWork:
    """One stage's planned work: the units that decide its cost, and a line that says them."""

    stage: str
    passes: int  # forward passes (a backward pass counts as one more for scoring)
    text: str


def _kind(bench: str) -> str:
    try:
        return get_benchmark(bench).kind
    except InputError:  # a benchmark the registry does not know counts on the cultural side, as validity does
        return "culture"


def eval_conditions(config: PipelineConfig, bench: str) -> int:
    """Conditions one evaluation benchmark is evaluated under, in whole-benchmark equivalents: ``original``, the
    general set and each random set per experiment that uses them, and (on a benchmark with countries) each
    country's specific set, and its random sets, which see only that country's questions: ``m`` random sets per
    country cost ``m`` passes over the benchmark, whatever the number of countries."""
    if not config.runs("evaluate"):
        return 0
    e = config.evaluate
    randoms = config.select.random.seeds if config.select.general.enabled else 0
    if e.nlu_random is not None and _kind(bench) == "nlu":
        randoms = min(randoms, e.nlu_random)
    n = 1
    for name in ("ablation", "enhancement"):
        if name in e.experiments and config.select.general.enabled:
            n += 1 + randoms
    if "cross-culture" in e.experiments and config.select.specific.enabled and _by_country(bench):
        countries = config.select.specific.countries
        n += (len(countries) if isinstance(countries, list) else 8) + getattr(e, "cross_culture_random", 0)
    return n


def _by_country(bench: str) -> bool:
    try:
        return bool(get_benchmark(bench).by_country)
    except InputError:
        return True


def _scoring(config: PipelineConfig, counts: Mapping[str, int]) -> StageWork:
    keys = [rundir.export_key("score", b) for b in config.score.datasets]
    keys += [rundir.export_key("control", b) for b in config.score.controls]
    if config.score.countryrc:
        keys.append(rundir.export_key("countryrc", config.score.countryrc))
    keys += [rundir.export_key("exclude", b) for b, _ in config.select.exclusions()]
    n = sum(counts.get(k, 0) for k in keys)
    return StageWork("score", 2 * n, f"{n:,} examples scored (a forward and a backward pass each)")


def _eval_counts(config: PipelineConfig, counts: Mapping[str, int]) -> dict[str, int]:
    return {b: counts.get(rundir.export_key("eval", b), 0) for b in config.evaluate.benchmarks}


def _evaluate(config: PipelineConfig, items: Mapping[str, int]) -> StageWork:
    per = {b: eval_conditions(config, b) for b in items}
    total = sum(per[b] * n for b, n in items.items())
    parts = "; ".join(f"{b} {per[b]} x {n:,}" for b, n in items.items())
    return StageWork("evaluate", total, f"{total:,} item evaluations (conditions x items: {parts})")


def _validate(config: PipelineConfig, items: Mapping[str, int], identification: int) -> StageWork:
    v = config.validate
    culture = sum(n for b, n in items.items() if _kind(b) in CULTURE_KINDS)
    nlu_cap = v.nlu_limit or 0
    nlu = sum(min(n, nlu_cap) if nlu_cap else n for b, n in items.items() if _kind(b) not in CULTURE_KINDS)
    analyses = set(v.analyses)
    sizes = len(set(v.t_mlp_sweep) | {config.select.general.t_mlp}) if v.evaluate_sweep else 1
    per_set = 1 + v.random_seeds
    conditions = 1  # original
    if "sensitivity" in analyses or "specificity" in analyses:
        conditions += (sizes if "sensitivity" in analyses else 1) * per_set
    if "variants" in analyses:
        conditions += (per_set if v.mean_op else 0) + len(v.enhance_factors)
    evals = conditions * (culture + nlu)
    faith = (v.faith_top + v.faith_threshold + v.faith_random + len(v.additivity_k)) * v.faith_examples
    rescored = identification if "stability" in analyses else 0
    methods = list(dict.fromkeys(["gxa", *v.faith_methods])) if v.faith_methods else []
    compared = len(methods) * (1 + v.random_seeds + v.faith_top + v.faith_threshold + v.faith_random)
    text = (
        f"{conditions} conditions x {culture + nlu:,} items = {evals:,} item evaluations; "
        f"{faith:,} faithfulness passes; {rescored:,} identification examples scored again in "
        f"{v.folds} folds"
    )
    if methods:
        text += (
            f"; {len(methods)} scoring methods ({', '.join(methods)}) on {v.faith_examples} examples each "
            f"(ig: sites x layers x ig_steps passes per example) and {compared * v.faith_examples:,} ablation passes"
        )
    return StageWork("validate", evals + faith + 2 * rescored + compared * v.faith_examples, text)


def _train(config: PipelineConfig, items: Mapping[str, int]) -> StageWork:
    t = config.train or {}
    sets = t.get("modules", ["top", "bottom", "random"])
    sets = [s for s in sets.split(",") if s.strip()] if isinstance(sets, str) else list(sets)
    examples = int(t.get("max_examples", 10_000)) or 0
    batch = int(t.get("batch_size", 16))
    steps = math.ceil(float(t.get("epochs", 1.0)) * examples / batch) if examples else 0
    benches = t.get("benchmarks") or list(items)
    n = sum(items.get(b, 0) for b in benches)
    conditions = 1 + len(sets)
    bound = "at most " if examples else ""
    text = (
        f"{len(sets)} sets x {bound}{steps:,} optimizer steps of {batch} examples"
        + (" (every training example)" if not examples else "")
        + f"; {conditions} models x {n:,} items = {conditions * n:,} item evaluations"
    )
    return StageWork("train", 3 * len(sets) * steps * batch + conditions * n, text)


def planned_work(config: PipelineConfig, counts: Mapping[str, int]) -> list[StageWork]:
    """The planned work of every stage that runs, from ``counts``: export step key -> examples."""
    items = _eval_counts(config, counts)
    score = _scoring(config, counts)
    out = [score]
    if config.runs("evaluate"):
        out.append(_evaluate(config, items))
    if config.runs("train"):
        out.append(_train(config, items))
    if config.runs("validate"):
        ident = sum(counts.get(rundir.export_key("score", b), 0) for b in config.score.datasets)
        out.append(_validate(config, items, ident))
    return out


def planned_lines(config: PipelineConfig, counts: Mapping[str, int]) -> list[str]:
    """``Planned work`` and one line per stage, as ``run --dry-run`` prints them."""
    work = planned_work(config, counts)
    width = max(len(w.stage) for w in work)
    return [
        "Planned work (upper bounds; a forward pass per item and condition, see docs/pipeline.md):",
        *(f"  {w.stage:<{width}}  {w.text}" for w in work),
    ]
