"""What holds and what does not: the paper's claims checked against a run's own numbers.

Each check is a pure function over the experiment summaries (plain dicts, as ``summary.json``
holds them) and returns :class:`~.verdicts.Claim` records with a verdict, the number it rests on,
its 95% CI, its p-value and the smallest effect its test would detect. Nothing here is written for
a particular run; the report's box and the terminal lines (:func:`claims_lines`) are both rendered
from these records.

The verdict rule is in :mod:`.verdicts`: ``holds`` needs the whole CI on the predicted side and,
where the row has a p-value, ``p < 0.05``; :func:`evaluate_claims` adjusts the rows' p-values with
Holm's method over the table before deciding. Against random sets, the CI is the two-level
bootstrap over items and random sets, and p is the Monte-Carlo rank p ``(b + 1) / (m + 1)``
(:func:`culture_neurons.evaluation.metrics.compare_to_random`); summaries written before those
numbers existed fall back to the item bootstrap's CI and p.

The cross-culture claims beyond the matrix (each country against random sets of its size, related
cultures) are in :mod:`.paper_claims`, the layer claim against the pool in :mod:`.layers`, and the
run's one overall verdict, computed from these rows, in :mod:`.overall`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..chance import chance_warning
from ..evaluation.display import own_country_rows
from ..evaluation.power import detectable_paired
from . import stats
from .claim_numbers import (
    RANK_TEST,
    Z95,
    binomial_p_at_least,
    bootstrap_mean_ci,
    gap_p,
    specificity_gap,
    vs_random_numbers,
    vs_random_text,
    wilson_interval,
)
from .layers import layer_claim_of, pool_layers, uniform_pool
from .overall import Overall, overall_verdict
from .paper_claims import own_country_random_claim, related_claim
from .verdicts import FAILS, HOLDS, NOT_SIGNIFICANT, VERDICTS, Claim, adjust, finish, format_rank, reading_tail
from .verdicts import ci_verdict as verdict

__all__ = [
    "CULTURAL_KINDS",
    "FAILS",
    "HOLDS",
    "NLU_KINDS",
    "NOT_SIGNIFICANT",
    "RANK_TEST",
    "VERDICTS",
    "Z95",
    "Claim",
    "Overall",
    "RunNumbers",
    "binomial_p_at_least",
    "bootstrap_mean_ci",
    "claims_lines",
    "cultural_drop_claims",
    "enhancement_claims",
    "evaluate_claims",
    "format_claim",
    "layer_claim",
    "nlu_spared_claims",
    "overall_verdict",
    "own_country_claim",
    "own_country_random_claim",
    "read_numbers",
    "related_claim",
    "specificity_gap",
    "verdict",
    "wilson_interval",
]

CULTURAL_KINDS = ("culture", "generation", "scale")
NLU_KINDS = ("nlu",)


@dataclass(frozen=True)
class RunNumbers:
    """Everything the checks read, already loaded: summaries as dicts, the general set's layer counts."""

    ablation: Mapping[str, Any] | None = None
    enhancement: Mapping[str, Any] | None = None
    cross_culture: Mapping[str, Any] | None = None
    general_layers: Sequence[int] | None = None  # neurons of the general set per layer, all sites
    general_pools: Sequence[Mapping[str, Any]] | None = None  # per pool: sites, pool and set neurons per layer
    kinds: Mapping[str, str] = field(default_factory=dict)  # benchmark -> registry kind (culture, nlu, ...)
    chance: Mapping[str, float | None] = field(default_factory=dict)  # benchmark -> chance accuracy (%)


def _part(entry: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]] | None:
    """The held-out block of one benchmark's result where it has one, else ``all``."""
    for name in ("heldout", "all"):
        block = entry.get(name)
        if isinstance(block, Mapping) and "difference" in block:
            return name, block
    return None


def _blocks(
    summary: Mapping[str, Any] | None, kinds: Mapping[str, str], wanted: Sequence[str]
) -> list[tuple[str, str, Mapping[str, Any]]]:
    """``(benchmark, split, block)`` for each benchmark of the wanted kinds, in the summary's order."""
    out = []
    for bench, entry in ((summary or {}).get("results") or {}).items():
        if kinds.get(bench) in wanted and isinstance(entry, Mapping):
            part = _part(entry)
            if part is not None:
                out.append((bench, *part))
    return out


def _at_chance(bench: str, block: Mapping[str, Any], chance: Mapping[str, float | None]) -> str:
    level = chance.get(bench)
    base = (block.get("original") or {}).get("value")
    n = int((block.get("original") or {}).get("n") or 0)
    if level is None or base is None:
        return ""
    warning = chance_warning(f"{bench} baseline accuracy", base / 100.0, level / 100.0, n)
    return (
        f"the baseline {base:.1f}% is not above chance ({level:.1f}%) beyond noise, so this number says little"
        if warning
        else ""
    )


