"""The ``evaluate`` stage: every planned condition once per benchmark (cached), then each experiment's summary.

The plan comes from :mod:`culture_neurons.evaluation.plan`, the same planner the Python API's
``run_ablation`` and ``run_cross_culture`` use; the pipeline only adds caching: the ``original``
rows are shared by every experiment, and a condition depends on its own neuron file's hash, not
on the whole selection, so changing the general threshold leaves the culture-specific conditions
untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ... import rundir
from ...chance import chance_warning, scorer_fix
from ...data import get_benchmark, metric_of
from ...evaluation import plan as planner
from ...evaluation.api import evaluate_rows, evaluate_together, read_rows, write_rows
from ...evaluation.country_random import country_random_set
from ...evaluation.experiments import ExperimentResult, summarise_experiment
from ...intervention import RowCondition
from ...selection import NeuronSet
from ..config import eval_options
from ..cross_culture_keys import related_groups
from ..runner import Context, FileRef, Stage
from ..study_size import CONDITIONS_PER_PASS
from .select import neuron_files


@dataclass
class Sets:
    """The neuron files the plan may use: ``{stem: path}`` (path None while a dry run plans them)."""

    paths: dict[str, Path | None]

    def randoms(self) -> list[tuple[str, str]]:
        seeds = sorted(s for s in (rundir.random_seed_of(n) for n in self.paths) if s is not None)
        return [(f"random:{s}", rundir.random_stem(s)) for s in seeds]

    def specifics(self) -> list[str]:
        return sorted(n for n in self.paths if rundir.is_specific(n))

    def load(self, stem: str) -> NeuronSet:
        """The set of a neuron file's stem, or a random set drawn at a country's size (``rundir.drawn_stem``)."""
        drawn = rundir.drawn_of(stem)
        if drawn is None:
            return NeuronSet.load(self.paths[stem])
        like = NeuronSet.load(self.paths[drawn[0]])
        return country_random_set(like.kind.split(":", 1)[1], like, drawn[1])


def _sets(ctx: Context, planned: bool) -> Sets:
    c = ctx.config
    if planned and not ctx.manifest.steps.get(rundir.SELECT_KEY, {}).get("outputs"):
        # The neuron sets do not exist yet: plan with the configured names.
        stems = (
            ([rundir.GENERAL_STEM] + [rundir.random_stem(s) for s in range(c.select.random.seeds)])
            if c.select.general.enabled
            else []
        )
        countries = c.select.specific.countries
        stems += [rundir.specific_stem(x) for x in (countries if isinstance(countries, list) else [])]
        return Sets({n: None for n in stems})
    return Sets(dict(neuron_files(ctx)))


def _countries(ctx: Context, sets: Sets) -> list[tuple[str, str]]:
    """``(country, stem)`` of the non-empty culture-specific sets (an empty one cannot be suppressed)."""
    usable, skipped = [], []
    for stem in sets.specifics():
        path = sets.paths[stem]
        if path is None:  # planned in a dry run
            usable.append((stem, stem))
            continue
        ns = NeuronSet.load(path)
        if len(ns) == 0:
            skipped.append(stem.removeprefix("specific-"))
        else:
            usable.append((ns.kind.split(":", 1)[1], stem))
    if skipped:
        ctx.echo(f"[evaluate] cross-culture leaves out {', '.join(skipped)}: no culture-specific neurons were selected")
    return usable


def make_plan(ctx: Context, evals: dict[str, FileRef], sets: Sets) -> planner.Plan:
    """The conditions and experiments the config asks for, over the sets that exist."""
    wanted = ctx.config.evaluate.experiments
    benches = list(evals)
    culture = [
        b for b in evals if get_benchmark(b).by_country and get_benchmark(b).kind not in ("countryrc", "control")
    ]
    plan = planner.Plan()
    plan.add([planner.original(benches)])
    e = ctx.config.evaluate
    not_nlu = [b for b in benches if get_benchmark(b).kind != "nlu"]
    narrow = (e.nlu_random, not_nlu) if e.nlu_random is not None else None
    for name, op in (("ablation", "suppress"), ("enhancement", "enhance")):
        if name in wanted and rundir.GENERAL_STEM in sets.paths:
            plan.add(*planner.ablation(("general", rundir.GENERAL_STEM), sets.randoms(), benches, op, narrow=narrow))
    if "cross-culture" in wanted and culture and sets.specifics():
        countries = _countries(ctx, sets)
        if countries:
            randoms = [
                (c, [rundir.drawn_stem(stem, k) for k in range(e.cross_culture_random)]) for c, stem in countries
            ]
            plan.add(*planner.cross_culture(countries, culture, "suppress", randoms, related_groups(e)))
    return plan


@dataclass
class Cell:
    """One (condition, benchmark) step: its key, rows file and inputs."""

    cond: planner.Condition
    ref: FileRef
    key: str
    rel: str
    inputs: dict[str, Any]
    unknown: bool


def _cell(ctx: Context, cond: planner.Condition, f: FileRef, planned: bool) -> Cell:
    c, e = ctx.config, ctx.config.evaluate
    stem, bench = cond.neurons, f.bench
    key = rundir.condition_key(bench, cond.label)
    rel = rundir.recorded_output(ctx.manifest.steps, key, rundir.condition_rel(bench, cond.label), ".parquet")
    drawn = rundir.drawn_of(stem) if stem else None  # a drawn random set depends on the file it is drawn like
    source = drawn[0] if drawn else stem
    neurons_sha = ctx.manifest.output_hashes(rundir.SELECT_KEY).get(rundir.neurons_rel(source)) if stem else None
    inputs = {
        "label": cond.label,
        "op": cond.op,
        "factor": e.factor if cond.op == "enhance" else None,
        "options": eval_options(c).identity(),
        "neurons": stem,
        "neurons_sha256": neurons_sha,
        "model": rundir.model_fingerprint(c.model),
    }
    if cond.countries is not None:  # only then, so that the digests of whole-benchmark conditions stay as they were
        inputs["countries"] = list(cond.countries)
    if metric_of(bench) == "acc_norm":  # the score follows acc_norm there (rows scored before that are stale)
        inputs["metric"] = "acc_norm"
    return Cell(cond, f, key, rel, inputs, planned and stem is not None)


def _examples(ctx: Context, cell: Cell) -> list[Any]:
    """The examples a cell evaluates: its benchmark's, or only its condition's countries'."""
    return cell.cond.select(ctx.read(cell.ref.rel))


