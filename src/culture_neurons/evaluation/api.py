"""Evaluate a model (optionally under an intervention) on benchmarks; per-example rows and a summary.

Outputs:

- per-example rows (parquet, or CSV when the file name ends in ``.csv``): ``condition, benchmark,
  id, country, split, template, kind, scorer, prediction, gold, correct, correct_norm, score,
  option_probs, options``;
- a summary JSON: the config, and per benchmark the metric (``accuracy`` in %, or ``alignment``
  for scale questions) overall and by country, split and template, each with a 95% bootstrap CI;
  ``acc_norm`` as well for the ``loglik`` scorer.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import __version__
from ..data.example import Example, read_examples
from ..errors import InputError
from ..fileio import atomic_path, ensure_writable_parent, write_json_atomic
from ..selection.neuronset import NeuronSet
from .metrics import mean_ci
from .scorers import EvalOptions, evaluate_examples

Benchmarks = Mapping[str, Sequence[Example]]


def as_benchmarks(benchmarks: Benchmarks | Sequence[Example]) -> dict[str, list[Example]]:
    """``{name: examples}``; a plain list is split by each example's ``dataset`` (or called ``examples``)."""
    if isinstance(benchmarks, Mapping):
        out = {str(k): list(v) for k, v in benchmarks.items()}
    else:
        out: dict[str, list[Example]] = {}
        for ex in benchmarks:
            out.setdefault(ex.dataset or "examples", []).append(ex)
    if not out or not any(out.values()):
        raise InputError("no benchmark examples to evaluate")
    empty = [k for k, v in out.items() if not v]
    if empty:
        raise InputError(f"benchmark(s) {', '.join(empty)} have no examples")
    return out


def load_benchmarks(specs: Sequence[str | os.PathLike]) -> dict[str, list[Example]]:
    """Read benchmark files: each spec is ``path.jsonl`` or ``name=path.jsonl``.

    Without a name, the benchmark is called after its examples' ``dataset`` field (or the file stem).
    A missing or malformed file raises :class:`InputError` naming it.
    """
    out: dict[str, list[Example]] = {}
    for spec in specs:
        text = str(spec)
        name, path = text.split("=", 1) if "=" in text and not Path(text).exists() else (None, text)
        path = Path(path)
        if not path.is_file():
            raise InputError(
                f"benchmark file {path} does not exist (expected an examples JSONL, e.g. from `culture-neurons data export`)"
            )
        examples = read_examples(path)
        if name is None:
            datasets = {ex.dataset for ex in examples if ex.dataset}
            name = datasets.pop() if len(datasets) == 1 else path.stem
        if name in out:
            raise InputError(f"benchmark {name!r} given twice; name them apart with name=path")
        out[name] = examples
    return out


def evaluate_rows(
    model: Any,
    tokenizer: Any,
    benchmarks: Benchmarks | Sequence[Example],
    neurons: NeuronSet | Sequence[NeuronSet] | None = None,
    op: str = "suppress",
    factor: float = 2.0,
    condition: str | None = None,
    options: EvalOptions | None = None,
    progress: bool = False,
    site_map: Any = None,
    **overrides: Any,
) -> pd.DataFrame:
    """Per-example rows of every benchmark under one condition (an intervention, or none)."""
    from ..intervention import intervene

    benches = as_benchmarks(benchmarks)
    if neurons is not None and isinstance(neurons, NeuronSet) and len(neurons) == 0:
        raise InputError(f"NeuronSet {neurons.kind!r} is empty; there is nothing to {op}")
    frames = []
    for name, examples in benches.items():
        if neurons is None:
            rows = evaluate_examples(model, tokenizer, examples, options, progress, **overrides)
        else:
            with intervene(model, neurons, op=op, factor=factor, site_map=site_map):
                rows = evaluate_examples(model, tokenizer, examples, options, progress, **overrides)
        frame = pd.DataFrame(rows)
        frame["benchmark"] = name
        frames.append(frame)
    df = pd.concat(frames, ignore_index=True)
    label = condition or ("original" if neurons is None else f"{op}:{_kind(neurons)}")
    df.insert(0, "condition", label)
    return df


def _kind(neurons: NeuronSet | Sequence[NeuronSet]) -> str:
    return neurons.kind if isinstance(neurons, NeuronSet) else "+".join(n.kind for n in neurons)


def _metric(frame: pd.DataFrame) -> str:
    return "alignment" if (frame["kind"] == "scale").all() else "accuracy"


