"""The ``select`` stage: the culture-general set, its random controls, and one culture-specific set per country."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from ... import rundir
from ...attribution.scoretable import ScoreTable
from ...selection import select_general, select_random, select_specific_many
from ..runner import Context, Stage


def _tables(ctx: Context, role: str) -> list[ScoreTable]:
    return [ScoreTable.load(ctx.run_dir / t.rel) for t in ctx.tables.values() if t.role == role]


def _exclude(ctx: Context, default_r: float) -> list[tuple[ScoreTable, float]]:
    """``(table, r)`` of each ``[select] exclude`` benchmark (its scored table; r defaults to the rule's own)."""
    tables = {t.bench: t for t in ctx.tables.values() if t.role == "exclude"}
    return [
        (ScoreTable.load(ctx.run_dir / tables[b].rel), default_r if r is None else r)
        for b, r in ctx.config.select.exclusions()
    ]


def _general(ctx: Context, datasets: list, controls: list, crc: Any, outputs: list[Path], info: dict[str, Any]) -> None:
    g, rnd = ctx.config.select.general, ctx.config.select.random
    general = select_general(datasets, controls, crc, **g.kwargs(), exclude=_exclude(ctx, g.r))
    outputs.append(general.save(ctx.run_dir / rundir.neurons_rel(rundir.GENERAL_STEM)))
    info["general"] = {"count": len(general), "by_site": general.site_counts()}
    for seed in range(rnd.seeds):
        if len(general) == 0:
            break
        outputs.append(
            select_random(general, seed, layer_matched=rnd.layer_matched).save(
                ctx.run_dir / rundir.neurons_rel(rundir.random_stem(seed))
            )
        )


def _specific(
    ctx: Context, datasets: list, controls: list, crc: Any, outputs: list[Path], info: dict[str, Any]
) -> None:
    sp = ctx.config.select.specific
    sets = select_specific_many(datasets, controls, crc, **sp.kwargs(), exclude=_exclude(ctx, sp.r))
    dropped = next(iter(sets.values())).params.get("dropped_countries", {}) if sets else {}
    for country, why in dropped.items():
        ctx.echo(f"[select] no culture-specific set for {country}: {why}")
    info["specific"] = {}
    for country, ns in sets.items():
        outputs.append(ns.save(ctx.run_dir / rundir.neurons_rel(rundir.specific_stem(country))))
        info["specific"][country] = len(ns)


def run(ctx: Context) -> None:
    sel = ctx.config.select

    def make() -> tuple[list[Path], dict[str, Any]]:
        datasets, controls = _tables(ctx, "score"), _tables(ctx, "control")
        crc = (_tables(ctx, "countryrc") or [None])[0]
        outputs: list[Path] = []
        info: dict[str, Any] = {}
        if sel.general.enabled:
            _general(ctx, datasets, controls, crc, outputs, info)
        if sel.specific.enabled:
            _specific(ctx, datasets, controls, crc, outputs, info)
        ctx.echo(
            "[select] general: "
            + (str(info["general"]["count"]) if "general" in info else "off")
            + "; specific: "
            + (", ".join(f"{k} {v}" for k, v in info.get("specific", {}).items()) or "off")
        )
        return outputs, info

    inputs = asdict(sel)
    if not inputs["exclude"]:
        del inputs["exclude"]  # added later; left out while unused so that older run directories resume
    ctx.step(
        rundir.SELECT_KEY,
        "select",
        "neuron sets",
        {"select": inputs},
        make,
        depends=[t.key for t in ctx.tables.values()],
    )
    ctx.log_stage("select")


def neuron_files(ctx: Context) -> dict[str, Path]:
    """``{file stem: path}`` of the neuron sets the select step wrote (as its manifest record says, so
    an older run directory's file names are found as they are)."""
    rec = ctx.manifest.steps.get(rundir.SELECT_KEY, {})
    return {Path(rel).stem: ctx.run_dir / rel for rel in rec.get("outputs", {})}


STAGE = Stage("select", run)