def _passes(ctx: Context, cells: list[Cell]) -> dict[str, list[Cell]]:
    """``{cell key: the cells evaluated with it}`` for the pending cells evaluated together: the same benchmark and
    example subset, at most :data:`CONDITIONS_PER_PASS` at a time, in plan order."""
    if ctx.dry_run or not eval_options(ctx.config).batch_conditions:
        return {}
    groups: dict[tuple[str, Any], list[Cell]] = {}
    for x in cells:
        if not ctx.is_fresh(x.key, x.inputs, [x.ref.key], x.unknown):
            groups.setdefault((x.ref.bench, x.cond.countries), []).append(x)
    out: dict[str, list[Cell]] = {}
    for group in groups.values():
        for start in range(0, len(group), CONDITIONS_PER_PASS):
            chunk = group[start : start + CONDITIONS_PER_PASS]
            if len(chunk) > 1:
                out.update({x.key: chunk for x in chunk})
    return out


def _evaluate_group(ctx: Context, group: list[Cell], sets: Sets, bar: Any) -> dict[str, pd.DataFrame]:
    """The rows of a pass's cells (one benchmark, one example subset), every condition in one pass."""
    c = ctx.config
    model, tokenizer = ctx.model()
    pairs = [
        (
            x.cond.label,
            RowCondition(sets.load(x.cond.neurons) if x.cond.neurons else None, x.cond.op, c.evaluate.factor),
        )
        for x in group
    ]
    examples = _examples(ctx, group[0])
    opts = eval_options(c)
    got = evaluate_together(model, tokenizer, group[0].ref.bench, examples, pairs, opts, bar, c.model.site_map)
    return {x.key: got[x.cond.label] for x in group}


