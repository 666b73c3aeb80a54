"""The ``score`` stage: one ScoreTable per scored, control and CountryRC file (checkpointed, resumable)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ... import rundir
from ...attribution.engine import score_examples
from ...chance import LETTER_FIX, chance_level, chance_warning
from ...distributed import barrier
from ..config import scoring_options
from ..estimate import estimate_line
from ..runner import Context, FileRef, Stage


def _remove_stale_checkpoints(ctx: Context, name: str, out: Path) -> None:
    # A checkpoint is only resumed by an interrupted attempt with the same inputs.
    if ctx.main:
        for stale in out.parent.glob(f"{out.name}.ckpt*"):
            ctx.echo(f"[score] {name}: removing {stale.name}, a checkpoint of earlier inputs")
            stale.unlink(missing_ok=True)
    barrier()


def _at_chance(ctx: Context, f: FileRef, examples: list, mean_p: float) -> str | None:
    """A warning when the scored set's mean target probability is at or below guessing (label and choice targets)."""
    target = ctx.config.score.target
    if f.role != "score" or target not in ("label", "choice"):
        return None
    fix = LETTER_FIX if target == "label" else "the neurons selected from these scores rest on answers at chance level"
    return chance_warning("mean target probability", mean_p, chance_level(examples), len(examples), fix)


def _inputs(ctx: Context, f: FileRef) -> dict[str, Any]:
    opts = scoring_options(ctx.config, control=f.role == "control")
    return {"options": opts.identity(), "model": rundir.model_fingerprint(ctx.config.model), "checkpoint_every": None}


def score_one(ctx: Context, name: str, f: FileRef) -> FileRef:
    c = ctx.config
    opts = scoring_options(c, control=f.role == "control")
    key, rel = rundir.score_key(f.role, f.bench), rundir.scores_rel(f.role, f.bench)
    inputs = _inputs(ctx, f)

    def make() -> tuple[list[Path], dict[str, Any]]:
        model, tokenizer = ctx.model()
        examples = ctx.read(f.rel)
        out = ctx.run_dir / rel
        ckpt = Path(f"{out}.ckpt") if c.score.checkpoint_every > 0 else None
        if not ctx.resuming:
            _remove_stale_checkpoints(ctx, name, out)
        start = time.perf_counter()
        table = score_examples(
            model,
            tokenizer,
            examples,
            opts,
            site_map=c.model.site_map,
            progress=ctx.progress,
            checkpoint=ckpt,
            checkpoint_every=max(c.score.checkpoint_every, 1),
        )
        seconds = time.perf_counter() - start
        if ctx.main:
            table.save(out)
        mean_p = float(table.prob_sums.sum() / max(table.num_examples, 1))
        rate = table.num_examples / max(seconds, 1e-9)
        ctx.echo(
            f"[score] {name}: {table.num_examples} examples, mean p {mean_p:.3f}, {seconds:.1f} s ({rate:.2f} ex/s)"
        )
        info = {"n": table.num_examples, "mean_p": mean_p, "mean_p_by_group": table.mean_prob(), "examples_per_s": rate}
        warning = _at_chance(ctx, f, examples, mean_p)
        if warning:
            info["warning"] = warning
        return [out], info

    res = ctx.step(key, "score", name, inputs, make, depends=[f.key], all_ranks=True)
    if res.info.get("warning"):
        ctx.warn(f"[score] {name}: {res.info['warning']}")
    if ctx.dry_run and "n" not in res.info:
        prev = ctx.result_of(f.key)
        res.info["n"] = prev.info.get("n") if prev else None
    return FileRef(key, rel, f.bench, f.role)


def run(ctx: Context) -> None:
    if ctx.progress and not ctx.dry_run:
        pending = [
            f
            for f in ctx.exports.values()
            if f.role != "eval" and not ctx.is_fresh(rundir.score_key(f.role, f.bench), _inputs(ctx, f), [f.key])
        ]
        if pending:
            ctx.echo(estimate_line(ctx, pending))
    for name, f in ctx.exports.items():
        if f.role != "eval":
            ctx.tables[name] = score_one(ctx, name, f)
    n = sum((s.info.get("n") or 0) for s in ctx.results if s.stage == "score")
    ctx.log_stage("score", f"{n} examples")


STAGE = Stage("score", run)