def _difference_claim(
    key: str,
    title: str,
    bench: str,
    split: str,
    block: Mapping[str, Any],
    expect: int,
    p_key: str,
    chance: Mapping[str, float | None],
) -> Claim:
    nums = vs_random_numbers(block, expect, p_key)
    lo, hi = nums["ci_low"], nums["ci_high"]
    chance_note = _at_chance(bench, block, chance)
    claim = Claim(
        key,
        title,
        f"{bench} ({split})",
        verdict(lo, hi, expect),
        vs_random_text(nums),
        nums["value"],
        lo,
        hi,
        chance_note,
        p=nums["p"],
        p_test=nums["p_test"],
        rank=nums["rank"],
        m_random=nums["m_random"],
        mde=nums["mde"],
        effect="an excess drop" if expect < 0 else "an excess gain",
        n=nums["n"],
        at_chance=bool(chance_note),
    )
    return finish(claim)


def cultural_drop_claims(numbers: RunNumbers) -> list[Claim]:
    """Suppressing the general set lowers cultural accuracy more than random sets of its size (one claim per cultural
    benchmark)."""
    return [
        _difference_claim(
            "cultural-drop",
            "Suppressing the culture-general neurons lowers cultural accuracy more than random neurons",
            bench,
            split,
            block,
            -1,
            "p_one_sided",
            numbers.chance,
        )
        for bench, split, block in _blocks(numbers.ablation, numbers.kinds, CULTURAL_KINDS)
    ]


def enhancement_claims(numbers: RunNumbers) -> list[Claim]:
    """Amplifying the general set raises cultural accuracy more than amplifying random sets (one claim per cultural
    benchmark)."""
    factor = ((numbers.enhancement or {}).get("config") or {}).get("factor")
    title = (
        "Amplifying the culture-general neurons"
        + (f" (×{factor:g})" if factor is not None else "")
        + " raises cultural accuracy more than random neurons"
    )
    return [
        _difference_claim("enhancement", title, bench, split, block, +1, "p_two_sided", numbers.chance)
        for bench, split, block in _blocks(numbers.enhancement, numbers.kinds, CULTURAL_KINDS)
    ]


def nlu_spared_claims(numbers: RunNumbers) -> list[Claim]:
    """Suppressing the general set spares NLU: one claim per NLU benchmark, against the first cultural benchmark.

    ``does not hold`` when the NLU change against random is significantly negative; ``holds`` when it
    is not and the cultural drop significantly exceeds the NLU drop (the specificity gap, whose
    one-sided normal p is the row's p); else ``not significant`` (NLU not shown to be hurt, but not
    shown to be spared either). The power is that of the NLU side: the smallest NLU excess drop
    its test would detect.
    """
    cultural = _blocks(numbers.ablation, numbers.kinds, CULTURAL_KINDS)
    out = []
    for bench, split, block in _blocks(numbers.ablation, numbers.kinds, NLU_KINDS):
        nums = vs_random_numbers(block, -1, "p_one_sided")
        value, lo, hi = nums["value"], nums["ci_low"], nums["ci_high"]
        hurt = verdict(lo, hi, -1) == HOLDS
        number = f"NLU Δ {stats.format_ci(value, lo, hi)} points vs random"
        if nums["rank"] is not None:
            number += f", {format_rank(nums['rank'], nums['m_random'])} (p_mc {stats.format_p(nums['p'])})"
        gap_verdict, p_gap = NOT_SIGNIFICANT, None
        note = chance_note = _at_chance(bench, block, numbers.chance)
        if cultural:
            c_bench, _, c_block = cultural[0]
            gap, g_lo, g_hi = specificity_gap(c_block, block)
            gap_verdict, p_gap = verdict(g_lo, g_hi, +1), gap_p(gap, g_lo, g_hi)
            number += f"; cultural drop minus NLU drop ({c_bench}) {stats.format_ci(gap, g_lo, g_hi)} points"
            note = "; ".join(x for x in (note, "gap CI and p: normal approximation from the two sides' CIs") if x)
        claim = Claim(
            "nlu-spared",
            "Suppressing the culture-general neurons spares language understanding (NLU)",
            f"{bench} ({split})",
            FAILS if hurt else HOLDS if gap_verdict == HOLDS else NOT_SIGNIFICANT,
            number,
            value,
            lo,
            hi,
            note,
            p=p_gap,
            p_test="specificity gap (normal, one-sided)" if p_gap is not None else "",
            rank=nums["rank"],
            m_random=nums["m_random"],
            mde=nums["mde"],
            effect="an NLU excess drop",
            n=nums["n"],
            at_chance=bool(chance_note),
        )
        out.append(finish(claim))
    return out


