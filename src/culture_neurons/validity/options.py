"""What the validity analyses measure on, and how much of it: option and input dataclasses."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..attribution.scoretable import ScoreTable
from ..data.example import Example
from ..selection.options import check_pi

ANALYSES = ("sensitivity", "stability", "specificity", "faithfulness", "variants")


@dataclass(frozen=True)
class SelectionSettings:
    """The default selection that every analysis perturbs (the paper's rule and thresholds)."""

    t_mlp: float = 0.01
    t_attn: float = 0.002
    r: float = 0.01
    mlp_sites: tuple[str, ...] = ("mlp.gate",)
    attn_sites: tuple[str, ...] = ("attn.q", "attn.k", "attn.v")
    specific_t: float = 0.003
    specific_z: float = 0.5
    specific_sites: tuple[str, ...] = ("mlp.gate", "attn.q", "attn.k", "attn.v")
    exclude_r: float = 0.01  # top fraction of the NLU table dropped by the exclusion filter


@dataclass(frozen=True)
class ValidityOptions:
    """Sizes of the five analyses. Defaults follow issue 17; the demo and real runs shrink them.

    Attributes:
        analyses: which analyses to run (subset of :data:`ANALYSES`).
        t_mlp_sweep: MLP thresholds of the sensitivity sweep; ``t_attn`` is scaled in proportion.
        specific_t_sweep, specific_z_sweep: the specific rule's t and z grid (sizes and overlap only).
        evaluate_sweep: measure the suppression effect of every swept general set (costs
            ``len(t_mlp_sweep) * (1 + random_seeds)`` evaluations).
        random_seeds: random sets per targeted set; ``layer_matched``: also match per-layer counts.
        folds: K of the fold stability analysis; ``per_template``: also select per template.
        stable_pi: the frequency threshold of the stable sets (``validity/stable.json``): a neuron is kept
            when at least this fraction of the fold x template cells select it (in (0.5, 1]).
        faith_top, faith_threshold, faith_random: the faithfulness sample (top of the general
            ranking, ranks around the threshold, random pool neurons).
        faith_examples: identification examples the true effects are averaged over.
        additivity_k: sizes of the top-k sets zeroed together.
        faith_methods: scoring methods compared on the faithfulness sample (``gxa``, ``atp-mean``, ``ig``,
            ``ig-joint``; docs/methods.md), each against the ablation it estimates, with its top-``faith_top``
            set against random sets and its cost (:mod:`.methods`); empty: none compared.
        enhance_factors: the enhancement sweep; ``mean_op``: compare mean ablation with zeroing.
        mean_examples: identification examples the channel means are taken over.
        max_rows: sequences per forward pass of the faithfulness batches.
        drop_at_chance: leave benchmarks on which the original model is within noise of chance out of
            their side's pooled effects (a side keeps all of them when none is above chance).
        n_boot, seed: bootstrap resamples and the seed of every draw.
    """

    analyses: tuple[str, ...] = ANALYSES
    t_mlp_sweep: tuple[float, ...] = (0.0025, 0.005, 0.01, 0.02)
    specific_t_sweep: tuple[float, ...] = (0.0015, 0.003, 0.006)
    specific_z_sweep: tuple[float, ...] = (0.0, 0.5, 1.0)
    evaluate_sweep: bool = True
    random_seeds: int = 3
    layer_matched: bool = False
    folds: int = 2
    per_template: bool = True
    stable_pi: float = 0.6
    faith_top: int = 50
    faith_threshold: int = 50
    faith_random: int = 50
    faith_examples: int = 32
    additivity_k: tuple[int, ...] = (5, 10, 25, 50)
    faith_methods: tuple[str, ...] = ()
    enhance_factors: tuple[float, ...] = (0.0, 0.5, 1.5, 2.0, 3.0)
    mean_op: bool = True
    drop_at_chance: bool = True
    mean_examples: int = 64
    max_rows: int = 256
    n_boot: int = 1000
    seed: int = 0

    def validate(self) -> None:
        """Raise :class:`InputError` naming the first bad option."""
        from ..errors import InputError

        unknown = [a for a in self.analyses if a not in ANALYSES]
        if unknown:
            raise InputError(f"unknown validity analysis {unknown[0]!r}; choose from {', '.join(ANALYSES)}")
        if self.folds < 2:
            raise InputError(f"folds must be at least 2, got {self.folds}")
        for name in (
            "random_seeds",
            "faith_top",
            "faith_threshold",
            "faith_random",
            "faith_examples",
            "mean_examples",
            "n_boot",
        ):
            if int(getattr(self, name)) < 0:
                raise InputError(f"{name} must be 0 or more, got {getattr(self, name)}")
        check_pi(self.stable_pi)
        if self.random_seeds < 1:
            raise InputError("random_seeds must be at least 1: every effect is measured against random sets")
        if not self.analyses:
            raise InputError(f"analyses names no analysis; choose from {', '.join(ANALYSES)}")
        if "faithfulness" in self.analyses and self.faith_examples < 1:
            raise InputError(
                f"faith_examples must be at least 1 for the faithfulness analysis, got {self.faith_examples}"
            )
        from ..attribution.methods import METHOD_NAMES

        bad = [m for m in self.faith_methods if m not in METHOD_NAMES]
        if bad:
            raise InputError(
                f"unknown scoring method {bad[0]!r} in faith_methods; choose from {', '.join(METHOD_NAMES)}"
            )
        if not all(math.isfinite(f) for f in self.enhance_factors):
            raise InputError(f"enhance_factors must be finite numbers, got {self.enhance_factors}")
        if any(not 0 < t <= 1 for t in self.t_mlp_sweep):
            raise InputError(f"t_mlp_sweep values must be fractions in (0, 1], got {self.t_mlp_sweep}")


@dataclass
class ValidityData:
    """What the analyses are measured on.

    Attributes:
        identification: the cultural identification examples (scored in fold x template cells).
        control: control examples paired with them (scored per template), or ``None`` when
            ``control_tables`` are given instead.
        control_tables: ready control ScoreTables (used for every fold and template).
        countryrc_table: the CountryRC table, or None to skip that exclusion.
        countryrc: CountryRC examples to score instead of a ready table.
        culture: held-out cultural benchmarks ``{name: examples}`` (the "culture" side).
        nlu: NLU benchmarks ``{name: examples}`` (the "NLU" side).
        nlu_identification: NLU examples scored for the exclusion filter (or ``nlu_table``).
        reference_set: a general set selected elsewhere (the run's own), compared with the
            validity default set as a sanity check.
        default_set: the general set every analysis is about (the pipeline passes the run's own, so the
            report's checks are about the set it describes); None: selected from the identification table
            with the settings.
    """

    identification: list[Example]
    culture: dict[str, list[Example]]
    nlu: dict[str, list[Example]]
    control: list[Example] | None = None
    control_tables: list[ScoreTable] = field(default_factory=list)
    countryrc_table: ScoreTable | None = None
    countryrc: list[Example] | None = None
    nlu_identification: list[Example] | None = None
    nlu_table: ScoreTable | None = None
    reference_set: Any = None
    default_set: Any = None
