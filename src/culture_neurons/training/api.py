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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .. import __version__
from ..data.example import Example
from ..errors import InputError
from ..fileio import ensure_writable_parent, sha256_json, write_json_atomic
from .data import DEFAULT_MAX_EXAMPLES, encode_examples, training_examples
from .modules import (
    DEFAULT_BUDGET,
    NAMED_SETS,
    ModuleRanking,
    ModuleSet,
    _check_budget,
    choose_modules,
    parse_module_spec,
    rank_modules,
)
from .train import CONFIG_FILE, TrainConfig, TrainResult, _diff_keys, finetune, finished_run, run_key

log = logging.getLogger(__name__)

BASE = "base"
CONTRASTS = (("top", "random"), ("top", "bottom"))


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


def _set_names(module_sets: str | Sequence[str]) -> list[str]:
    """``"top,bottom"`` or ``["top", "bottom"]`` -> set specs; an explicit module list stays one spec."""
    if isinstance(module_sets, str):
        parts = parse_module_spec(module_sets)
        if parts and all(p in NAMED_SETS for p in parts):
            return parts
        return [module_sets] if parts else []
    return [str(s).strip() for s in module_sets if str(s).strip()]


def _label(spec: str) -> str:
    return spec if spec in NAMED_SETS else "custom"


