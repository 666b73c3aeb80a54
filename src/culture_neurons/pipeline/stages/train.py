"""The ``train`` stage: selective fine-tuning of the run's model, configured by ``[train]``.

One pipeline step, ``train``, calls :func:`~culture_neurons.training.api.run_selective_finetuning` with

- the run's culture-general set (``neurons/general.json``),
- the run's exported evaluation examples (``examples/eval-*.jsonl``) and ``[evaluate]`` scorer options,
- the run's model, site map and chat-template setting,

and writes into ``RUN_DIR/train/`` (``train/<set>/`` per module set; the layout of
:mod:`culture_neurons.training.api`). The step's recorded outputs are the small files
(``finetune.json``, ``ranking.csv``, ``modules.json``, ``eval/summary.json``, ``eval/rows.parquet``
and each set's ``training.json``), never the model weights: hashing gigabytes on every rerun
would cost more than the check is worth, and ``training.json`` is written after the weights.

Resume: a rerun with the same settings skips the step. A step that was killed runs again and
:func:`run_selective_finetuning` reuses every finished set and evaluation and resumes an
unfinished set from its last checkpoint. Changing a training setting retrains the sets it affects
(their folders are replaced); changing the model wipes ``train/`` first, since nothing trained
from another base can be reused.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ... import rundir
from ...data import get_benchmark
from ...data.registry import locate_data
from ...distributed import local_device, world
from ...errors import ConfigError, InputError
from ...fileio import sha256_file, write_json_atomic
from ...training.api import FinetuneOptions, run_selective_finetuning
from ...training.compare import format_comparison
from ...training.data import training_examples
from ...training.sides import claim_input, format_sides
from ..checks import parse_train
from ..config import PipelineConfig, eval_options
from ..runner import Context, Stage

BASE_STAMP = "base.json"  # what the trained sets in train/ were trained from


def _data_dir(section: Any, pipeline: PipelineConfig) -> str | None:
    if Path(section.data).expanduser().is_file():
        return None
    return section.data_dir or rundir.data_dir_for(get_benchmark(section.data), pipeline.data.data_dir)


def data_fingerprint(section: Any, pipeline: PipelineConfig) -> Any:
    """Cheap identity of the training data: the file's hash, or the benchmark's local files (size, mtime)."""
    path = Path(section.data).expanduser()
    if path.is_file():
        return {"file": sha256_file(path)}
    data_dir = _data_dir(section, pipeline)
    located = locate_data(get_benchmark(section.data), data_dir) if data_dir else None
    return {"benchmark": section.data, "data_dir": data_dir, "files": rundir.data_signature(located)}


def _training_examples(section: Any, pipeline: PipelineConfig, held_out: dict[str, list[Any]]) -> tuple[list[Any], int]:
    """The training examples, without those whose question is an evaluation example (``exclude_eval``).

    Ids differ by template (``demo-nlu/cs01#nlu1`` vs ``#cloze``), so a question is its id before ``#``.
    Returns the examples and how many were dropped.
    """
    examples = training_examples(
        section.data,
        data_dir=_data_dir(section, pipeline),
        part=section.part,
        max_examples=None,
        seed=section.seed,
        templates=section.templates,
    )
    dropped = 0
    if section.exclude_eval:
        seen = {ex.id.split("#", 1)[0] for exs in held_out.values() for ex in exs}
        kept = [ex for ex in examples if ex.id.split("#", 1)[0] not in seen]
        dropped = len(examples) - len(kept)
        if not kept:
            raise InputError(
                f"config key 'train.data': every {section.data} example is also an evaluation example; "
                "train on another dataset or part, or set train.exclude_eval = false"
            )
        examples = kept
    cap = section.max_examples or None
    return training_examples(examples, max_examples=cap, seed=section.seed), dropped


def _reset_if_base_changed(folder: Path, stamp: dict[str, Any]) -> None:
    """Remove ``train/`` when it holds sets trained from another base model (or dtype)."""
    path = folder / BASE_STAMP
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        previous = None
    except (OSError, ValueError):
        previous = {}
    if previous is not None and previous != json.loads(json.dumps(stamp)):
        shutil.rmtree(folder)
    write_json_atomic(path, stamp)


def _summary_info(run: Any) -> dict[str, Any]:
    """What the manifest keeps about the step: the sets, each benchmark's change from base (all examples) and the
    fine-tuning claim's numbers (``finetune.json`` ``claim``: the cultural side's top − random, docs/training.md)."""
    sets = {}
    for name, module_set in run.sets.items():
        result = run.results.get(name)
        sets[name] = {
            "modules": list(module_set.names),
            "params": module_set.params,
            "fraction": module_set.fraction,
            "neurons": sum(m.neurons for m in module_set.modules),
            "steps": None if result is None else result.steps,
            "train_loss": None if result is None else result.train_loss,
        }
    changes = {}
    for bench, entry in (run.summary or {}).items():
        part = entry.get("all", {})
        changes[bench] = {
            "base": part.get("base", {}).get("value"),
            **{name: part[name]["change"]["value"] for name in run.sets if name in part},
        }
    return {"sets": sets, "changes": changes, "claim": claim_input(run.sides or {})}


def _train(
    ctx: Context, section: Any, specs: list[str], evals: dict[str, dict[str, str]], base: dict[str, Any]
) -> tuple[list[Path], dict[str, Any]]:
    c = ctx.config
    folder = ctx.run_dir / rundir.TRAIN_DIR
    general = ctx.run_dir / rundir.neurons_rel(rundir.GENERAL_STEM)
    if {"top", "bottom"} & set(specs) and not general.is_file():
        raise ConfigError(
            "config key 'train.modules': top and bottom need neurons/general.json, which the select stage "
            "did not write; enable select.general"
        )
    # Training loads its own float32 copy of the base for every set; the evaluate stage's copy is
    # not needed again in this run (the report reads files), so it should not hold memory meanwhile.
    ctx.release_model()
    _reset_if_base_changed(folder, base)
    benches = {b: ctx.read(f["rel"]) for b, f in evals.items()}
    examples, dropped = _training_examples(section, c, benches)
    ctx.echo(
        f"[train] {len(examples)} training examples from {section.data}"
        + (f" ({dropped} left out: their questions are evaluation examples)" if dropped else "")
    )
    options = FinetuneOptions(
        module_sets=specs,
        budget=section.budget,
        seed=section.seed,
        config=section.options(),
        eval_benchmarks=benches or None,
        eval_options=eval_options(c),
        max_examples=None,
        chat_template=c.data.chat_template,
        dtype=section.dtype,
        device=local_device(c.model.device),
        site_map=c.model.site_map,
        resume=True,
        n_boot=section.n_boot or 1000,
        progress=ctx.progress,
        echo=ctx.echo,
        subfolders=True,
        replace_stale=True,
        data_name=section.data,
    )
    run = run_selective_finetuning(c.model.name, general if general.is_file() else None, examples, folder, options)
    for name, result in run.results.items():
        state = "finished earlier" if result.skipped else f"{result.steps} steps in {result.seconds:.1f} s"
        ctx.echo(f"[train] {name}: {result.trainable_params:,} trained parameters, {state}")
    if run.summary:
        ctx.echo(
            format_comparison(
                {b: {k: v for k, v in e.items() if k in ("metric", "all")} for b, e in run.summary.items()}
            )
        )
    if run.sides:
        ctx.echo(format_sides(run.sides))
    outputs = list(run.paths.values()) + [m / "training.json" for m in run.models.values()]
    return outputs, _summary_info(run)


def run(ctx: Context) -> None:
    """One resumable step that fine-tunes and evaluates each module set."""
    c = ctx.config
    section = parse_train(dict(c.train or {}), c)
    if world()[1] > 1:
        # Raised on every rank before the step, so no rank waits at a barrier for the others.
        raise ConfigError(
            "config section [train]: the fine-tuning stage runs in one process; run the pipeline without "
            "torchrun to train (the other stages resume from this run directory)"
        )
    specs = section.module_sets()
    evals = {
        b: {"key": rundir.export_key("eval", b), "rel": rundir.examples_rel("eval", b)}
        for b in section.benchmarks or []
    }
    planned = ctx.dry_run and rundir.SELECT_KEY in ctx.pending
    neurons_sha = ctx.manifest.output_hashes(rundir.SELECT_KEY).get(rundir.neurons_rel(rundir.GENERAL_STEM))
    base = {"model": rundir.model_fingerprint(c.model), "dtype": section.dtype}
    inputs = {
        "train": asdict(section),
        "base": base,
        "chat_template": c.data.chat_template,
        "eval_options": eval_options(c).to_dict(),
        "neurons_sha256": neurons_sha,
        "data": data_fingerprint(section, c),
    }
    ctx.step(
        rundir.TRAIN_KEY,
        "train",
        "selective fine-tuning",
        inputs,
        lambda: _train(ctx, section, specs, evals, base),
        depends=[f["key"] for f in evals.values()],
        unknown_inputs=planned,
    )
    ctx.log_stage("train")


STAGE = Stage("train", run, enabled=lambda config: config.runs("train"))