def own_country_claim(numbers: RunNumbers) -> Claim | None:
    """Each country's own specific set hurts its own questions most.

    Per suppressed set (row of the cross-culture matrix): the change on its own country's questions
    minus the mean change on the other countries' (points). The claim holds when the mean of that
    excess over countries is negative with a 95% bootstrap CI (resampling countries) below 0 and
    the one-sided one-sample t-test over countries (``scipy.stats.ttest_1samp``) gives p < 0.05;
    its power is that t-test's at this number of countries and spread.
    """
    res = (numbers.cross_culture or {}).get("results") or {}
    rows = own_country_rows(res)  # the rows cross-culture's own summary line counts
    countries = len(res.get("eval_countries") or []) or len(rows)
    if not rows or countries < 2:
        return None
    excess = np.array([float(r["diagonal"]) - float(r["off_diagonal_mean"]) for r in rows])
    mean = float(np.mean(excess))
    lo, hi = bootstrap_mean_ci(excess)
    hits = sum(bool(r.get("diagonal_is_most_negative")) for r in rows)
    number = (
        f"own country's change minus the others' mean {stats.format_ci(mean, lo, hi)} points over {len(rows)} "
        "countries; "
        f"own country hurt most in {hits} of {len(rows)} (1 in {countries} by chance)"
    )
    spread = float(np.std(excess, ddof=1)) if excess.size >= 2 else None
    p = None
    if spread:  # a t-test needs a spread: with every excess equal, the CI alone decides
        from scipy.stats import ttest_1samp

        p = float(ttest_1samp(excess, 0.0, alternative="less").pvalue)
    claim = Claim(
        "own-country",
        "Each country's own culture-specific neurons hurt its own questions most",
        "cross-culture",
        verdict(lo, hi, -1),
        number,
        mean,
        lo,
        hi,
        "CI: bootstrap over countries",
        p=p,
        p_test="t-test over countries (one-sided)" if p is not None else "",
        mde=detectable_paired(spread, int(excess.size)),
        effect="an own-country excess drop",
        n=int(excess.size),
        n_unit="countries",
    )
    return finish(claim)


def layer_claim(numbers: RunNumbers) -> Claim | None:
    """The general neurons sit in shallow-to-middle layers more than their pool does: the share in layers
    ``0 .. floor(2L/3) - 1`` minus the pool's share there (:mod:`.layers`; a uniform spread over layers when
    the pools are unknown). CI: Wilson; p: hypergeometric against the pool; power: the detectable share."""
    if numbers.general_pools:
        return layer_claim_of(numbers.general_pools)
    return layer_claim_of(uniform_pool(numbers.general_layers)) if numbers.general_layers else None


def evaluate_claims(numbers: RunNumbers) -> list[Claim]:
    """Every claim the run can test, in the paper's order, with Holm-adjusted p-values over the rows and the verdicts
    decided on them; claims whose experiment did not run are left out."""
    out = [*cultural_drop_claims(numbers), *nlu_spared_claims(numbers)]
    cross = (numbers.cross_culture or {}).get("results")
    out += [c for c in (own_country_claim(numbers), own_country_random_claim(cross), related_claim(cross)) if c]
    out += enhancement_claims(numbers)
    out += [c for c in (layer_claim(numbers),) if c is not None]
    return adjust(out)


def read_numbers(run_dir: str | Path, manifest: Mapping[str, Any] | None = None) -> RunNumbers:
    """Load what :func:`evaluate_claims` reads from a run directory (missing experiments stay None).

    ``manifest`` defaults to the run's ``manifest.json`` (it gives the chance levels).
    """
    run_dir = Path(run_dir)
    if manifest is None:
        manifest = stats.read_json(run_dir / "manifest.json") or {}
    summaries = {name: stats.read_summary(run_dir, name) for name in ("ablation", "enhancement", "cross-culture")}
    benches = {b for s in summaries.values() if s for b in (s.get("results") or {})}
    general = stats.load_sets(run_dir).get("general")
    layers = stats.layer_counts(general).sum(axis=1).tolist() if general is not None and len(general) else None
    return RunNumbers(
        summaries["ablation"],
        summaries["enhancement"],
        summaries["cross-culture"],
        layers,
        pool_layers(general) if layers else None,
        stats.benchmark_kinds(sorted(benches)),
        stats.chance_by_benchmark(manifest or {}),
    )


def format_claim(claim: Claim) -> str:
    """One terminal line: ``verdict  claim [scope]: number (note) — the verdict in words``."""
    scope = f" [{claim.scope}]" if claim.scope else ""
    note = f" ({claim.note})" if claim.note else ""
    words = reading_tail(claim)
    return f"{claim.verdict:<15}  {claim.title}{scope}: {claim.number}{note}" + (f" — {words}" if words else "")


def claims_lines(run_dir: str | Path, manifest: Mapping[str, Any] | None = None) -> list[str]:
    """The "What holds and what does not" verdicts of a run as terminal lines (empty when nothing was tested)."""
    claims = evaluate_claims(read_numbers(run_dir, manifest))
    if not claims:
        return []
    rows = sum(c.p_holm is not None for c in claims)
    tail = [f"  (p-values Holm-adjusted over the {rows} rows that have one)"] if rows else []
    overall = overall_verdict(claims)
    head = ["What holds and what does not:", "  " + overall.line]
    head += ["    decided by: " + row for row in overall.deciding()]
    return [*head, *("  " + format_claim(c) for c in claims), *tail]