def compare_conditions(rows: pd.DataFrame, sets: Sequence[str], n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Per benchmark, for ``all`` and each split: every condition's metric (CI), each set's change
    from ``base`` (paired CI), and the ``top - random`` / ``top - bottom`` differences (paired CI)."""
    from ..evaluation.api import _metric
    from ..evaluation.experiments import condition_table, split_parts
    from ..evaluation.metrics import mean_ci, paired_change

    try:
        table = condition_table(rows, [BASE, *sets])
    except InputError as exc:
        raise InputError(f"{exc}; remove the eval folder and rerun") from None
    info = rows[rows["condition"] == BASE].set_index(["benchmark", "id"])
    summary: dict[str, Any] = {}
    for bench in rows.loc[rows["condition"] == BASE, "benchmark"].unique():
        block, meta, parts = split_parts(table, info, bench)
        entry: dict[str, Any] = {"metric": _metric(meta)}
        for part, index in parts.items():
            sub = block.loc[index]
            base = sub[BASE].to_numpy()
            res: dict[str, Any] = {BASE: mean_ci(base, n_boot, seed)}
            for name in sets:
                res[name] = {
                    "value": mean_ci(sub[name].to_numpy(), n_boot, seed),
                    "change": paired_change(base, sub[name].to_numpy(), n_boot, seed),
                }
            contrasts = {
                f"{a}-{b}": paired_change(sub[b].to_numpy(), sub[a].to_numpy(), n_boot, seed)
                for a, b in CONTRASTS
                if a in sets and b in sets
            }
            if contrasts:
                res["contrasts"] = contrasts
            entry[part] = res
        summary[str(bench)] = entry
    return summary


def _load_neurons(neurons: Any) -> Any:
    from ..selection.neuronset import NeuronSet

    if neurons is None or isinstance(neurons, NeuronSet):
        return neurons
    path = Path(neurons)
    if not path.is_file():
        raise InputError(f"neuron set {path} does not exist")
    return NeuronSet.load(path)


def _benchmarks(eval_benchmarks: Any) -> dict[str, list[Example]] | None:
    from ..evaluation.api import as_benchmarks, load_benchmarks

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
    return bool(_diff_keys(previous, json.loads(json.dumps(key))))


def run_selective_finetuning(
    model: str | os.PathLike,
    neurons: Any,
    data: str | os.PathLike | Sequence[Example],
    out: str | os.PathLike,
    *,
    module_sets: str | Sequence[str] = ("top", "bottom", "random"),
    budget: float = DEFAULT_BUDGET,
    seed: int = 42,
    config: TrainConfig | None = None,
    eval_benchmarks: Mapping[str, Sequence[Example]] | Sequence[str | os.PathLike] | None = None,
    eval_options: Any = None,
    data_dir: str | os.PathLike | None = None,
    part: str | None = None,
    max_examples: int | None = DEFAULT_MAX_EXAMPLES,
    templates: str | Sequence[str] | None = None,
    chat_template: bool = True,
    dtype: str | None = "float32",
    device: str | None = None,
    site_map: str | os.PathLike | None = None,
    resume: bool = True,
    n_boot: int = 1000,
    progress: bool = True,
    callbacks: Sequence[Any] = (),
    ranking_only: bool = False,
    echo: Callable[[str], Any] | None = None,
    subfolders: bool | None = None,
    replace_stale: bool = False,
    data_name: str | None = None,
) -> FinetuneRun:
    """Rank modules by culture-general neurons, fine-tune each module set from the same base, and
    compare the base and the fine-tuned models on the evaluation benchmarks.

    Args:
        model: base model (hub id, folder, ``.gguf`` or alias); reloaded fresh for every set.
        neurons: the culture-general NeuronSet (path or object); None only for ``full`` or module lists.
        data: training data: a benchmark name (``qnli``, ``mrpc``, ``demo-nlu``, ...; its ``train``
            part where it has one) or an examples JSONL, or a list of examples.
        out: output folder (see the module docstring for the layout).
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
        ranking_only: write the ranking and the sets, then stop (no training).
        echo: where the ranking table and the sets are printed as soon as they are chosen (default: the log).
        subfolders: put each set's model in ``out/<set>/`` (None: only with several sets; the
            pipeline always does, so its layout does not depend on how many sets it trains).
        replace_stale: a set folder ``out/<set>/`` that holds a training run with other settings is
            removed and trained again instead of refused (the pipeline owns its folders).
        data_name: how ``finetune.json`` names the training data when ``data`` is a list of examples.
    """
    from ..evaluation.api import evaluate as run_eval
    from ..evaluation.api import read_rows, write_rows
    from ..evaluation.scorers import EvalOptions
    from ..models.loading import load_model, model_identity, release_memory

    config = config or TrainConfig()
    config.validate()
    specs = _set_names(module_sets)
    if not specs:
        raise InputError(
            "the module set is empty; give top, bottom, random, full, or module names such as mlp.3,attn.5"
        )
    labels = [_label(s) for s in specs]
    if len(set(labels)) != len(labels):
        raise InputError(f"module sets {specs} share a name; train at most one explicit module list per run")
    if any(s in ("top", "bottom", "random") for s in specs):
        _check_budget(budget)
    out = Path(out)
    ensure_writable_parent(out / "finetune.json")
    ns = _load_neurons(neurons)
    if ns is None and any(s in ("top", "bottom") for s in specs):
        raise InputError("the top and bottom sets need a culture-general NeuronSet (--neurons)")
    if ns is not None and len(ns) == 0 and "top" in specs:
        raise InputError(f"NeuronSet {ns.kind!r} is empty, so the top set would be empty")
    benches = _benchmarks(eval_benchmarks)
    opts = eval_options or EvalOptions(chat_template=chat_template)
    opts.validate()
    examples = training_examples(
        data, data_dir=data_dir, part=part, max_examples=max_examples, seed=seed, templates=templates
    )
    if benches:
        train_ids = {ex.id for ex in examples}
        for name, exs in benches.items():
            shared = sum(ex.id in train_ids for ex in exs)
            if shared:
                log.warning(
                    "%d of %d %s evaluation examples are also training examples; their scores measure memorisation",
                    shared,
                    len(exs),
                    name,
                )

    loaded, tokenizer = load_model(model, dtype=dtype, device=device, progress=progress)
    ranking = rank_modules(loaded, ns, site_map=site_map)
    sets = {label: choose_modules(ranking, spec, budget, seed) for label, spec in zip(labels, specs)}
    flat = len(sets) == 1 if subfolders is None else not subfolders
    paths = {"ranking": out / "ranking.csv", "modules": out / "modules.json"}
    ranking.save(paths["ranking"], sets)
    write_json_atomic(
        paths["modules"],
        {
            "budget": budget,
            "seed": seed,
            "total_params": ranking.total_params,
            "family": ranking.family,
            "neuron_set": None if ns is None else {"kind": ns.kind, "count": len(ns), "sha256": ns.content_hash()},
            "sets": {k: v.to_dict() for k, v in sets.items()},
        },
    )
    show = echo or log.info
    show(
        f"module ranking ({ranking.neuron_set or 'no neuron set'}, {ranking.total_params:,} parameters):\n{ranking.table(sets)}"
    )
    for s in sets.values():
        show(s.describe())
    run = FinetuneRun(out, ranking, sets, {k: (out if flat else out / k) for k in sets}, {}, None, paths)
    if ranking_only:
        return run

    eval_dir = out / "eval"
    cached = {c: eval_dir / f"{c}.parquet" for c in [BASE, *sets]}
    frames: dict[str, pd.DataFrame] = {}
    if benches:
        # Cached rows are reused only for the same benchmarks and evaluation options.
        stamp = {
            "options": opts.to_dict(),
            "benchmarks": sha256_json({k: [ex.id for ex in v] for k, v in benches.items()}),
            "chat_template": chat_template,
            "model": str(model),
            "dtype": dtype,
            "model_config_sha256": model_identity(loaded)["config_sha256"],
        }
        stamp_path = eval_dir / "conditions.json"
        try:
            fresh = json.loads(stamp_path.read_text(encoding="utf-8")) != json.loads(json.dumps(stamp))
        except (OSError, ValueError):
            fresh = True
        if fresh or not resume:
            for path in cached.values():
                path.unlink(missing_ok=True)
            write_json_atomic(stamp_path, stamp)

    def evaluate_as(condition: str, m: Any, use_cache: bool) -> None:
        if not benches:
            return
        if use_cache and cached[condition].is_file():
            frames[condition] = read_rows(cached[condition])
            return
        result = run_eval(m, tokenizer, benches, options=opts, n_boot=0, progress=progress)
        frame = result.rows.copy()
        frame["condition"] = condition
        write_rows(frame, cached[condition])
        frames[condition] = frame

    evaluate_as(BASE, loaded, use_cache=True)
    encoded = encode_examples(tokenizer, examples, chat_template, config.max_length)
    identity = model_identity(loaded)
    meta = {
        "base_model": str(model),
        "neuron_set": None if ns is None else ns.kind,
        "data": str(data) if isinstance(data, (str, os.PathLike)) else (data_name or "examples"),
    }
    dirty = False
    for label, module_set in sets.items():
        folder = run.models[label]
        key = run_key(identity, encoded, module_set, config, chat_template)
        done = finished_run(folder, key) if resume else None
        if done is not None and (not benches or cached[label].is_file()):
            log.info("%s: finished earlier in %s", label, folder)
            run.results[label] = done
            evaluate_as(label, None, use_cache=True)
            continue
        if replace_stale and folder != out and _holds_other_run(folder, key):
            log.info("%s: %s holds a run with other settings; training it again", label, folder)
            shutil.rmtree(folder)
        # Rows cached for an earlier model of this set must not outlive it (e.g. after a kill
        # between training and evaluation of a retrained set).
        cached[label].unlink(missing_ok=True)
        if dirty:
            loaded = None  # the previous set's model goes before the next base copy loads
            release_memory()
            loaded, tokenizer = load_model(model, dtype=dtype, device=device, progress=progress)
        dirty = True
        run.results[label] = finetune(
            loaded,
            tokenizer,
            examples,
            module_set,
            folder,
            config,
            chat_template=chat_template,
            resume=resume,
            callbacks=callbacks,
            progress=progress,
            meta={"run": meta},
        )
        evaluate_as(label, loaded, use_cache=False)
    loaded = None
    release_memory()

    comparison = None
    if benches:
        rows = pd.concat([frames[c] for c in [BASE, *sets]], ignore_index=True)
        comparison = compare_conditions(rows, list(sets), n_boot, 0)
        from ..evaluation.experiments import ExperimentResult

        eval_config = {
            "experiment": "finetune",
            "conditions": [BASE, *sets],
            "options": opts.to_dict(),
            "n_boot": n_boot,
            "benchmarks": list(benches),
        }
        rows_path, summary_path = ExperimentResult(rows, comparison, eval_config).save(eval_dir)
        paths.update({"eval_rows": rows_path, "eval_summary": summary_path})
    run.summary = comparison
    paths["finetune"] = out / "finetune.json"
    write_json_atomic(
        paths["finetune"],
        {
            "model": str(model),
            "data": meta["data"],
            "budget": budget,
            "seed": seed,
            "config": config.to_dict(),
            "sets": {k: v.to_dict() for k, v in sets.items()},
            "models": {k: str(v) for k, v in run.models.items()},
            "training": {
                k: {kk: vv for kk, vv in r.to_dict().items() if kk not in ("config", "module_set")}
                for k, r in run.results.items()
            },
            "results": comparison,
            "package_version": __version__,
        },
    )
    return run


def format_comparison(summary: Mapping[str, Any]) -> str:
    """One line per benchmark and set: ``bench [part]: base X; top Y (change +d [lo, hi]) ...``."""

    def fmt(m: Mapping[str, Any]) -> str:
        return "n/a" if m.get("value") is None else f"{m['value']:.1f}"

    def ci(m: Mapping[str, Any]) -> str:
        return "n/a" if m.get("value") is None else f"{m['value']:+.1f} [{m['ci_low']:+.1f}, {m['ci_high']:+.1f}]"

    lines = []
    for bench, entry in summary.items():
        for part, res in entry.items():
            if part == "metric":
                continue
            cells = [f"base {fmt(res[BASE])}"]
            for name, val in res.items():
                if name in (BASE, "contrasts"):
                    continue
                cells.append(f"{name} {fmt(val['value'])} ({ci(val['change'])})")
            for name, val in res.get("contrasts", {}).items():
                cells.append(f"{name} {ci(val)}")
            lines.append(f"{bench} [{part}] {entry['metric']}: " + "; ".join(cells))
    return "\n".join(lines)
