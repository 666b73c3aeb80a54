"""The paper's experiments: ablation (and enhancement) against random baselines, and the
cross-culture suppression matrix.

Both evaluate every benchmark under several conditions on the same examples, keep the per-example
rows (with a ``condition`` column), and summarise paired differences with bootstrap CIs (see
:mod:`.metrics`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..data.example import Example
from ..errors import InputError
from ..fileio import write_json_atomic, write_text_atomic
from ..intervention.rowwise import RowCondition
from ..selection.neuronset import NeuronSet
from ..selection.randomsets import RandomBaseline
from . import plan as planner
from .api import as_benchmarks, evaluate_rows, evaluate_together, metric_name, output_folder, write_rows
from .country_random import country_random_sets
from .cross_options import CrossCultureOptions
from .cross_parts import own_country_scores, random_block, random_labels, related_block, specific_by_country
from .metrics import compare_to_random, mean_ci, paired_change
from .scorers import EvalOptions
from .summary import summary_document


@dataclass
class ExperimentResult:
    """Per-example rows of every condition, the summary, and (cross-culture) the change matrix."""

    rows: pd.DataFrame
    summary: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    matrix: pd.DataFrame | None = None
    warnings: list[str] = field(default_factory=list)

    def save(self, out: str | os.PathLike, rows_name: str = "rows.parquet") -> tuple[Path, Path]:
        """Write the rows (and ``matrix.csv`` when there is one), then ``summary.json`` into ``out``.

        ``summary.json`` is written last: a folder holding it is complete. A failed write (a full
        disk) removes what this call wrote, and the folder if it made it (:func:`~.api.output_folder`).
        """
        folder = Path(out)
        rows_path, summary_path = folder / rows_name, folder / "summary.json"
        doc = summary_document(
            str(self.config.get("experiment", "experiment")),
            self.config,
            self.summary,
            rows=self.rows,
            warnings=self.warnings,
        )
        with output_folder(folder):
            write_rows(self.rows, rows_path)
            if self.matrix is not None:
                write_text_atomic(folder / "matrix.csv", self.matrix.to_csv())
            write_json_atomic(summary_path, doc)
        return rows_path, summary_path


def condition_table(rows: pd.DataFrame, conditions: Sequence[str]) -> pd.DataFrame:
    """Scores as a table: one row per (benchmark, id), one column per condition.

    Raises :class:`InputError` when a condition is missing or was not evaluated on every example
    (rows read back from files of different runs; the public API never produces that).
    """
    conditions = list(conditions)
    table = rows.pivot_table(index=["benchmark", "id"], columns="condition", values="score", sort=False)
    missing = [c for c in conditions if c not in table.columns]
    if missing or table[conditions].isna().any().any():
        raise InputError(
            f"the conditions {', '.join(conditions)} were not evaluated on the same examples"
            + (f" ({', '.join(missing)} missing)" if missing else "")
        )
    return table[conditions]


def split_parts(
    table: pd.DataFrame, info: pd.DataFrame, bench: str
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, pd.Index]]:
    """One benchmark's rows of a (benchmark, id) x condition ``table``, their metadata from ``info``,
    and the example index of ``all`` and of each non-empty split (sorted), the parts every summary reports."""
    block = table.loc[bench]
    meta = info.loc[bench].loc[block.index]
    parts = {"all": block.index}
    for split in sorted(s for s in meta["split"].unique() if s):
        parts[split] = block.index[meta["split"].to_numpy() == split]
    return block, meta, parts


def ablation_summary(
    rows: pd.DataFrame,
    benches: Sequence[str],
    target: str,
    random_labels: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """The summary of :func:`run_ablation` from its rows (conditions ``original``, ``target`` and ``random_labels``).

    Public so that a caller who evaluates the conditions itself (the pipeline, which caches each
    condition's rows and shares ``original`` between experiments) gets the same summary. Each part
    holds :func:`~.metrics.compare_to_random`'s numbers, the random sets treated as a sample among
    them: the rank with its Monte-Carlo p (``rank``, ``m_random``, ``p_mc``, ``rank_rise``,
    ``p_mc_rise``), ``excess_ci_two_level`` and the detectable excess ``mde``.
    """
    info = rows[rows["condition"] == "original"].set_index(["benchmark", "id"])
    evaluated = rows.groupby("benchmark", sort=False)["condition"].unique()
    summary: dict[str, Any] = {}
    for bench in benches:
        # The random sets evaluated on this benchmark (plan.ablation's ``narrow`` may leave some out).
        here = set(evaluated.get(bench, ()))
        labels = [lab for lab in random_labels if lab in here]
        scores = condition_table(rows[rows["benchmark"] == bench], ["original", target, *labels])
        block, meta, parts = split_parts(scores, info, bench)
        entry: dict[str, Any] = {"metric": metric_name(meta)}
        for part, index in parts.items():
            sub = block.loc[index]
            orig, tgt = sub["original"].to_numpy(), sub[target].to_numpy()
            rnd = sub[labels].to_numpy().T if labels else np.zeros((0, len(sub)))
            entry[part] = {
                "original": mean_ci(orig, n_boot, seed),
                "target": mean_ci(tgt, n_boot, seed),
                "random": {lab: float(sub[lab].mean()) * 100 for lab in labels},
                "random_mean": float(rnd.mean()) * 100 if rnd.size else None,
                **compare_to_random(orig, tgt, rnd, n_boot, seed),
            }
        summary[bench] = entry
    return summary


def evaluate_conditions(
    model: Any,
    tokenizer: Any,
    benches: Mapping[str, Sequence[Example]],
    conditions: Sequence[planner.Condition],
    factor: float,
    options: EvalOptions,
    *,
    progress: bool = False,
    site_map: Any = None,
) -> pd.DataFrame:
    """The per-example rows of every planned condition (``Condition.neurons`` holds the NeuronSet).

    With ``options.batch_conditions`` (the default) the conditions of each benchmark run together in
    one pass (:func:`~.api.evaluate_together`); otherwise one after another. The rows are the same
    either way (to float rounding) and come in the same order: by condition, then benchmark. A
    condition with ``countries`` is evaluated on those countries' examples only.
    """
    if options.batch_conditions and len(conditions) > 1:
        together: dict[tuple[str, str], pd.DataFrame] = {}
        cells = dict.fromkeys((b, c.countries) for c in conditions for b in c.benchmarks)
        for bench, countries in cells:  # one pass per benchmark and example subset
            group = [c for c in conditions if bench in c.benchmarks and c.countries == countries]
            pairs = [(c.label, RowCondition(c.neurons, c.op, factor)) for c in group]
            examples = group[0].select(benches[bench])
            got = evaluate_together(model, tokenizer, bench, examples, pairs, options, progress, site_map)
            together.update({(label, bench): frame for label, frame in got.items()})
        frames = [together[(c.label, b)] for c in conditions for b in c.benchmarks]
        return pd.concat(frames, ignore_index=True)
    frames = [
        evaluate_rows(
            model,
            tokenizer,
            {b: c.select(benches[b]) for b in c.benchmarks},
            c.neurons,
            c.op,
            factor,
            condition=c.label,
            options=options,
            progress=progress,
            site_map=site_map,
        )
        for c in conditions
    ]
    return pd.concat(frames, ignore_index=True)


def summarise_experiment(
    rows: pd.DataFrame, experiment: planner.Experiment, n_boot: int = 1000, seed: int = 0
) -> tuple[dict[str, Any], pd.DataFrame | None]:
    """The summary (and, for cross-culture, the change matrix) of one planned experiment from its rows."""
    if experiment.name == "cross-culture":
        countries, randoms = planner.countries_of(experiment), dict(experiment.randoms)
        return cross_culture_summary(
            rows, countries, experiment.op, n_boot, seed, related=experiment.related, randoms=randoms
        )
    return ablation_summary(
        rows, list(experiment.benchmarks), experiment.target or "", list(experiment.compared), n_boot, seed
    ), None


def run_ablation(
    model: Any,
    tokenizer: Any,
    benchmarks: Mapping[str, Sequence[Example]] | Sequence[Example],
    neuron_set: NeuronSet,
    *,
    op: str = "suppress",
    factor: float = 2.0,
    random: RandomBaseline | None = None,
    options: EvalOptions | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    progress: bool = False,
    site_map: Any = None,
) -> ExperimentResult:
    """Original vs ``op`` on ``neuron_set`` vs ``op`` on random sets of the same size.

    For every benchmark, and within it for all examples and for each split separately
    (identification vs held-out), the summary gives the metric under each condition and
    :func:`~.metrics.compare_to_random`: the change with its CI, the mean random change, the paired
    bootstrap difference with p-values, and the fraction of random seeds with a smaller drop.
    ``op="enhance"`` gives the enhancement experiment. ``random`` says which random sets (default:
    10 seeds, not layer-matched).
    """
    if not isinstance(neuron_set, NeuronSet):
        raise InputError(f"neuron_set must be a NeuronSet, got {type(neuron_set).__name__}")
    if len(neuron_set) == 0:
        raise InputError(f"NeuronSet {neuron_set.kind!r} is empty; there is nothing to {op}")
    opts = options or EvalOptions()
    opts.validate()
    benches = as_benchmarks(benchmarks)
    random = random or RandomBaseline()
    randoms = random.draw(neuron_set)
    conditions, experiment = planner.ablation(
        (neuron_set.kind, neuron_set), [(r.kind, r) for r in randoms], list(benches), op
    )
    labels = [c.label for c in conditions]
    if len(set(labels)) != len(labels):
        raise InputError(f"two conditions share a name ({labels}); give the random sets distinct seeds")
    rows = evaluate_conditions(
        model, tokenizer, benches, conditions, factor, opts, progress=progress, site_map=site_map
    )
    summary, _ = summarise_experiment(rows, experiment, n_boot, seed)
    head = {"experiment": "enhancement" if op == "enhance" else "ablation", "op": op, "factor": factor}
    config = experiment_config(head, neuron_set, randoms, random, opts, (n_boot, seed), list(benches))
    return ExperimentResult(rows, summary, config)


def experiment_config(
    head: Mapping[str, Any],
    neuron_set: NeuronSet,
    randoms: Sequence[NeuronSet],
    random: RandomBaseline,
    options: EvalOptions,
    bootstrap: tuple[int, int],
    benchmarks: Sequence[str],
) -> dict[str, Any]:
    """The ``config`` of a set-vs-random experiment's summary: ``head`` (experiment, op, factor...), then
    the set, its random sets, the options, ``(n_boot, seed)`` and the benchmarks, in that key order."""
    n_boot, seed = bootstrap
    return {
        **head,
        "neuron_set": {"kind": neuron_set.kind, "count": len(neuron_set), "sha256": neuron_set.content_hash()},
        "random_sets": [r.kind for r in randoms],
        "layer_matched": random.layer_matched,
        "options": options.to_dict(),
        "n_boot": n_boot,
        "seed": seed,
        "benchmarks": list(benchmarks),
    }


def cross_culture_summary(
    rows: pd.DataFrame,
    countries: Sequence[str],
    op: str = "suppress",
    n_boot: int = 1000,
    seed: int = 0,
    *,
    related: Sequence[Sequence[str]] | None = None,
    randoms: Mapping[str, Sequence[str]] | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """The summary and change matrix of :func:`run_cross_culture` from its rows (conditions
    ``original`` and ``<op>:<country>`` for each country, and each country's random sets). Each cell is a
    :func:`~.metrics.paired_change`, with the smallest change its paired test detects at 80 % power (``mde``, points).

    ``related`` (groups of related countries; None: :data:`~.related.DEFAULT_RELATED`) gives the
    ``related`` block: the drop on a country's related cultures minus the drop on its unrelated ones
    when its set is suppressed, averaged over countries, with a two-level CI (:mod:`.related`).
    ``randoms`` (``{country: labels of its random sets}``; None: the rows' ``<op>:random:<country>:<k>``
    conditions) gives ``vs_random``: each country's set against random sets of its size on its own
    questions, and the pooled row (:mod:`.country_random`); None when there are none.
    """
    sets = list(countries)
    present = list(dict.fromkeys(rows["condition"]))
    drawn = random_labels(present, op, sets, randoms)
    drawn = {c: drawn[c] for c in sets if drawn.get(c)}
    scores = condition_table(rows, ["original"] + [f"{op}:{c}" for c in sets])
    info = rows[rows["condition"] == "original"].set_index(["benchmark", "id"]).loc[scores.index]
    country_of = info["country"].to_numpy()
    if drawn:  # evaluated on their own country's questions only (plan.Condition.countries)
        scores = scores.join(own_country_scores(rows, scores.index, country_of, drawn))
    eval_countries = sorted(info["country"].unique())
    matrix = pd.DataFrame(index=list(sets), columns=eval_countries, dtype=float)
    cells: dict[str, dict[str, Any]] = {}
    for c in sets:
        cells[c] = {}
        for e in eval_countries:
            mask = country_of == e
            change = paired_change(
                scores["original"].to_numpy()[mask], scores[f"{op}:{c}"].to_numpy()[mask], n_boot, seed
            )
            cells[c][e] = change
            matrix.loc[c, e] = change["value"]
    rows_summary = {}
    for c in sets:
        row = matrix.loc[c]
        rows_summary[c] = {
            "most_affected": str(row.idxmin()),
            "diagonal": float(row[c]) if c in row.index else None,
            "diagonal_is_most_negative": bool(c in row.index and row[c] == row.min()),
            "off_diagonal_mean": float(row.drop(c, errors="ignore").mean()) if len(row) > 1 else None,
        }
    diag = [matrix.loc[c, c] for c in sets if c in matrix.columns]
    summary = {
        "set_countries": list(sets),
        "eval_countries": eval_countries,
        "original": {e: mean_ci(scores["original"].to_numpy()[country_of == e], n_boot, seed) for e in eval_countries},
        "change": cells,
        "rows": rows_summary,
        "diagonal_mean": float(np.mean(diag)) if diag else None,
        "off_diagonal_mean": float(np.nanmean([matrix.loc[c, e] for c in sets for e in eval_countries if e != c]))
        if len(eval_countries) > 1
        else None,
        "related": related_block(scores, country_of, sets, eval_countries, op, related, n_boot, seed),
        "vs_random": random_block(scores, country_of, sets, op, drawn, n_boot, seed),
    }
    return summary, matrix


def run_cross_culture(
    model: Any,
    tokenizer: Any,
    benchmarks: Mapping[str, Sequence[Example]] | Sequence[Example],
    specific_sets: Mapping[str, NeuronSet] | Sequence[NeuronSet],
    *,
    op: str = "suppress",
    factor: float = 2.0,
    split: str | None = None,
    cross: CrossCultureOptions | None = None,
    options: EvalOptions | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    progress: bool = False,
    site_map: Any = None,
) -> ExperimentResult:
    """Suppress each country's specific set in turn and measure the change for every country.

    ``matrix.loc[set_country, eval_country]`` is the change (percentage points) of the metric on
    ``eval_country``'s examples, pooled over the benchmarks; the diagonal is expected to be the most
    negative entry of its row. ``split`` restricts the evaluation to one split (e.g. ``heldout``).

    ``cross`` (:class:`~.cross_options.CrossCultureOptions`): each country's set is also compared with
    ``cross.random_sets`` (default 3) layer-matched random sets of its size on its own questions (the
    summary's ``vs_random``), and ``cross.related`` (default :data:`~.related.DEFAULT_RELATED`) gives the
    related-culture statistic (``related``).
    """
    sets = specific_by_country(specific_sets, op)
    cross = cross or CrossCultureOptions()
    groups = cross.groups()
    opts = options or EvalOptions()
    opts.validate()
    benches = as_benchmarks(benchmarks)
    if split is not None:
        benches = {k: [e for e in v if e.split == split] for k, v in benches.items()}
        benches = {k: v for k, v in benches.items() if v}
        if not benches:
            raise InputError(f"no examples of split {split!r} in the benchmarks")
    randoms = [(c, country_random_sets(c, ns, cross.random_sets)) for c, ns in sets.items()]
    conditions, experiment = planner.cross_culture(list(sets.items()), list(benches), op, randoms, groups)
    rows = evaluate_conditions(
        model, tokenizer, benches, conditions, factor, opts, progress=progress, site_map=site_map
    )
    summary, matrix = summarise_experiment(rows, experiment, n_boot, seed)
    config = {
        "experiment": "cross-culture",
        "op": op,
        "factor": factor,
        "split": split,
        "options": opts.to_dict(),
        "n_boot": n_boot,
        "seed": seed,
        "benchmarks": list(benches),
        "sets": {c: {"count": len(ns), "sha256": ns.content_hash()} for c, ns in sets.items()},
        "random_sets": cross.random_sets,
        "layer_matched": True,
        "related": [list(g) for g in groups],
    }
    return ExperimentResult(rows, summary, config, matrix)
