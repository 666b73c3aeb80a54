"""Everything ``evaluate``, ``ablate`` and ``cross-culture`` read, checked before the model loads.

Benchmarks (capped per benchmark with the pipeline's deterministic sampling), neuron sets, the
channel means of ``--op mean`` and the output folder are all checked here, so a bad option fails
in a second with one line naming the culprit, never after an hour of evaluation. An output path
that is one of the inputs is refused.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.example import Example, read_examples
from ..errors import InputError
from ..fileio import check_input_file, ensure_writable_parent, refuse_overwriting_inputs
from ..selection.neuronset import NeuronSet

log = logging.getLogger(__name__)

OUTPUT_FILES = ("summary.json", "rows.parquet", "rows.csv", "matrix.csv", "curve.csv", "means.safetensors")


def check_factor(value: Any, name: str = "--factor") -> float:
    """A finite float, or a one-line :class:`InputError` naming the option."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    return number


def parse_factors(text: str | float | Sequence[Any], name: str = "--factor") -> list[float]:
    """``"0,0.5,1.5,2,3"`` (or one number, or a list) -> distinct finite floats, in the order given."""
    parts = (
        [p.strip() for p in text.split(",")]
        if isinstance(text, str)
        else list(text)
        if isinstance(text, (list, tuple))
        else [text]
    )
    if not parts or any(p == "" for p in parts):
        raise InputError(f"{name} must be a number or a comma-separated list of numbers, got {text!r}")
    values = [check_factor(p, name) for p in parts]
    if len(set(values)) != len(values):
        raise InputError(f"{name} lists a factor twice ({text!r})")
    return values


def load_benchmarks(specs: Sequence[str | os.PathLike]) -> dict[str, list[Example]]:
    """Read benchmark files: each spec is ``path.jsonl`` or ``name=path.jsonl``.

    Without a name, the benchmark is called after its examples' ``dataset`` field (or the file stem).
    A missing or malformed file raises :class:`InputError` naming it.
    """
    out: dict[str, list[Example]] = {}
    for spec in specs:
        text = str(spec)
        name, path = text.split("=", 1) if "=" in text and not Path(text).exists() else (None, text)
        path = check_input_file(path, "benchmark file")
        examples = read_examples(path)
        if name is None:
            datasets = {ex.dataset for ex in examples if ex.dataset}
            name = datasets.pop() if len(datasets) == 1 else path.stem
        if name in out:
            raise InputError(f"benchmark {name!r} given twice; name them apart with name=path")
        out[name] = examples
    return out


@dataclass
class EvalInputs:
    """The checked inputs of one evaluation command."""

    benchmarks: dict[str, list[Example]]
    sets: list[NeuronSet] = field(default_factory=list)
    set_paths: list[Path] = field(default_factory=list)
    means: dict[str, Any] | None = None  # loaded from a file
    mean_examples: list[Example] | None = None  # to compute the means from, once the model is loaded
    means_source: str | None = None
    caps: dict[str, Any] = field(default_factory=dict)
    uncapped: dict[str, int] = field(default_factory=dict)
    means_model: dict[str, Any] | None = None  # identity of the model the means were computed on


def load_capped_benchmarks(
    specs: Sequence[str | os.PathLike], max_per_group: int | None = None, limit: int | None = None, seed: int = 0
) -> tuple[dict[str, list[Example]], dict[str, int]]:
    """:func:`load_benchmarks`, then each benchmark capped on its own; also the sizes before capping."""
    from ..data.sampling import cap_examples

    benches = load_benchmarks(specs)
    sizes = {name: len(exs) for name, exs in benches.items()}
    capped = {
        name: cap_examples(exs, max_per_group=max_per_group, limit=limit, seed=seed) for name, exs in benches.items()
    }
    empty = [name for name, exs in capped.items() if not exs]
    if empty:
        raise InputError(f"benchmark(s) {', '.join(empty)} have no examples left after --max-per-group/--limit")
    return capped, sizes


