"""lm-evaluation-harness tasks under the ablation experiment's conditions, with our paired statistics.

:func:`run_lm_eval_conditions` runs lm-eval's ``simple_evaluate`` once per condition (the original
model, ``op`` on the target set, ``op`` on each random set) through
:class:`~.lm_eval_model.CultureNeuronsLM`, on the same loaded model. lm-eval's logged samples give
one row per document and condition (``id`` is the task's ``doc_id``), so the conditions are paired
by document and summarised exactly like our own benchmarks
(:func:`~culture_neurons.evaluation.experiments.ablation_summary`: the change, the difference
against random with a paired bootstrap CI and p-values). Each condition's lm-eval ``results.json``
is kept (``lm_eval/<condition>/results.json``) beside our summary.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import InputError
from ..fileio import write_text_atomic
from ..selection.neuronset import NeuronSet
from ..selection.randomsets import RandomBaseline

PRIMARY = ("acc", "exact_match", "acc_norm")  # the per-sample metric used as `score`, first present wins


def parse_tasks(text: str | Sequence[str]) -> list[str]:
    """``"mmlu,hellaswag"`` -> ``["mmlu", "hellaswag"]``; empty names are an error."""
    names = [t.strip() for t in text.split(",")] if isinstance(text, str) else [str(t).strip() for t in text]
    if not names or any(not n for n in names):
        raise InputError(f"--lm-eval-tasks must be comma-separated task names, got {text!r}")
    if len(set(names)) != len(names):
        raise InputError(f"--lm-eval-tasks names a task twice ({text!r})")
    return names


def sample_rows(samples: Mapping[str, Sequence[Mapping[str, Any]]], condition: str) -> pd.DataFrame:
    """lm-eval's logged samples -> our row frame.

    Columns: ``condition, benchmark, id, kind, split, country, score`` + metrics.
    """
    rows = []
    for task, items in samples.items():
        for s in items:
            metrics = {m: s[m] for m in s.get("metrics", []) if isinstance(s.get(m), (int, float, bool))}
            primary = next((m for m in PRIMARY if m in metrics), next(iter(metrics), None))
            if primary is None:
                raise InputError(
                    f"lm-eval task {task!r} logs no numeric per-sample metric (doc {s.get('doc_id')}); "
                    "it cannot be paired"
                )
            score = float(metrics[primary])
            if not math.isfinite(score):
                raise InputError(f"lm-eval task {task!r}: doc {s.get('doc_id')} has a non-finite {primary}")
            rows.append(
                {
                    "condition": condition,
                    "benchmark": task,
                    "id": str(s["doc_id"]),
                    "kind": "mcq",
                    "split": "",
                    "country": "",
                    "template": "",
                    "metric": primary,
                    "score": score,
                    **{f"lm_eval_{k}": float(v) for k, v in metrics.items()},
                }
            )
    return pd.DataFrame(rows)


def _evaluate(lm: Any, tasks: list[str], task_manager: Any, limit: int | None, seed: int) -> dict[str, Any]:
    from lm_eval import simple_evaluate

    return simple_evaluate(
        model=lm,
        tasks=tasks,
        task_manager=task_manager,
        limit=limit,
        log_samples=True,
        bootstrap_iters=0,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
        verbosity="ERROR",
    )


@dataclass(frozen=True)
class LmEvalSettings:
    """How lm-eval runs each condition.

    Attributes:
        include_path: a folder of task YAMLs (e.g. from ``culture-neurons data export-lm-eval``); with every
            task found there, lm-eval's own task folder is not indexed.
        limit: documents per task (``None``: all).
        batch_size: lm-eval's batch size.
    """

    include_path: str | None = None
    limit: int | None = None
    batch_size: int = 8


def run_lm_eval_conditions(
    model: Any,
    tokenizer: Any,
    tasks: str | Sequence[str],
    neuron_set: NeuronSet,
    *,
    op: str = "suppress",
    factor: float = 2.0,
    means: Mapping[str, Any] | None = None,
    random: RandomBaseline | None = None,
    settings: LmEvalSettings | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    progress: Any = None,
) -> dict[str, Any]:
    """Original vs ``op`` on ``neuron_set`` vs ``op`` on random sets, on lm-eval tasks.

    Returns ``{"rows": DataFrame, "summary": {task: ablation entry},
    "results": {condition: lm-eval results without samples},
    "conditions": [...]}``. ``random`` defaults to 3 random sets; ``settings`` to lm-eval's own task folder,
    every document and batches of 8.
    """
    from lm_eval.tasks import TaskManager

    from ..evaluation.experiments import ablation_summary
    from .lm_eval_model import CultureNeuronsLM

    names = parse_tasks(tasks)
    settings = settings or LmEvalSettings()
    include_path = settings.include_path
    # Indexing lm-eval's own task folder takes ~40 s on 2 cores: skip it when the local folder has every task.
    manager = TaskManager(include_path=include_path, include_defaults=False) if include_path else None
    if manager is None or any(t not in manager.all_tasks for t in names):
        manager = TaskManager(include_path=include_path) if include_path else TaskManager()
    unknown = [t for t in names if t not in manager.all_tasks]
    if unknown:
        raise InputError(
            f"unknown lm-eval task(s) {', '.join(unknown)}"
            + ("" if include_path else " (local tasks: --lm-eval-include DIR)")
        )
    randoms = (random or RandomBaseline(seeds=3)).draw(neuron_set)
    target = f"{op}:{neuron_set.kind}"
    conditions: list[tuple[str, NeuronSet | None]] = [
        ("original", None),
        (target, neuron_set),
        *((f"{op}:{r.kind}", r) for r in randoms),
    ]
    frames, results = [], {}
    for label, ns in conditions:
        if progress is not None and hasattr(progress, "set_postfix_str"):
            progress.set_postfix_str(label)
        # Only the arguments that apply to this condition, so the model warns of nothing it ignores.
        applies = {} if ns is None else {"op": op, **({"factor": factor} if op == "enhance" else {})}
        lm = CultureNeuronsLM(
            model,
            tokenizer,
            neurons=ns,
            means=means if op == "mean" and ns is not None else None,
            batch_size=settings.batch_size,
            **applies,
        )
        out = _evaluate(lm, names, manager, settings.limit, seed)
        frames.append(sample_rows(out.pop("samples", {}), label))
        results[label] = out
        if progress is not None:
            progress.update(1)
    rows = pd.concat(frames, ignore_index=True)
    summary = ablation_summary(rows, names, target, [c for c, _ in conditions[2:]], n_boot, seed)
    return {"rows": rows, "summary": summary, "results": results, "conditions": [c for c, _ in conditions]}


def save_lm_eval_results(results: Mapping[str, Any], folder: str | Path) -> list[Path]:
    """Write each condition's lm-eval results as ``folder/lm_eval/<condition>/results.json`` (atomic)."""
    from ..rundir import slug

    paths = []
    for label, data in results.items():
        path = Path(folder) / "lm_eval" / slug(label) / "results.json"
        write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str, ensure_ascii=False) + "\n")
        paths.append(path)
    return paths
