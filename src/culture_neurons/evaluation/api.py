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

import contextlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..data.example import Example
from ..errors import InputError
from ..fileio import atomic_path, write_json_atomic
from ..intervention.rowwise import RowCondition
from ..selection.neuronset import NeuronSet
from .inputs import EvalInputs, load_benchmarks  # noqa: F401 - load_benchmarks re-exported: callers import it here
from .metrics import mean_ci
from .scorers import EvalOptions, evaluate_examples, example_kind
from .summary import summary_document

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


def evaluate_rows(
    model: Any,
    tokenizer: Any,
    benchmarks: Benchmarks | Sequence[Example],
    neurons: NeuronSet | Sequence[NeuronSet] | None = None,
    op: str = "suppress",
    factor: float = 2.0,
    condition: str | None = None,
    options: EvalOptions | None = None,
    progress: Any = False,
    site_map: Any = None,
    means: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> pd.DataFrame:
    """Per-example rows of every benchmark under one condition (an intervention, or none).

    ``means`` (op ``mean``): the channel means of :func:`~culture_neurons.intervention.channel_means`.
    ``progress``: a bool, or a caller's bar (see :func:`~.scorers.evaluate_examples`).
    """
    from ..intervention import intervene

    benches = as_benchmarks(benchmarks)
    if neurons is not None and isinstance(neurons, NeuronSet) and len(neurons) == 0:
        raise InputError(f"NeuronSet {neurons.kind!r} is empty; there is nothing to {op}")
    label = condition or ("original" if neurons is None else f"{op}:{_kind(neurons)}")
    frames = []
    for name, examples in benches.items():
        if hasattr(progress, "set_postfix_str"):
            progress.set_postfix_str(f"{label} on {name}")
        if neurons is None:
            rows = evaluate_examples(model, tokenizer, examples, options, progress, **overrides)
        else:
            with intervene(model, neurons, op=op, factor=factor, site_map=site_map, means=means):
                rows = evaluate_examples(model, tokenizer, examples, options, progress, **overrides)
        frame = pd.DataFrame(rows)
        frame["benchmark"] = name
        frames.append(frame)
    df = pd.concat(frames, ignore_index=True)
    df.insert(0, "condition", label)
    return df


def evaluate_together(
    model: Any,
    tokenizer: Any,
    name: str,
    examples: Sequence[Example],
    conditions: Sequence[tuple[str, RowCondition]],
    options: EvalOptions | None = None,
    progress: Any = False,
    site_map: Any = None,
) -> dict[str, pd.DataFrame]:
    """One benchmark's rows under several conditions at once: ``{label: rows}``, each as
    :func:`evaluate_rows` gives it for that condition alone (to float rounding).

    The examples are tokenised once; every batch holds copies of a few examples, one per condition,
    and each copy runs under its own condition (:func:`~culture_neurons.intervention.intervene_rows`).
    """
    from ..intervention import intervene_rows

    if not conditions:
        raise InputError("no conditions to evaluate")
    labels = [label for label, _ in conditions]
    if len(set(labels)) != len(labels):
        raise InputError(f"two conditions share a name ({labels})")
    if hasattr(progress, "set_postfix_str"):
        progress.set_postfix_str(f"{len(conditions)} conditions on {name}")
    with intervene_rows(model, [cond for _, cond in conditions], site_map=site_map):
        rows = evaluate_examples(model, tokenizer, examples, options, progress, copies=len(conditions))
    out = {}
    for c, label in enumerate(labels):
        frame = pd.DataFrame(rows[c :: len(conditions)])
        frame["benchmark"] = name
        frame.insert(0, "condition", label)
        out[label] = frame
    return out


def _kind(neurons: NeuronSet | Sequence[NeuronSet]) -> str:
    return neurons.kind if isinstance(neurons, NeuronSet) else "+".join(n.kind for n in neurons)


def metric_name(frame: pd.DataFrame) -> str:
    """The metric of a benchmark's rows: ``alignment`` for scale questions, else ``accuracy``."""
    return "alignment" if (frame["kind"] == "scale").all() else "accuracy"


def summarise(rows: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Metrics per benchmark: overall and by country, split and template, with 95% bootstrap CIs."""
    out: dict[str, Any] = {}
    for bench, frame in rows.groupby("benchmark", sort=False):
        entry: dict[str, Any] = {
            "metric": metric_name(frame),
            "overall": mean_ci(frame["score"].to_numpy(), n_boot, seed),
        }
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

    warnings: list[str] = field(default_factory=list)

    def save(self, out: str | os.PathLike, rows_name: str = "rows.parquet") -> tuple[Path, Path]:
        """Write ``rows.parquet`` (or CSV) and ``summary.json`` (last) into the folder ``out``, atomically.

        A failed write (a full disk) removes what this call wrote, and the folder if it made it.
        """
        folder = Path(out)
        rows_path, summary_path = folder / rows_name, folder / "summary.json"
        doc = summary_document("evaluation", self.config, self.summary, rows=self.rows, warnings=self.warnings)
        with output_folder(folder):
            write_rows(self.rows, rows_path)
            write_json_atomic(summary_path, doc)
        return rows_path, summary_path


@contextlib.contextmanager
def output_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Write into ``folder``; if the block fails, remove the files it wrote and the folder if it made it.

    So a full disk leaves neither an empty output folder nor rows without their ``summary.json``.
    Files that were there before are left alone (atomic writes never damage them).
    """
    folder = Path(folder)
    existed = folder.exists()
    before = {p.name for p in folder.iterdir()} if existed and folder.is_dir() else set()
    try:
        yield folder
    except BaseException:
        if folder.is_dir():
            for path in folder.iterdir():
                if path.name not in before and path.is_file():
                    with contextlib.suppress(OSError):
                        path.unlink()
            if not existed:
                with contextlib.suppress(OSError):
                    folder.rmdir()
        raise


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
    progress: Any = False,
    site_map: Any = None,
    means: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> EvalResult:
    """Evaluate ``model`` on ``benchmarks`` (``{name: examples}`` or a list), optionally with ``neurons``
    suppressed, enhanced or mean-ablated (``op="mean"`` with ``means``), and summarise with bootstrap CIs.

    ``overrides`` are :class:`EvalOptions` fields (``scorer="choice"``, ``batch_size=16``, ...).
    The result's ``warnings`` say when a benchmark's baseline accuracy is within noise of chance.
    """
    from dataclasses import replace

    opts = replace(options or EvalOptions(), **overrides)
    opts.validate()
    benches = as_benchmarks(benchmarks)
    rows = evaluate_rows(
        model, tokenizer, benches, neurons, op, factor, options=opts, progress=progress, site_map=site_map, means=means
    )
    config = {
        "options": opts.to_dict(),
        "n_boot": n_boot,
        "seed": seed,
        "condition": rows["condition"].iloc[0],
        "neurons": None if neurons is None else {"kind": _kind(neurons), "op": op, "factor": factor},
    }
    summary = summarise(rows, n_boot, seed)
    warnings = (
        chance_warnings(benches, {b: e["overall"] for b, e in summary.items()}, opts.scorer) if neurons is None else []
    )
    return EvalResult(rows, summary, config, warnings)


def chance_warnings(
    benchmarks: Mapping[str, Sequence[Example]],
    accuracy: Mapping[str, Mapping[str, Any]],
    scorer: str,
    what: str = "accuracy",
) -> list[str]:
    """One warning per benchmark whose accuracy (``{bench: mean_ci dict}``, in %) is below or within
    noise of its chance level, naming the likely cause and the fix."""
    from ..chance import chance_level, chance_warning, scorer_fix

    fix = scorer_fix(scorer)
    out = []
    for bench, metric in accuracy.items():
        examples = [ex for ex in benchmarks.get(bench, ()) if example_kind(ex) == "mcq"]
        if not examples or metric.get("value") is None:
            continue
        text = chance_warning(f"{bench}: {what}", metric["value"] / 100.0, chance_level(examples), len(examples), fix)
        if text:
            out.append(text)
    return out
