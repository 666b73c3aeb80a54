"""The ``select`` stage: the culture-general set, its random controls, and one culture-specific set per country.

With ``[select.general] stability = {...}`` (or the same under ``[select.specific]``) the run's set is
the stability-selected one (:mod:`culture_neurons.selection.stability`) on random halves of the
identification questions (:mod:`.resample`), so every experiment, the claims and the report use it;
the plain rule's size and its Jaccard with the stable set are recorded in the set's params.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from ... import rundir
from ...attribution.scoretable import ScoreTable
from ...selection import select_general, select_random, select_specific_many
from ...selection.options import StabilityOptions
from ...selection.stability import Resample, stable_general, stable_specific_many
from ..runner import Context, FileRef, Stage
from . import resample


def _tables(ctx: Context, role: str) -> list[ScoreTable]:
    return [ScoreTable.load(ctx.run_dir / t.rel) for t in ctx.tables.values() if t.role == role]


def _exclude(ctx: Context, default_r: float) -> list[tuple[ScoreTable, float]]:
    """``(table, r)`` of each ``[select] exclude`` benchmark (its scored table; r defaults to the rule's own)."""
    tables = {t.bench: t for t in ctx.tables.values() if t.role == "exclude"}
    return [
        (ScoreTable.load(ctx.run_dir / tables[b].rel), default_r if r is None else r)
        for b, r in ctx.config.select.exclusions()
    ]


def _stable_line(rule: str, summary: dict[str, Any]) -> str:
    return (
        f"[select] {rule}: stability selection kept {summary['size']} of the plain rule's {summary['plain_size']} "
        f"neurons (frequency >= {summary['pi']:g} over {summary['resamples']} halves; Jaccard with the plain set "
        f"{summary['jaccard_plain']:.2f}; expected false selections <= {summary['bound']:.2f})"
    )


def _general(
    ctx: Context,
    datasets: list,
    controls: list,
    crc: Any,
    outputs: list[Path],
    info: dict[str, Any],
    halves: list[Resample] | None = None,
) -> None:
    g, rnd = ctx.config.select.general, ctx.config.select.random
    exclude = _exclude(ctx, g.r)
    general = select_general(datasets, controls, crc, **g.kwargs(), exclude=exclude)
    stable = None
    if halves is not None:
        result = stable_general(halves, g.stability.pi, **g.kwargs(), exclude=exclude, plain=general)
        stable = result.summary(general)
        ctx.echo(_stable_line("general", stable))
        general = result.set
        if not len(general):
            ctx.warn(
                "[select] the stable general set is empty: no neuron was selected in enough halves; "
                "lower select.general.stability.pi, raise t_mlp/t_attn, or score more questions"
            )
    outputs.append(general.save(ctx.run_dir / rundir.neurons_rel(rundir.GENERAL_STEM)))
    info["general"] = {"count": len(general), "by_site": general.site_counts()}
    if stable is not None:
        info["general"]["stability"] = stable
    for seed in range(rnd.seeds):
        if len(general) == 0:
            break
        outputs.append(
            select_random(general, seed, layer_matched=rnd.layer_matched).save(
                ctx.run_dir / rundir.neurons_rel(rundir.random_stem(seed))
            )
        )


def _specific(
    ctx: Context,
    datasets: list,
    controls: list,
    crc: Any,
    outputs: list[Path],
    info: dict[str, Any],
    halves: list[Resample] | None = None,
) -> None:
    sp = ctx.config.select.specific
    exclude = _exclude(ctx, sp.r)
    sets = select_specific_many(datasets, controls, crc, **sp.kwargs(), exclude=exclude)
    dropped = next(iter(sets.values())).params.get("dropped_countries", {}) if sets else {}
    for country, why in dropped.items():
        ctx.echo(f"[select] no culture-specific set for {country}: {why}")
    stable: dict[str, Any] = {}
    if halves is not None:
        results = stable_specific_many(halves, sp.stability.pi, **sp.kwargs(), exclude=exclude, plain=sets)
        for country, result in results.items():
            stable[country] = result.summary(sets[country])
            ctx.echo(_stable_line(f"specific {country}", stable[country]))
        sets = {country: result.set for country, result in results.items()}
    info["specific"] = {}
    for country, ns in sets.items():
        outputs.append(ns.save(ctx.run_dir / rundir.neurons_rel(rundir.specific_stem(country))))
        info["specific"][country] = len(ns)
    if stable:
        info["specific_stability"] = stable


def _stability_wanted(ctx: Context) -> dict[str, StabilityOptions]:
    """``{rule: options}`` of the enabled rules that ask for stability selection."""
    sel = ctx.config.select
    return {
        rule: section.stability
        for rule, section in (("general", sel.general), ("specific", sel.specific))
        if section.enabled and section.stability is not None
    }


def _inputs(ctx: Context) -> dict[str, Any]:
    inputs = asdict(ctx.config.select)
    if not inputs["exclude"]:
        del inputs["exclude"]  # added later; left out while unused so that older run directories resume
    for rule in ("general", "specific"):
        if inputs[rule].get("stability") is None:
            inputs[rule].pop("stability", None)  # the same for stability selection
    return inputs


def run(ctx: Context) -> None:
    sel = ctx.config.select
    wanted = _stability_wanted(ctx)
    blocks: dict[tuple[int, int], dict[str, list[FileRef]]] = {}
    for opts in wanted.values():  # scored before the selection step; rules with the same split share the blocks
        if (opts.blocks, opts.seed) not in blocks:
            blocks[(opts.blocks, opts.seed)] = resample.block_tables(ctx, opts)

    def make() -> tuple[list[Path], dict[str, Any]]:
        datasets, controls = _tables(ctx, "score"), _tables(ctx, "control")
        crc = (_tables(ctx, "countryrc") or [None])[0]
        halves = {
            rule: resample.resamples(ctx, blocks[(o.blocks, o.seed)], o, controls, crc) for rule, o in wanted.items()
        }
        outputs: list[Path] = []
        info: dict[str, Any] = {}
        if sel.general.enabled:
            _general(ctx, datasets, controls, crc, outputs, info, halves.get("general"))
        if sel.specific.enabled:
            _specific(ctx, datasets, controls, crc, outputs, info, halves.get("specific"))
        ctx.echo(
            "[select] general: "
            + (str(info["general"]["count"]) if "general" in info else "off")
            + "; specific: "
            + (", ".join(f"{k} {v}" for k, v in info.get("specific", {}).items()) or "off")
        )
        return outputs, info

    ctx.step(
        rundir.SELECT_KEY,
        "select",
        "neuron sets",
        {"select": _inputs(ctx)},
        make,
        depends=[t.key for t in ctx.tables.values()] + [k for b in blocks.values() for k in resample.block_keys(b)],
    )
    ctx.log_stage("select")


def neuron_files(ctx: Context) -> dict[str, Path]:
    """``{file stem: path}`` of the neuron sets the select step wrote (as its manifest record says, so
    an older run directory's file names are found as they are)."""
    rec = ctx.manifest.steps.get(rundir.SELECT_KEY, {})
    return {Path(rel).stem: ctx.run_dir / rel for rel in rec.get("outputs", {})}


STAGE = Stage("select", run)