def summarise(rows: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Metrics per benchmark: overall and by country, split and template, with 95% bootstrap CIs."""
    out: dict[str, Any] = {}
    for bench, frame in rows.groupby("benchmark", sort=False):
        entry: dict[str, Any] = {"metric": _metric(frame), "overall": mean_ci(frame["score"].to_numpy(), n_boot, seed)}
        has_norm = frame["correct_norm"].notna().any() if "correct_norm" in frame else False
        if has_norm:
            entry["acc_norm"] = mean_ci(frame["correct_norm"].fillna(False).astype(float).to_numpy(), n_boot, seed)
        for key, column in (("by_country", "country"), ("by_split", "split"), ("by_template", "template")):
            groups = {
                str(k): mean_ci(g["score"].to_numpy(), n_boot, seed)
                for k, g in frame.groupby(column, sort=True)
                if str(k)
            }
            if groups:
                entry[key] = groups
        out[str(bench)] = entry
    return out


@dataclass
class EvalResult:
    """Per-example rows and their summary."""

    rows: pd.DataFrame
    summary: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)

    def save(self, out: str | os.PathLike, rows_name: str = "rows.parquet") -> tuple[Path, Path]:
        """Write ``rows.parquet`` (or CSV) and ``summary.json`` into the folder ``out``, atomically."""
        folder = Path(out)
        rows_path = write_rows(self.rows, folder / rows_name)
        summary_path = folder / "summary.json"
        write_json_atomic(
            summary_path, {"config": self.config, "package_version": __version__, "metrics": self.summary}
        )
        return rows_path, summary_path


def write_rows(rows: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write rows as parquet, or as CSV (lists JSON-encoded) when ``path`` ends in ``.csv``."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        frame = rows.copy()
        for col in ("option_probs", "options"):
            if col in frame:
                frame[col] = [
                    None if v is None or (isinstance(v, float) and np.isnan(v)) else json.dumps(list(v))
                    for v in frame[col]
                ]
        with atomic_path(path, suffix=".csv") as tmp:
            frame.to_csv(tmp, index=False)
    else:
        with atomic_path(path, suffix=".parquet") as tmp:
            rows.to_parquet(tmp, index=False)
    return path


def read_rows(path: str | os.PathLike) -> pd.DataFrame:
    """Read rows written by :func:`write_rows`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"rows file {path} does not exist")
    if path.suffix.lower() == ".csv":
        frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
        for col in ("option_probs", "options"):
            if col in frame:
                frame[col] = [None if not isinstance(v, str) else json.loads(v) for v in frame[col]]
        return frame
    return pd.read_parquet(path)


def evaluate(
    model: Any,
    tokenizer: Any,
    benchmarks: Benchmarks | Sequence[Example],
    neurons: NeuronSet | Sequence[NeuronSet] | None = None,
    op: str = "suppress",
    factor: float = 2.0,
    *,
    options: EvalOptions | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    progress: bool = False,
    site_map: Any = None,
    **overrides: Any,
) -> EvalResult:
    """Evaluate ``model`` on ``benchmarks`` (``{name: examples}`` or a list), optionally with ``neurons``
    suppressed or enhanced, and summarise with bootstrap CIs.

    ``overrides`` are :class:`EvalOptions` fields (``scorer="choice"``, ``batch_size=16``, ...).
    """
    from dataclasses import replace

    opts = replace(options or EvalOptions(), **overrides)
    opts.validate()
    rows = evaluate_rows(
        model, tokenizer, benchmarks, neurons, op, factor, options=opts, progress=progress, site_map=site_map
    )
    config = {
        "options": opts.to_dict(),
        "n_boot": n_boot,
        "seed": seed,
        "condition": rows["condition"].iloc[0],
        "neurons": None if neurons is None else {"kind": _kind(neurons), "op": op, "factor": factor},
    }
    return EvalResult(rows, summarise(rows, n_boot, seed), config)


def evaluate_files(
    model: str | os.PathLike,
    benches: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    neurons: Sequence[str | os.PathLike] = (),
    op: str = "suppress",
    factor: float = 2.0,
    *,
    dtype: str | None = None,
    device: str | None = None,
    device_map: str | None = None,
    site_map: str | None = None,
    rows_format: str = "parquet",
    n_boot: int = 1000,
    seed: int = 0,
    progress: bool = True,
    **overrides: Any,
) -> EvalResult:
    """File-level :func:`evaluate` (what ``culture-neurons evaluate`` calls): inputs are checked
    before the model loads; rows and ``summary.json`` are written into the folder ``out``."""
    from ..distributed import init_from_env, is_main, local_device
    from ..models.loading import load_model

    ensure_writable_parent(Path(out) / "summary.json")
    benchmarks = load_benchmarks(benches)
    sets = [NeuronSet.load(p) for p in neurons]
    for path, ns in zip(neurons, sets):
        if len(ns) == 0:
            raise InputError(f"neuron set {path} is empty; there is nothing to {op}")
    opts = EvalOptions(**overrides)
    opts.validate()
    init_from_env(device)
    loaded, tokenizer = load_model(
        model, dtype=dtype, device=local_device(device), device_map=device_map, progress=progress
    )
    if sets:
        from ..intervention import check_fits
        from ..models.adapters import get_adapter

        adapter = get_adapter(loaded, site_map)
        for ns in sets:
            check_fits(ns, adapter, loaded)
    result = evaluate(
        loaded,
        tokenizer,
        benchmarks,
        sets or None,
        op,
        factor,
        options=opts,
        n_boot=n_boot,
        seed=seed,
        progress=progress,
        site_map=site_map,
    )
    result.config.update(
        {"model": str(model), "benchmarks": [str(b) for b in benches], "neuron_files": [str(p) for p in neurons]}
    )
    if is_main():
        result.save(out, "rows.csv" if rows_format == "csv" else "rows.parquet")
    return result
