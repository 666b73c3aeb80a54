"""Intervention variants of the ablation experiment: mean ablation and the enhancement factor sweep.

:func:`run_variants` evaluates the original model once, then, for each factor of its
:class:`VariantOptions`, ``op`` on the target set and on the same random sets, and summarises each factor exactly as
:func:`~.experiments.run_ablation` does (the same :func:`~.experiments.ablation_summary`). With one
factor the result has run_ablation's shape and labels (``<op>:<kind>``); with several, the labels
carry the factor (``enhance@1.5:general``) and the summary adds a ``curve``: one row per factor,
benchmark and part with the change, the change against random and their 95% CIs and p-values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..data.example import Example
from ..errors import InputError
from ..selection.neuronset import NeuronSet
from ..selection.randomsets import RandomBaseline
from .api import as_benchmarks, evaluate_rows
from .experiments import ExperimentResult, ablation_summary, experiment_config
from .inputs import parse_factors
from .plan import condition_label
from .scorers import EvalOptions

CURVE_COLUMNS = (
    "factor",
    "benchmark",
    "part",
    "n",
    "original",
    "target",
    "change",
    "change_ci_low",
    "change_ci_high",
    "random_change",
    "difference",
    "difference_ci_low",
    "difference_ci_high",
    "p_one_sided",
    "p_two_sided",
)


@dataclass(frozen=True)
class VariantOptions:
    """Which intervention variant :func:`run_variants` runs.

    Attributes:
        op: ``enhance`` (one factor, or several: the factor sweep), ``mean`` (mean ablation) or ``suppress``.
        factors: one factor, a list of them, or ``"0,0.5,1.5,2,3"``; ``mean`` and ``suppress`` take one.
        means: the channel means ``op="mean"`` writes (:func:`~culture_neurons.intervention.channel_means`).
    """

    op: str = "enhance"
    factors: Sequence[float] | str | float = (2.0,)
    means: Mapping[str, Any] | None = None

    def factor_list(self) -> list[float]:
        """The parsed factors, after refusing a sweep of an op without a factor and ``mean`` without means."""
        factors = self.factors
        values = parse_factors(factors if not isinstance(factors, (int, float)) else [factors])
        if len(values) > 1 and self.op != "enhance":
            raise InputError(f"a factor sweep needs --op enhance (op {self.op!r} has no factor)")
        if self.op == "mean" and self.means is None:
            raise InputError("op 'mean' needs the channel means (--means FILE or --mean-examples JSONL)")
        return values


def curve_rows(by_factor: Mapping[float, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The sweep's curve: one row per (factor, benchmark, part) from each factor's ablation summary."""
    rows = []
    for factor, summary in by_factor.items():
        for bench, entry in summary.items():
            for part, r in entry.items():
                if part == "metric" or not isinstance(r, dict) or not r.get("n"):
                    continue
                change, diff = r["change"], r["difference"]
                rows.append(
                    {
                        "factor": factor,
                        "benchmark": bench,
                        "part": part,
                        "n": r["n"],
                        "original": r["original"]["value"],
                        "target": r["target"]["value"],
                        "change": change["value"],
                        "change_ci_low": change["ci_low"],
                        "change_ci_high": change["ci_high"],
                        "random_change": r["random_change"]["value"],
                        "difference": diff["value"],
                        "difference_ci_low": diff["ci_low"],
                        "difference_ci_high": diff["ci_high"],
                        "p_one_sided": diff["p_one_sided"],
                        "p_two_sided": diff["p_two_sided"],
                    }
                )
    return rows


def run_variants(
    model: Any,
    tokenizer: Any,
    benchmarks: Mapping[str, Sequence[Example]] | Sequence[Example],
    neuron_set: NeuronSet,
    variant: VariantOptions | None = None,
    *,
    random: RandomBaseline | None = None,
    options: EvalOptions | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    progress: Any = False,
    site_map: Any = None,
) -> ExperimentResult:
    """Original vs ``variant.op`` on ``neuron_set`` vs the same op on random sets, for one or several factors.

    ``variant`` defaults to enhancement by 2. ``VariantOptions(op="mean", means=...)`` is mean
    ablation (its factor is ignored); ``op="enhance"`` with several ``factors`` is the factor sweep.
    The original model is evaluated once and shared by every factor. The keyword arguments are
    :func:`~.experiments.run_ablation`'s.
    """
    variant = variant or VariantOptions()
    op, means = variant.op, variant.means
    values = _checked_factors(neuron_set, variant)
    opts = options or EvalOptions()
    opts.validate()
    benches = as_benchmarks(benchmarks)
    random = random or RandomBaseline()
    randoms = random.draw(neuron_set)
    frames = [evaluate_rows(model, tokenizer, benches, None, condition="original", options=opts, progress=progress)]
    by_factor: dict[float, dict[str, Any]] = {}
    sweep = len(values) > 1
    for factor in values:
        tag = factor if sweep else None
        target = condition_label(op, neuron_set.kind, tag)
        random_labels = [condition_label(op, r.kind, tag) for r in randoms]
        for label, ns in [(target, neuron_set), *zip(random_labels, randoms)]:
            frames.append(
                evaluate_rows(
                    model,
                    tokenizer,
                    benches,
                    ns,
                    op,
                    factor,
                    condition=label,
                    options=opts,
                    progress=progress,
                    site_map=site_map,
                    means=means,
                )
            )
        rows_so_far = pd.concat(frames, ignore_index=True)
        by_factor[factor] = ablation_summary(rows_so_far, list(benches), target, random_labels, n_boot, seed)
    rows = pd.concat(frames, ignore_index=True)
    experiment = {"mean": "mean-ablation", "enhance": "enhancement"}.get(op, "ablation")
    head = {
        "experiment": "enhancement-sweep" if sweep else experiment,
        "op": op,
        "factor": values[0] if not sweep else None,
        "factors": values,
    }
    config = experiment_config(head, neuron_set, randoms, random, opts, (n_boot, seed), list(benches))
    return _variants_result(rows, by_factor, values, config)


def _checked_factors(neuron_set: NeuronSet, variant: VariantOptions) -> list[float]:
    """The variant's factors, after refusing an empty set (and what :meth:`VariantOptions.factor_list` refuses)."""
    if not isinstance(neuron_set, NeuronSet) or len(neuron_set) == 0:
        raise InputError("run_variants needs a non-empty NeuronSet")
    return variant.factor_list()


def _variants_result(
    rows: pd.DataFrame, by_factor: dict[float, dict[str, Any]], values: list[float], config: dict[str, Any]
) -> ExperimentResult:
    """One factor: run_ablation's summary shape; several: per-factor summaries plus the curve."""
    if len(values) == 1:
        return ExperimentResult(rows, by_factor[values[0]], config)
    summary = {
        "factors": values,
        "by_factor": {f"{f:g}": s for f, s in by_factor.items()},
        "curve": curve_rows(by_factor),
    }
    return ExperimentResult(rows, summary, config)


def variant_conditions(n_factors: int, seeds: int | Sequence[int]) -> int:
    """How many conditions :func:`run_variants` evaluates (to size a progress bar)."""
    n_random = seeds if isinstance(seeds, int) else len(list(seeds))
    return 1 + n_factors * (1 + n_random)
