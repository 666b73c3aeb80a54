"""Conditions and experiments as data: the one planner behind ablation, enhancement, cross-culture,
the pipeline's evaluate stage and the fine-tuning comparison.

A :class:`Condition` is one way of running the model (no intervention, or an operation on one
neuron set) on some benchmarks; its ``label`` is the ``condition`` column of the per-example rows.
An :class:`Experiment` names which conditions its summary compares. The planner never opens a
neuron set: ``Condition.neurons`` is whatever handle the caller resolves (a NeuronSet, or the
stem of a run directory's neuron file), so the same plan serves the Python API and the pipeline.

Labels: ``original`` (or ``base`` for fine-tuning), and ``<op>:<set kind>`` for an intervention:
``suppress:general``, ``suppress:random:3``, ``enhance:general``, ``suppress:Iran``, and for the
``k``-th random set of a country's size in cross-culture ``suppress:random:<country>:<k>``
(``suppress:random:South Korea:0``; :func:`country_random_kind`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

ORIGINAL = "original"


def condition_label(op: str, kind: str, factor: float | None = None) -> str:
    """The label of an intervention condition: ``<op>:<set kind>``, or with the factor of a sweep
    (``run_variants`` with several factors) ``<op>@<factor>:<set kind>`` (``enhance@1.5:general``)."""
    return f"{op}:{kind}" if factor is None else f"{op}@{factor:g}:{kind}"


def country_random_kind(country: str, index: int) -> str:
    """The set kind in the label of ``country``'s ``index``-th random set in cross-culture:
    ``random:<country>:<index>``."""
    return f"random:{country}:{int(index)}"


@dataclass(frozen=True)
class Condition:
    """One evaluated condition: ``op`` on ``neurons`` (None: the model as it is) over ``benchmarks``.

    ``countries``: only the examples of these countries (``Example.group``) are evaluated; None: all.
    Cross-culture's random sets are compared with a country's set on that country's questions alone,
    so evaluating them on the other countries' questions would be work no summary reads.
    """

    label: str
    op: str = "suppress"
    neurons: Any = None
    benchmarks: tuple[str, ...] = ()
    countries: tuple[str, ...] | None = None

    def select(self, examples: Sequence[Any]) -> list[Any]:
        """The examples this condition is evaluated on (those of its ``countries``, or all)."""
        if self.countries is None:
            return list(examples)
        wanted = set(self.countries)
        return [e for e in examples if e.group in wanted]


@dataclass(frozen=True)
class Experiment:
    """What one summary compares: ``baseline``, the ``target`` condition (None for cross-culture and
    fine-tuning) and the ``compared`` ones (random sets, countries' sets, trained sets).

    Cross-culture only: ``randoms`` pairs each country with the labels of its random sets, and
    ``related`` is the relatedness table (groups of related countries; None: the default table of
    :mod:`.related`)."""

    name: str
    target: str | None
    compared: tuple[str, ...]
    benchmarks: tuple[str, ...]
    baseline: str = ORIGINAL
    op: str = "suppress"
    randoms: tuple[tuple[str, tuple[str, ...]], ...] = ()
    related: tuple[tuple[str, ...], ...] | None = None

    @property
    def labels(self) -> list[str]:
        """Every condition the summary reads, baseline first."""
        extra = [label for _, labels in self.randoms for label in labels]
        return [self.baseline, *([self.target] if self.target else []), *self.compared, *extra]


@dataclass
class Plan:
    """Conditions (each label once per benchmark, in first-planned order) and the experiments over them."""

    conditions: list[Condition] = field(default_factory=list)
    experiments: list[Experiment] = field(default_factory=list)

    def add(self, conditions: Iterable[Condition], experiment: Experiment | None = None) -> None:
        seen = {c.label: i for i, c in enumerate(self.conditions)}
        for c in conditions:
            if c.label in seen:
                old = self.conditions[seen[c.label]]
                if (old.op, old.neurons, old.countries) != (c.op, c.neurons, c.countries):
                    raise ValueError(f"two different conditions share the label {c.label!r}")
                merged = tuple(dict.fromkeys([*old.benchmarks, *c.benchmarks]))
                self.conditions[seen[c.label]] = Condition(c.label, c.op, c.neurons, merged, c.countries)
            else:
                seen[c.label] = len(self.conditions)
                self.conditions.append(c)
        if experiment is not None:
            self.experiments.append(experiment)

    def cells(self) -> list[tuple[Condition, str]]:
        """Every (condition, benchmark) pair to evaluate, condition by condition."""
        return [(c, b) for c in self.conditions for b in c.benchmarks]


def original(benchmarks: Sequence[str]) -> Condition:
    return Condition(ORIGINAL, "suppress", None, tuple(benchmarks))


def ablation(
    target: tuple[str, Any],
    randoms: Sequence[tuple[str, Any]],
    benchmarks: Sequence[str],
    op: str = "suppress",
    name: str | None = None,
    narrow: tuple[int, Sequence[str]] | None = None,
) -> tuple[list[Condition], Experiment]:
    """``op`` on the ``target`` set against ``op`` on each random set. Sets are ``(kind, handle)``;
    the experiment is ``ablation`` (``enhancement`` for ``op="enhance"``) unless ``name`` says otherwise.

    ``narrow`` ``(k, benchmarks)``: the random sets after the first ``k`` are evaluated on those of the
    ``benchmarks`` only (the replication study ranks the cultural drop among many random sets, and
    needs fewer for the NLU side's interval); the summary compares each benchmark with the random sets
    evaluated on it."""
    benches = tuple(benchmarks)
    conds = [Condition(condition_label(op, kind), op, handle, benches) for kind, handle in [target, *randoms]]
    if narrow is not None:
        keep, wanted = narrow[0], set(narrow[1])
        few = tuple(b for b in benches if b in wanted)
        conds = [c if i <= keep else Condition(c.label, op, c.neurons, few) for i, c in enumerate(conds)]
        conds = [c for c in conds if c.benchmarks]
    exp_name = name or ("enhancement" if op == "enhance" else "ablation")
    return [original(benches), *conds], Experiment(
        exp_name, conds[0].label, tuple(c.label for c in conds[1:]), benches, op=op
    )


def cross_culture(
    sets: Sequence[tuple[str, Any]],
    benchmarks: Sequence[str],
    op: str = "suppress",
    randoms: Sequence[tuple[str, Sequence[Any]]] = (),
    related: Sequence[Sequence[str]] | None = None,
) -> tuple[list[Condition], Experiment]:
    """``op`` on each country's set in turn; ``sets`` are ``(country, handle)``.

    ``randoms`` are ``(country, [handle of its random set 0, 1, ...])``: each becomes the condition
    ``<op>:random:<country>:<k>``, planned after every country's own set and evaluated on that
    country's questions only (what its summary compares). ``related`` is passed on to the summary
    (the relatedness table)."""
    benches = tuple(benchmarks)
    conds = [Condition(condition_label(op, country), op, handle, benches) for country, handle in sets]
    drawn = [
        (
            country,
            [
                Condition(condition_label(op, country_random_kind(country, k)), op, h, benches, (country,))
                for k, h in enumerate(handles)
            ],
        )
        for country, handles in randoms
    ]
    experiment = Experiment(
        "cross-culture",
        None,
        tuple(c.label for c in conds),
        benches,
        op=op,
        randoms=tuple((country, tuple(c.label for c in group)) for country, group in drawn if group),
        related=None if related is None else tuple(tuple(g) for g in related),
    )
    return [original(benches), *conds, *(c for _, group in drawn for c in group)], experiment


def finetune_comparison(sets: Sequence[str], benchmarks: Sequence[str], baseline: str = "base") -> Experiment:
    """The fine-tuning comparison: each trained set's rows against the base model's."""
    return Experiment("finetune", None, tuple(sets), tuple(benchmarks), baseline=baseline, op="train")


def countries_of(experiment: Experiment) -> list[str]:
    """The countries of a cross-culture experiment, from its condition labels."""
    prefix = f"{experiment.op}:"
    return [label.removeprefix(prefix) for label in experiment.compared]
