"""The resamples of the ``select`` stage's stability selection (``[select.general] stability = {...}``).

Not a stage of its own: the select stage calls :func:`resamples` before it selects. Each identification
(``score``) benchmark's questions are split into ``blocks`` blocks, balanced per country and by question
(every template and option-order variant of one question in the same block, as validity's folds), and
each block is scored once as its own step (``resample:<bench>/<b>-of-<B>-seed<s>``, see
:func:`culture_neurons.rundir.block_key`), so a killed run resumes block by block. A resample is a
random half of the blocks, summed; halves come in complementary pairs
(:func:`culture_neurons.selection.stability.complementary_halves`), so ``resamples`` halves cost one
scoring of the identification set in all, not ``resamples / 2``. Control, CountryRC and exclusion
tables are not resampled: every half is selected against the run's full ones.
"""

from __future__ import annotations

from functools import reduce
from pathlib import Path
from typing import Any

from ... import rundir
from ...attribution.engine import score_examples
from ...attribution.scoretable import ScoreTable
from ...selection.options import StabilityOptions
from ...selection.stability import Resample, complementary_halves
from ...validity.folds import assign_folds
from ..config import scoring_options
from ..runner import Context, FileRef


def _score_block(ctx: Context, f: FileRef, block: int, opts: StabilityOptions) -> FileRef:
    key = rundir.block_key(f.bench, block, opts.blocks, opts.seed)
    rel = rundir.block_rel(f.bench, block, opts.blocks, opts.seed)
    scoring = scoring_options(ctx.config)
    inputs = {
        "options": scoring.identity(),
        "model": rundir.model_fingerprint(ctx.config.model),
        "block": block,
        "blocks": opts.blocks,
        "seed": opts.seed,
    }

    def make() -> tuple[list[Path], dict[str, Any]]:
        model, tokenizer = ctx.model()
        examples = ctx.read(f.rel)
        groups = list(dict.fromkeys(ex.group for ex in examples))  # every block gets every group, so halves add
        folds = assign_folds(examples, opts.blocks, opts.seed)
        mine = [ex for ex, b in zip(examples, folds) if b == block]
        table = score_examples(
            model, tokenizer, mine, scoring, site_map=ctx.config.model.site_map, groups=groups, progress=ctx.progress
        )
        out = ctx.run_dir / rel
        if ctx.main:
            out.parent.mkdir(parents=True, exist_ok=True)
            table.save(out)
        return [out], {"n": table.num_examples}

    ctx.step(key, "select", f"{f.bench} block {block + 1}/{opts.blocks}", inputs, make, depends=[f.key], all_ranks=True)
    return FileRef(key, rel, f.bench, "score")


def block_tables(ctx: Context, opts: StabilityOptions) -> dict[str, list[FileRef]]:
    """``{export name: [block table of each block]}`` of every identification benchmark, scored where stale."""
    out = {}
    for name, t in ctx.tables.items():
        if t.role == "score":
            out[name] = [_score_block(ctx, ctx.exports[name], b, opts) for b in range(opts.blocks)]
    return out


def resamples(
    ctx: Context,
    blocks: dict[str, list[FileRef]],
    opts: StabilityOptions,
    controls: list[ScoreTable],
    countryrc: ScoreTable | None,
) -> list[Resample]:
    """The ``opts.resamples`` halves: each dataset's blocks of one half summed, with the full controls and CountryRC."""
    loaded = {name: [ScoreTable.load(ctx.run_dir / ref.rel) for ref in refs] for name, refs in blocks.items()}
    out = []
    for i, half in enumerate(complementary_halves(opts.blocks, opts.resamples, opts.seed)):
        datasets = [reduce(lambda a, b: a + b, [tables[b] for b in half]) for tables in loaded.values()]
        out.append(Resample(datasets, controls, countryrc, name=f"half-{i}:blocks-{'-'.join(map(str, half))}"))
    return out


def block_keys(blocks: dict[str, list[FileRef]]) -> list[str]:
    """The block steps' keys (the select step depends on them)."""
    return [ref.key for refs in blocks.values() for ref in refs]
