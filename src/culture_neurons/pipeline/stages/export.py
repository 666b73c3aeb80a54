"""The ``export`` stage: one examples file per (role, benchmark) — scored, control, CountryRC, evaluated."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ... import rundir
from ...chance import chance_level
from ...data import build_examples, get_benchmark, write_examples
from ...data.hub import hub_provenance
from ...data.labels import assert_labels_ok
from ...data.registry import count_by_group_split, locate_data
from ...data.sampling import cap_examples
from ..config import cap_for
from ..runner import Context, FileRef, Stage


def chance_percent(examples: Sequence[Any]) -> float | None:
    """Expected accuracy (%) of uniform guessing over each example's options; None unless every example has options."""
    if not examples or not all(ex.options or ex.labels for ex in examples):
        return None
    return 100.0 * chance_level(examples)


def jobs(ctx: Context) -> list[tuple[str, str, str, int]]:
    """``(role, benchmark, split, cap)`` of every file the run exports, in export order."""
    c = ctx.config
    out = [("score", b, c.score.split, cap_for(c.score.max_per_group, b)) for b in c.score.datasets]
    out += [("control", b, c.score.split, cap_for(c.score.max_per_group, b)) for b in c.score.controls]
    if c.score.countryrc:
        out.append(("countryrc", c.score.countryrc, c.score.split, cap_for(c.score.max_per_group, c.score.countryrc)))
    out += [("exclude", b, c.score.split, cap_for(c.score.max_per_group, b)) for b, _ in c.select.exclusions()]
    if c.runs("evaluate") or c.runs("train"):
        out += [("eval", b, c.evaluate.split, cap_for(c.evaluate.max_per_group, b)) for b in c.evaluate.benchmarks]
    return out


def _build(ctx: Context, bench: str, split: str, cap: int, data_dir: str | None, tokenizer: Any = None) -> list[Any]:
    c = ctx.config
    examples = build_examples(
        bench,
        split=split,
        countries=c.data.countries,
        data_dir=data_dir,
        tokenizer=tokenizer,
        templates=c.data.templates,
        labels=c.data.labels,
        **c.data.options.get(bench, {}),
    )
    return cap_examples(examples, max_per_group=cap)


def export_one(ctx: Context, role: str, bench: str, split: str, cap: int) -> FileRef:
    """The export step of one file; in a dry run, counts what the file would hold."""
    c = ctx.config
    key, rel = rundir.export_key(role, bench), rundir.examples_rel(role, bench)
    data_dir = rundir.data_dir_for(get_benchmark(bench), c.data.data_dir)
    located = locate_data(get_benchmark(bench), data_dir) if data_dir else None
    inputs = {
        "bench": bench,
        "role": role,
        "split": split,
        "cap": cap,
        "countries": c.data.countries,
        "templates": c.data.templates,
        "labels": c.data.labels,
        "options": c.data.options.get(bench, {}),
        "chat_template": c.data.chat_template,
        "tokenizer": c.model.name if c.data.chat_template else None,
        "data": rundir.data_signature(located),
    }
    revision = c.data.revisions.get(bench)
    if revision:  # only when pinned, so runs made before [data] revisions existed keep their inputs hash
        inputs["revision"] = revision

    def make() -> tuple[list[Path], dict[str, Any]]:
        tok = ctx.tokenizer() if c.data.chat_template else None
        with hub_provenance(revision) as fetched:
            examples = _build(ctx, bench, split, cap, data_dir, tok)
        if tok is not None and c.score.target == "label" and role != "eval" and any(ex.labels for ex in examples):
            assert_labels_ok(examples, tok, benchmark=bench)
        write_examples(ctx.run_dir / rel, examples)
        return [ctx.run_dir / rel], {
            "n": len(examples),
            "counts": count_by_group_split(examples),
            "chance": chance_percent(examples),
            "input_files": rundir.file_hashes(located),
            **({"hub": fetched} if fetched else {}),
        }

    res = ctx.step(key, "export", f"{bench} ({split})", inputs, make)
    if ctx.dry_run and res.status == "would run":
        # Count what would be exported now (no model or tokenizer needed for counting), not what an
        # earlier run recorded: the data, the caps or the countries may have changed since.
        exs = _build(ctx, bench, split, cap, data_dir)
        res.info.update(n=len(exs), chance=chance_percent(exs))
    return FileRef(key, rel, bench, role)


def run(ctx: Context) -> None:
    todo = jobs(ctx)
    bar = ctx.bar(len(todo), "export", unit="file")
    for role, bench, split, cap in todo:
        ctx.exports[rundir.export_name(role, bench)] = export_one(ctx, role, bench, split, cap)
        bar.update(1)
    bar.close()
    results = [x for x in ctx.results if x.stage == "export"]
    ctx.log_stage("export", ", ".join(f"{n}: {s.info.get('n', '?')}" for n, s in zip(ctx.exports, results)))


STAGE = Stage("export", run)