def load_sets(paths: Sequence[str | os.PathLike], op: str) -> list[NeuronSet]:
    """Read NeuronSet files; an empty set is an error (there is nothing to intervene on)."""
    sets = []
    for path in paths:
        check_input_file(path, "neuron set")
        ns = NeuronSet.load(path)
        if len(ns) == 0:
            raise InputError(f"neuron set {path} is empty; there is nothing to {op}")
        sets.append(ns)
    return sets


def _means_inputs(
    op: str, set_paths: Sequence[Path], means: str | os.PathLike | None, mean_examples: str | os.PathLike | None
) -> tuple[dict[str, Any] | None, list[Example] | None, str | None]:
    from ..intervention.means import load_means, means_path

    if op != "mean":
        if means is not None or mean_examples is not None:
            raise InputError("--means and --mean-examples only apply with --op mean")
        return None, None, None
    if means is not None and mean_examples is not None:
        raise InputError("give either --means or --mean-examples, not both")
    if means is not None:
        return load_means(means), None, str(means)
    if mean_examples is not None:
        check_input_file(mean_examples, "mean examples file")
        examples = read_examples(mean_examples)
        if not examples:
            raise InputError(f"mean examples file {mean_examples} has no examples")
        return None, examples, str(mean_examples)
    beside = [means_path(p) for p in set_paths if means_path(p).is_file()]
    if beside:
        return load_means(beside[0]), None, str(beside[0])
    where = ", ".join(str(means_path(p)) for p in set_paths) or "beside the neuron set"
    raise InputError(
        f"--op mean needs channel means: give --means FILE or --mean-examples JSONL (none found at {where})"
    )


def gather_inputs(
    benches: Sequence[str | os.PathLike],
    neurons: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    op: str = "suppress",
    means: str | os.PathLike | None = None,
    mean_examples: str | os.PathLike | None = None,
    max_per_group: int | None = None,
    limit: int | None = None,
    seed: int = 0,
    other_inputs: dict[str, Any] | None = None,
) -> EvalInputs:
    """Check and read every input of an evaluation command; check the output folder can be written.

    Nothing is created: the output folder appears only when the results are written.
    """
    from ..intervention import OPS

    if op not in OPS:
        raise InputError(f"unknown intervention op {op!r}; choose one of {', '.join(OPS)}")
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--out {folder} is a file; give a folder for the rows and summary.json")
    outputs = {"--out": [folder / name for name in OUTPUT_FILES]}
    bench_paths = [str(b).split("=", 1)[1] if "=" in str(b) and not Path(str(b)).exists() else str(b) for b in benches]
    inputs = {
        "--bench": bench_paths,
        "--neurons": [str(p) for p in neurons],
        "--means": means,
        "--mean-examples": mean_examples,
        **(other_inputs or {}),
    }
    refuse_overwriting_inputs(outputs, inputs)
    ensure_writable_parent(folder / "summary.json")
    benchmarks, sizes = load_capped_benchmarks(benches, max_per_group, limit, seed)
    set_paths = [Path(p) for p in neurons]
    sets = load_sets(set_paths, op)
    loaded, examples, source = _means_inputs(op, set_paths, means, mean_examples)
    caps = {"max_per_group": max_per_group, "limit": limit, "seed": seed}
    return EvalInputs(benchmarks, sets, set_paths, loaded, examples, source, caps, sizes)


def resolve_means(
    inputs: EvalInputs,
    model: Any,
    tokenizer: Any,
    *,
    chat_template: bool = True,
    batch_size: int = 8,
    site_map: Any = None,
    progress: bool = False,
) -> dict[str, Any] | None:
    """The channel means for ``--op mean``: the loaded file, or computed now from ``--mean-examples``."""
    if inputs.means is not None or inputs.mean_examples is None:
        if inputs.means is not None and inputs.means_source:
            from ..intervention.means import check_means_model

            warning = check_means_model(inputs.means_source, model)
            if warning:
                log.warning("%s", warning.removeprefix("warning: "))
        return inputs.means
    from ..intervention.means import channel_means
    from ..models.loading import model_identity

    inputs.means_model = model_identity(model)
    inputs.means = channel_means(
        model,
        tokenizer,
        inputs.mean_examples,
        inputs.sets[0] if inputs.sets else None,
        batch_size,
        chat_template=chat_template,
        site_map=site_map,
        progress=progress,
    )
    return inputs.means