def _condition(ctx: Context, cell: Cell, sets: Sets, ready: dict[str, pd.DataFrame], bar: Any) -> str:
    """One (condition, benchmark) step (its rows from ``ready`` when evaluated together); returns its rows' path."""
    c, e = ctx.config, ctx.config.evaluate
    cond, f, rel = cell.cond, cell.ref, cell.rel
    stem, bench = cond.neurons, f.bench

    def make() -> tuple[list[Path], dict[str, Any]]:
        examples = _examples(ctx, cell)
        rows = ready.pop(cell.key, None)
        if rows is None:
            model, tokenizer = ctx.model()
            ns = sets.load(stem) if stem else None
            rows = evaluate_rows(
                model,
                tokenizer,
                {bench: examples},
                ns,
                cond.op,
                e.factor,
                condition=cond.label,
                options=eval_options(c),
                site_map=c.model.site_map,
            )
            bar.update(len(examples))
        if ctx.main:
            write_rows(rows, ctx.run_dir / rel)
        return [ctx.run_dir / rel], {"n": len(examples), "value": float(rows["score"].mean()) * 100}

    res = ctx.step(
        cell.key,
        "evaluate",
        f"{bench} · {cond.label}",
        cell.inputs,
        make,
        depends=[f.key],
        all_ranks=True,
        unknown_inputs=cell.unknown,
    )
    if res.status != "ran":
        bar.update(len(_examples(ctx, cell)) if (ctx.run_dir / f.rel).exists() else 0)
    if cond.label == planner.ORIGINAL:
        export = ctx.result_of(f.key)
        chance = export.info.get("chance") if export else None
        ctx.baseline.append(
            {"benchmark": bench, "n": res.info.get("n"), "accuracy": res.info.get("value"), "chance": chance}
        )
        _baseline_warning(ctx, bench, res.info.get("value"), chance, res.info.get("n"))
    return rel


def _baseline_warning(ctx: Context, bench: str, accuracy: float | None, chance: float | None, n: int | None) -> None:
    if accuracy is None or chance is None or not n:
        return
    fix = scorer_fix(ctx.config.evaluate.scorer) + "; the interventions' effects on this benchmark say little"
    warning = chance_warning("baseline accuracy", accuracy / 100, chance / 100, int(n), fix)
    if warning:
        ctx.warn(f"[evaluate] {bench}: {warning}")


def _experiment(ctx: Context, exp: planner.Experiment, rels: dict[tuple[str, str], str]) -> None:
    e = ctx.config.evaluate
    opts = eval_options(ctx.config)
    labels, benches = exp.labels, list(exp.benchmarks)
    folder = ctx.run_dir / rundir.experiment_rel(exp.name)

    def make() -> tuple[list[Path], dict[str, Any]]:
        rows = pd.concat(
            [read_rows(ctx.run_dir / rels[(b, lab)]) for lab in labels for b in benches if (b, lab) in rels],
            ignore_index=True,
        )
        config = {
            "experiment": exp.name,
            "options": opts.to_dict(),
            "n_boot": e.n_boot,
            "seed": e.seed,
            "benchmarks": benches,
            "factor": e.factor if exp.name == "enhancement" else None,
            "conditions": labels,
        }
        summary, matrix = summarise_experiment(rows, exp, e.n_boot, e.seed)
        result = ExperimentResult(rows, summary, config, matrix)
        paths = result.save(folder)
        extra = [folder / "matrix.csv"] if result.matrix is not None else []
        return [*paths, *extra], {"experiment": exp.name}

    keys = [rundir.condition_key(b, lab) for b in benches for lab in labels if (b, lab) in rels]
    inputs: dict[str, Any] = {"n_boot": e.n_boot, "seed": e.seed}
    if exp.related is not None:  # only cross-culture's summary reads the relatedness table
        inputs["related"] = [list(g) for g in exp.related]
    ctx.step(rundir.experiment_key(exp.name), "evaluate", exp.name, inputs, make, depends=keys)


def run(ctx: Context) -> None:
    if not ctx.config.evaluate.experiments:
        return
    evals = {f.bench: f for f in ctx.exports_of("eval")}
    planned = ctx.dry_run and rundir.SELECT_KEY in ctx.pending
    sets = _sets(ctx, planned)
    plan = make_plan(ctx, evals, sets)
    total = sum(
        len(cond.select(ctx.read(evals[b].rel))) if not ctx.dry_run or (ctx.run_dir / evals[b].rel).exists() else 0
        for cond, b in plan.cells()
    )
    bar = ctx.bar(total, "evaluate")
    cells = [_cell(ctx, cond, evals[b], planned) for cond, b in plan.cells()]
    passes = _passes(ctx, cells)
    rels: dict[tuple[str, str], str] = {}
    for x in cells:  # in plan order; a cell evaluated with others brings its whole pass, written when it ends
        if (x.ref.bench, x.cond.label) in rels:
            continue
        group = passes.get(x.key, [x])
        ready = _evaluate_group(ctx, group, sets, bar) if len(group) > 1 else {}
        for y in group:
            rels[(y.ref.bench, y.cond.label)] = _condition(ctx, y, sets, ready, bar)
    bar.close()
    for exp in plan.experiments:
        _experiment(ctx, exp, rels)
    ctx.log_stage("evaluate")


STAGE = Stage("evaluate", run, enabled=lambda config: config.runs("evaluate"))
