"""Selective fine-tuning end to end: rank modules, train each module set, evaluate, compare.

:func:`run_selective_finetuning` is what ``culture-neurons train`` and the pipeline's ``train``
stage call. Layout of ``out``:

- ``ranking.csv``: every module with its culture-general neuron count (per site), parameter count
  and set membership; ``modules.json``: the module sets (names, paths, parameters, budget, seed);
- one Hugging Face model folder per set: ``out/<set>/`` (``top``, ``bottom``, ``random``, ...),
  or ``out`` itself when only one set is trained; each has its ``training.json``;
- with evaluation benchmarks: ``eval/<condition>.parquet`` (per-example rows of ``base`` and of
  each set, kept so a resumed run does not evaluate twice), ``eval/rows.parquet`` (all of them)
  and ``eval/summary.json``: per benchmark, for all examples and per split, each condition's
  metric with a 95% bootstrap CI, each set's change from ``base`` with a paired bootstrap CI, and
  the paired differences ``top - random`` and ``top - bottom``;
- ``finetune.json``: the settings, the sets, each training result and the comparison; written
  last, so its presence means the stage finished.

Every file is written atomically, and a rerun with the same settings skips finished work.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import pandas as pd

from ..data.example import Example
from ..errors import InputError
from ..evaluation.api import as_benchmarks, load_benchmarks
from ..evaluation.experiments import ExperimentResult
from ..evaluation.scorers import EvalOptions
from ..fileio import ensure_writable_parent, write_json_atomic
from ..models.loading import load_model, model_identity, release_memory
from ..selection.neuronset import NeuronSet
from ..version import __version__
from .choose import check_budget, choose_modules, parse_module_spec
from .compare import BASE, compare_conditions
from .data import DEFAULT_MAX_EXAMPLES, encode_examples, training_examples
from .eval_cache import ConditionEvaluations
from .modules import (
    DEFAULT_BUDGET,
    NAMED_SETS,
    ModuleRanking,
    ModuleSet,
    rank_modules,
)
from .sides import claim_input, side_changes
from .train import CONFIG_FILE, TrainConfig, TrainResult, diff_keys, finetune, finished_run, run_key

log = logging.getLogger(__name__)


@dataclass
class FinetuneRun:
    """What :func:`run_selective_finetuning` produced (all paths are inside ``out``)."""

    out: Path
    ranking: ModuleRanking
    sets: dict[str, ModuleSet]
    models: dict[str, Path]
    results: dict[str, TrainResult]
    summary: dict[str, Any] | None = None  # the comparison (eval/summary.json "results"), None without benchmarks
    paths: dict[str, Path] = field(default_factory=dict)
    sides: dict[str, Any] | None = None  # the pooled cultural and NLU sides (finetune.json "sides", :mod:`.sides`)


def set_names(module_sets: str | Sequence[str]) -> list[str]:
    """``"top,bottom"`` or ``["top", "bottom"]`` -> set specs; an explicit module list stays one spec."""
    if isinstance(module_sets, str):
        parts = parse_module_spec(module_sets)
        if parts and all(p in NAMED_SETS for p in parts):
            return parts
        return [module_sets] if parts else []
    return [str(s).strip() for s in module_sets if str(s).strip()]


def _label(spec: str) -> str:
    return spec if spec in NAMED_SETS else "custom"


def _load_neurons(neurons: Any) -> Any:
    if neurons is None or isinstance(neurons, NeuronSet):
        return neurons
    path = Path(neurons)
    if not path.is_file():
        raise InputError(f"neuron set {path} does not exist")
    return NeuronSet.load(path)


def _benchmarks(eval_benchmarks: Any) -> dict[str, list[Example]] | None:
    if eval_benchmarks is None:
        return None
    if isinstance(eval_benchmarks, Mapping):
        return as_benchmarks(eval_benchmarks)
    specs = list(eval_benchmarks)
    if not specs:
        return None
    if all(isinstance(s, Example) for s in specs):
        return as_benchmarks(specs)
    return load_benchmarks(specs)


def _holds_other_run(folder: Path, key: dict[str, Any]) -> bool:
    """True when ``folder`` holds a training run (finished or not) whose settings differ from ``key``."""
    try:
        previous = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return True  # unreadable: nothing in it can be resumed
    return bool(diff_keys(previous, json.loads(json.dumps(key))))


@dataclass
class FinetuneOptions:
    """How :func:`run_selective_finetuning` trains, evaluates and reports.

    Attributes:
        module_sets: sets to train: ``top``, ``bottom``, ``random``, ``full`` or a module list such
            as ``"mlp.3,attn.5"``; several as a list or ``"top,bottom,random"``. With one set,
            ``out`` itself is its model folder; with several, ``out/<set>/``.
        budget: the parameter budget of ``top``/``bottom``/``random``, a fraction of the model (0.1).
        seed: the ``bottom``/``random`` draws and the data subsample (42). Training has ``config.seed``.
        config: :class:`TrainConfig` (the paper's defaults: 1 epoch, lr 3e-5, batch 16, constant, AdamW).
        eval_benchmarks: ``{name: examples}``, or examples JSONL specs (``path`` or ``name=path``)
            as ``culture-neurons evaluate --bench`` takes them; None skips evaluation.
        eval_options: :class:`~culture_neurons.evaluation.scorers.EvalOptions` for the evaluation.
        data_dir, part, max_examples, templates: how the training data is built (10k examples by default).
        chat_template: render prompts with the chat template, for training and evaluation alike.
        dtype, device, site_map: model loading; training keeps float32 weights by default and
            autocasts to bfloat16 on GPUs that support it.
        resume: reuse finished sets and evaluations, resume an interrupted set from its checkpoint.
        n_boot: bootstrap resamples for the CIs.
        progress: progress bars; callbacks: extra ``transformers.TrainerCallback`` objects.
        ranking_only: write the ranking and the sets, then stop (no training).
        echo: where the ranking table and the sets are printed as soon as they are chosen (default: the log).
        subfolders: put each set's model in ``out/<set>/`` (None: only with several sets; the
            pipeline always does, so its layout does not depend on how many sets it trains).
        replace_stale: a set folder ``out/<set>/`` that holds a training run with other settings is
            removed and trained again instead of refused (the pipeline owns its folders).
        data_name: how ``finetune.json`` names the training data when ``data`` is a list of examples.
    """

    module_sets: str | Sequence[str] = ("top", "bottom", "random")
    budget: float = DEFAULT_BUDGET
    seed: int = 42
    config: TrainConfig | None = None
    eval_benchmarks: Mapping[str, Sequence[Example]] | Sequence[str | os.PathLike] | None = None
    eval_options: EvalOptions | None = None
    data_dir: str | os.PathLike | None = None
    part: str | None = None
    max_examples: int | None = DEFAULT_MAX_EXAMPLES
    templates: str | Sequence[str] | None = None
    chat_template: bool = True
    dtype: str | None = "float32"
    device: str | None = None
    site_map: str | os.PathLike | None = None
    resume: bool = True
    n_boot: int = 1000
    progress: bool = True
    callbacks: Sequence[Any] = ()
    ranking_only: bool = False
    echo: Callable[[str], Any] | None = None
    subfolders: bool | None = None
    replace_stale: bool = False
    data_name: str | None = None


def _check_sets(o: FinetuneOptions) -> list[str]:
    specs = set_names(o.module_sets)
    if not specs:
        raise InputError(
            "the module set is empty; give top, bottom, random, full, or module names such as mlp.3,attn.5"
        )
    labels = [_label(s) for s in specs]
    if len(set(labels)) != len(labels):
        raise InputError(f"module sets {specs} share a name; train at most one explicit module list per run")
    if any(s in ("top", "bottom", "random") for s in specs):
        check_budget(o.budget)
    return specs


def _check_neurons(ns: NeuronSet | None, specs: list[str]) -> None:
    if ns is None and any(s in ("top", "bottom") for s in specs):
        raise InputError("the top and bottom sets need a culture-general NeuronSet (--neurons)")
    if ns is not None and len(ns) == 0 and "top" in specs:
        raise InputError(f"NeuronSet {ns.kind!r} is empty, so the top set would be empty")


def _warn_shared(examples: Sequence[Example], benches: dict[str, list[Example]] | None) -> None:
    train_ids = {ex.id for ex in examples}
    for name, exs in (benches or {}).items():
        shared = sum(ex.id in train_ids for ex in exs)
        if shared:
            log.warning(
                "%d of %d %s evaluation examples are also training examples; their scores measure memorisation",
                shared,
                len(exs),
                name,
            )


def _rank_and_choose(run: FinetuneRun, loaded: Any, ns: NeuronSet | None, specs: list[str], o: FinetuneOptions) -> None:
    """Rank the modules, choose each set, write ``ranking.csv`` and ``modules.json`` and show them."""
    ranking = rank_modules(loaded, ns, site_map=o.site_map)
    sets = {_label(spec): choose_modules(ranking, spec, o.budget, o.seed) for spec in specs}
    ranking.save(run.paths["ranking"], sets)
    write_json_atomic(
        run.paths["modules"],
        {
            "budget": o.budget,
            "seed": o.seed,
            "total_params": ranking.total_params,
            "family": ranking.family,
            "neuron_set": None if ns is None else {"kind": ns.kind, "count": len(ns), "sha256": ns.content_hash()},
            "sets": {k: v.to_dict() for k, v in sets.items()},
        },
    )
    show = o.echo or log.info
    show(
        f"module ranking ({ranking.neuron_set or 'no neuron set'}, {ranking.total_params:,} parameters):\n"
        f"{ranking.table(sets)}"
    )
    for s in sets.values():
        show(s.describe())
    flat = len(sets) == 1 if o.subfolders is None else not o.subfolders
    run.ranking, run.sets = ranking, sets
    run.models = {k: (run.out if flat else run.out / k) for k in sets}


def _train_sets(
    run: FinetuneRun,
    model: str | os.PathLike,
    loaded: Any,
    tokenizer: Any,
    examples: list[Example],
    evals: ConditionEvaluations,
    meta: dict[str, Any],
    o: FinetuneOptions,
) -> None:
    """Train (or reuse) every set from a fresh copy of the base, evaluating each after training."""
    config = o.config or TrainConfig()
    encoded = encode_examples(tokenizer, examples, o.chat_template, config.max_length)
    identity = model_identity(loaded)
    dirty = False
    for label, module_set in run.sets.items():
        folder = run.models[label]
        key = run_key(identity, encoded, module_set, config, o.chat_template)
        done = finished_run(folder, key) if o.resume else None
        if done is not None and evals.has(label):
            log.info("%s: finished earlier in %s", label, folder)
            run.results[label] = done
            evals.run(label, None, tokenizer, use_cache=True)
            continue
        if o.replace_stale and folder != run.out and _holds_other_run(folder, key):
            log.info("%s: %s holds a run with other settings; training it again", label, folder)
            shutil.rmtree(folder)
        # Rows cached for an earlier model of this set must not outlive it (e.g. after a kill
        # between training and evaluation of a retrained set).
        evals.forget(label)
        if dirty:
            loaded = None  # the previous set's model goes before the next base copy loads
            release_memory()
            loaded, tokenizer = load_model(model, dtype=o.dtype, device=o.device, progress=o.progress)
        dirty = True
        run.results[label] = finetune(
            loaded,
            tokenizer,
            examples,
            module_set,
            folder,
            config,
            chat_template=o.chat_template,
            resume=o.resume,
            callbacks=o.callbacks,
            progress=o.progress,
            meta={"run": meta},
        )
        evals.run(label, loaded, tokenizer, use_cache=False)
    loaded = None
    release_memory()


def _write_results(
    run: FinetuneRun,
    model: str | os.PathLike,
    evals: ConditionEvaluations,
    meta: dict[str, Any],
    opts: EvalOptions,
    o: FinetuneOptions,
) -> None:
    config = o.config or TrainConfig()
    conditions = [BASE, *run.sets]
    if evals.benches:
        rows = pd.concat([evals.frames[c] for c in conditions], ignore_index=True)
        run.summary = compare_conditions(rows, list(run.sets), o.n_boot, 0)
        run.sides = side_changes(rows, evals.benches, list(run.sets), o.n_boot, 0)
        eval_config = {
            "experiment": "finetune",
            "conditions": conditions,
            "options": opts.to_dict(),
            "n_boot": o.n_boot,
            "benchmarks": list(evals.benches),
        }
        rows_path, summary_path = ExperimentResult(rows, run.summary, eval_config).save(evals.folder)
        run.paths.update({"eval_rows": rows_path, "eval_summary": summary_path})
    run.paths["finetune"] = run.out / "finetune.json"
    write_json_atomic(
        run.paths["finetune"],
        {
            "model": str(model),
            "data": meta["data"],
            "budget": o.budget,
            "seed": o.seed,
            "config": config.to_dict(),
            "sets": {k: v.to_dict() for k, v in run.sets.items()},
            "models": {k: str(v) for k, v in run.models.items()},
            "training": {
                k: {kk: vv for kk, vv in r.to_dict().items() if kk not in ("config", "module_set")}
                for k, r in run.results.items()
            },
            "results": run.summary,
            "sides": run.sides,
            "claim": claim_input(run.sides or {}),
            "package_version": __version__,
        },
    )


def run_selective_finetuning(
    model: str | os.PathLike,
    neurons: Any,
    data: str | os.PathLike | Sequence[Example],
    out: str | os.PathLike,
    options: FinetuneOptions | None = None,
    **overrides: Any,
) -> FinetuneRun:
    """Rank modules by culture-general neurons, fine-tune each module set from the same base, and
    compare the base and the fine-tuned models on the evaluation benchmarks.

    Args:
        model: base model (hub id, folder, ``.gguf`` or alias); reloaded fresh for every set.
        neurons: the culture-general NeuronSet (path or object); None only for ``full`` or module lists.
        data: training data: a benchmark name (``qnli``, ``mrpc``, ``demo-nlu``, ...; its ``train``
            part where it has one) or an examples JSONL, or a list of examples.
        out: output folder (see the module docstring for the layout).
        options: :class:`FinetuneOptions`; ``overrides`` replace single fields (``module_sets="top"``).
    """
    known = {f.name for f in fields(FinetuneOptions)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"run_selective_finetuning() got unknown option(s) {', '.join(unknown)}")
    o = replace(options or FinetuneOptions(), **overrides)
    (o.config or TrainConfig()).validate()
    specs = _check_sets(o)
    out = Path(out)
    ensure_writable_parent(out / "finetune.json")
    ns = _load_neurons(neurons)
    _check_neurons(ns, specs)
    benches = _benchmarks(o.eval_benchmarks)
    opts = o.eval_options or EvalOptions(chat_template=o.chat_template)
    opts.validate()
    examples = training_examples(
        data, data_dir=o.data_dir, part=o.part, max_examples=o.max_examples, seed=o.seed, templates=o.templates
    )
    _warn_shared(examples, benches)
    loaded, tokenizer = load_model(model, dtype=o.dtype, device=o.device, progress=o.progress)
    run = FinetuneRun(out, None, {}, {}, {}, None, {"ranking": out / "ranking.csv", "modules": out / "modules.json"})  # type: ignore[arg-type]
    _rank_and_choose(run, loaded, ns, specs, o)
    if o.ranking_only:
        return run
    evals = ConditionEvaluations(
        out,
        model,
        loaded,
        benches,
        opts,
        [BASE, *run.sets],
        progress=o.progress,
        chat_template=o.chat_template,
        dtype=o.dtype,
        resume=o.resume,
    )
    evals.run(BASE, loaded, tokenizer, use_cache=True)
    meta = {
        "base_model": str(model),
        "neuron_set": None if ns is None else ns.kind,
        "data": str(data) if isinstance(data, (str, os.PathLike)) else (o.data_name or "examples"),
    }
    _train_sets(run, model, loaded, tokenizer, examples, evals, meta, o)
    _write_results(run, model, evals, meta, opts, o)
    return run
