"""Where validity gets its data: benchmark names (built-in or ``--data-dir``), explicit files, or a run directory.

Run directories follow :mod:`culture_neurons.rundir`: ``examples/<role>-<benchmark>.jsonl`` for the
identification (``score``), ``control``, ``countryrc`` and ``eval`` roles, ``scores/`` tables with
the same names, and ``neurons/general.json``. Eval benchmarks of kind ``nlu`` form the NLU side,
every other eval benchmark the culture side.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..attribution.scoretable import ScoreTable
from ..data.example import Example, read_examples
from ..data.registry import build_examples, get_benchmark
from ..data.sampling import cap_examples, sample_key
from ..errors import InputError
from ..rundir import data_dir_for
from ..selection.neuronset import NeuronSet
from .options import ValidityData


@dataclass
class Caps:
    """How much data each part of a validity run reads (0/None = all)."""

    identification: int | None = None  # examples per country (all templates together)
    heldout: int | None = None  # held-out cultural examples per country and benchmark
    nlu: int | None = None  # NLU evaluation items per benchmark
    nlu_identification: int | None = None  # NLU items scored for the exclusion filter
    countryrc: int | None = None  # CountryRC examples per country (default: the identification cap)
    seed: int = 0


@dataclass
class BenchmarkSpec:
    """Benchmark names of a validity run built from the registry."""

    dataset: str = "blend"
    control: str = "blend-control"
    countryrc: str | None = "countryrc"
    culture: tuple[str, ...] = ("blend",)
    nlu: tuple[str, ...] = ("commonsenseqa",)
    nlu_identification: str | None = "commonsenseqa"
    countries: str | Sequence[str] | None = "targets"
    templates: str = "cloze"
    nlu_templates: dict[str, str] = field(default_factory=lambda: {"qnli": "nlu1", "mrpc": "nlu1"})
    data_dir: str | None = None


def _build(name: str, split: str, spec: BenchmarkSpec, templates: str, countries: Any = "spec") -> list[Example]:
    bench = get_benchmark(name)
    by_country = countries if countries != "spec" else (spec.countries if bench.by_country else None)
    data_dir = data_dir_for(bench, spec.data_dir)
    return build_examples(name, split=split, countries=by_country, data_dir=data_dir, templates=templates)


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def control_templates(dataset: str, control: str, templates: Sequence[str]) -> dict[str, str]:
    """``{control template id: identification template id}``: main templates pair by position, extra ones by id."""
    main, ctl = get_benchmark(dataset), get_benchmark(control)
    ids = [t.id for t in main.templates]
    out = {}
    for name in templates:
        if name in ids and ids.index(name) < len(ctl.templates):
            out[ctl.templates[ids.index(name)].id] = name
        elif name in {t.id for t in ctl.templates + ctl.extra_templates}:
            out[name] = name
        else:
            raise InputError(f"{control} has no control template paired with {dataset} template {name!r}")
    return out


def split_disjoint(
    examples: Sequence[Example], first: int | None, second: int | None, seed: int = 0
) -> tuple[list[Example], list[Example]]:
    """Two disjoint samples of items (the NLU evaluation and NLU identification sets), in input order."""
    order = sorted(range(len(examples)), key=lambda i: (sample_key(examples[i], seed), i))
    a = set(order[: first or len(order)])
    rest = [i for i in order if i not in a]
    b = set(rest[: second or len(rest)])
    return [ex for i, ex in enumerate(examples) if i in a], [ex for i, ex in enumerate(examples) if i in b]


def from_benchmarks(spec: BenchmarkSpec, caps: Caps) -> ValidityData:
    """Every part of a validity run from benchmark names (identification split scored, held-out split evaluated)."""
    ident = cap_examples(
        _build(spec.dataset, "identification", spec, spec.templates), max_per_group=caps.identification, seed=caps.seed
    )
    mapping = control_templates(spec.dataset, spec.control, _names(spec.templates))
    control = [
        dataclasses.replace(ex, template_id=mapping[ex.template_id])
        for ex in _build(spec.control, "identification", spec, ",".join(mapping))
    ]
    control = cap_examples(control, max_per_group=caps.identification, seed=caps.seed)
    culture = {
        b: cap_examples(_build(b, "heldout", spec, "cloze"), max_per_group=caps.heldout, seed=caps.seed)
        for b in spec.culture
    }
    nlu: dict[str, list[Example]] = {}
    nlu_ident = None
    for b in spec.nlu:
        exs = _build(b, "all", spec, spec.nlu_templates.get(b, "cloze"))
        if b == spec.nlu_identification:
            nlu[b], nlu_ident = split_disjoint(exs, caps.nlu, caps.nlu_identification, caps.seed)
        else:
            nlu[b] = cap_examples(exs, limit=caps.nlu, seed=caps.seed)
    if spec.nlu_identification and spec.nlu_identification not in spec.nlu:
        nlu_ident = cap_examples(
            _build(spec.nlu_identification, "all", spec, spec.nlu_templates.get(spec.nlu_identification, "cloze")),
            limit=caps.nlu_identification,
            seed=caps.seed,
        )
    countryrc = (
        cap_examples(
            _build(spec.countryrc, "identification", spec, "cloze"),
            max_per_group=caps.countryrc or caps.identification,
            seed=caps.seed,
        )
        if spec.countryrc
        else None
    )
    return ValidityData(
        identification=ident,
        control=control,
        culture=culture,
        nlu=nlu,
        nlu_identification=nlu_ident,
        countryrc=countryrc,
    )


def _read_manifest(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "manifest.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from exc


def _role_files(run_dir: Path, role: str) -> list[Path]:
    return sorted((run_dir / "examples").glob(f"{role}-*.jsonl"))


def from_run_dir(
    run_dir: str | os.PathLike, nlu_identification: Sequence[Example] | None = None
) -> tuple[ValidityData, dict[str, Any]]:
    """The run's identification examples, control and CountryRC tables, eval examples and general set.

    Returns ``(data, info)`` where ``info`` has the run's ``model`` name and the identification
    table's scoring ``options`` (so validity scores the folds exactly as the run scored the table).
    """
    run = Path(run_dir)
    if not (run / "examples").is_dir():
        raise InputError(
            f"{run} is not a run directory (no examples/ folder); run `culture-neurons run` or `demo` first"
        )
    score_files = _role_files(run, "score")
    if not score_files:
        raise InputError(f"{run}/examples has no score-*.jsonl identification file")
    ident = [ex for p in score_files for ex in read_examples(p)]
    controls = [ScoreTable.load(run / "scores" / f"{p.stem}.safetensors") for p in _role_files(run, "control")]
    if not controls:
        raise InputError(f"{run}/scores has no control-*.safetensors table; validity needs the control subtraction")
    crc = [run / "scores" / f"{p.stem}.safetensors" for p in _role_files(run, "countryrc")]
    culture: dict[str, list[Example]] = {}
    nlu: dict[str, list[Example]] = {}
    for p in _role_files(run, "eval"):
        exs = read_examples(p)
        name = exs[0].dataset if exs and exs[0].dataset else p.stem.removeprefix("eval-")
        try:
            kind = get_benchmark(name).kind
        except InputError:
            kind = "culture"
        (nlu if kind == "nlu" else culture)[name] = exs
    table = ScoreTable.load(run / "scores" / f"{score_files[0].stem}.safetensors")
    general = run / "neurons" / "general.json"
    data = ValidityData(
        identification=ident,
        culture=culture,
        nlu=nlu,
        control_tables=controls,
        countryrc_table=ScoreTable.load(crc[0]) if crc else None,
        nlu_identification=list(nlu_identification or []) or None,
        reference_set=NeuronSet.load(general) if general.is_file() else None,
    )
    manifest = _read_manifest(run)
    model = ((manifest.get("config") or {}).get("model") or {}).get("name")
    return data, {"model": model, "options": table.options, "manifest": manifest}


def from_files(
    identification: str | os.PathLike,
    *,
    control: str | os.PathLike | None = None,
    control_tables: Sequence[str | os.PathLike] = (),
    countryrc_table: str | os.PathLike | None = None,
    culture: Sequence[str] = (),
    nlu: Sequence[str] = (),
    nlu_table: str | os.PathLike | None = None,
    nlu_identification: str | os.PathLike | None = None,
    reference_set: str | os.PathLike | None = None,
) -> ValidityData:
    """Validity data from explicit files: examples JSONL, ScoreTables, benchmark files (``name=path`` or
    ``path``) and a NeuronSet."""
    from ..evaluation.api import load_benchmarks

    if control is None and not control_tables:
        raise InputError("give the control examples (--control-file) or control tables (--control-table)")
    return ValidityData(
        identification=read_examples(identification),
        control=read_examples(control) if control else None,
        control_tables=[ScoreTable.load(p) for p in control_tables],
        countryrc_table=ScoreTable.load(countryrc_table) if countryrc_table else None,
        culture=load_benchmarks(list(culture)) if culture else {},
        nlu=load_benchmarks(list(nlu)) if nlu else {},
        nlu_table=ScoreTable.load(nlu_table) if nlu_table else None,
        nlu_identification=read_examples(nlu_identification) if nlu_identification else None,
        reference_set=NeuronSet.load(reference_set) if reference_set else None,
    )
