"""What holds and what does not: the paper's claims checked against a run's own numbers.

Each check is a pure function over the experiment summaries (plain dicts, as ``summary.json``
holds them) and returns :class:`Claim` records with a verdict, the number it rests on and its 95%
CI. Nothing here is written for a particular run; the report's box and the terminal lines
(:func:`claims_lines`) are both rendered from these records.

A verdict compares the CI with the direction the paper predicts:

- ``holds``: the whole CI lies on the predicted side;
- ``does not hold``: the whole CI lies on the other side;
- ``not significant``: the CI contains the null value (or there is no CI).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..chance import chance_warning
from ..evaluation.display import own_country_rows
from . import stats

HOLDS = "holds"
FAILS = "does not hold"
NOT_SIGNIFICANT = "not significant"
VERDICTS = (HOLDS, FAILS, NOT_SIGNIFICANT)

CULTURAL_KINDS = ("culture", "generation", "scale")
NLU_KINDS = ("nlu",)
Z95 = 1.959963984540054  # two-sided 95% normal quantile


@dataclass(frozen=True)
class Claim:
    """One checked claim: what the paper says, on which benchmark, the verdict and the number behind it."""

    key: str  # cultural-drop | nlu-spared | own-country | enhancement | layers
    title: str  # the claim in words
    scope: str  # where it was tested ("blend (heldout)"), "" when run-wide
    verdict: str  # one of VERDICTS
    number: str  # the measured number with its CI, ready to print
    value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    note: str = ""  # a caveat (baseline at chance, how the CI was computed)


@dataclass(frozen=True)
class RunNumbers:
    """Everything the checks read, already loaded: summaries as dicts, the general set's layer counts."""

    ablation: Mapping[str, Any] | None = None
    enhancement: Mapping[str, Any] | None = None
    cross_culture: Mapping[str, Any] | None = None
    general_layers: Sequence[int] | None = None  # neurons of the general set per layer, all sites
    kinds: Mapping[str, str] = field(default_factory=dict)  # benchmark -> registry kind (culture, nlu, ...)
    chance: Mapping[str, float | None] = field(default_factory=dict)  # benchmark -> chance accuracy (%)


def verdict(low: float | None, high: float | None, expect: int, null: float = 0.0) -> str:
    """The verdict of a CI against ``null`` when the paper expects the value above (``expect=+1``) or below (``-1``)
    it."""
    if low is None or high is None or any(isinstance(v, float) and math.isnan(v) for v in (low, high)):
        return NOT_SIGNIFICANT
    above, below = low > null, high < null
    if (above and expect > 0) or (below and expect < 0):
        return HOLDS
    if above or below:
        return FAILS
    return NOT_SIGNIFICANT


def wilson_interval(hits: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score 95% interval of a binomial proportion ``hits / n`` (``(0, 1)`` when ``n`` is 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def binomial_p_at_least(hits: int, n: int, p: float) -> float:
    """One-sided binomial p-value ``P(X >= hits)`` for ``X ~ Binomial(n, p)``."""
    return float(min(1.0, sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(hits, n + 1))))


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
    diff = block.get("difference") or {}
    value, lo, hi = diff.get("value"), diff.get("ci_low"), diff.get("ci_high")
    number = f"Δ {stats.format_ci(value, lo, hi)} points vs random, p {stats.format_p(diff.get(p_key))}"
    return Claim(
        key,
        title,
        f"{bench} ({split})",
        verdict(lo, hi, expect),
        number,
        value,
        lo,
        hi,
        _at_chance(bench, block, chance),
    )


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


def specificity_gap(
    culture: Mapping[str, Any], nlu: Mapping[str, Any]
) -> tuple[float | None, float | None, float | None]:
    """(cultural drop) − (NLU drop) against random, in points, with a 95% CI from the two sides' CIs.

    The two benchmarks' items are disjoint, so the sides are independent: each side's standard error
    is read off its bootstrap CI (half-width / 1.96) and the two add in quadrature.
    """
    c, n = culture.get("difference") or {}, nlu.get("difference") or {}
    if c.get("value") is None or n.get("value") is None:
        return None, None, None
    gap = n["value"] - c["value"]  # drop = −difference, so drop_c − drop_n = diff_n − diff_c
    if None in (c.get("ci_low"), c.get("ci_high"), n.get("ci_low"), n.get("ci_high")):
        return gap, None, None
    se = math.hypot((c["ci_high"] - c["ci_low"]) / (2 * Z95), (n["ci_high"] - n["ci_low"]) / (2 * Z95))
    return gap, gap - Z95 * se, gap + Z95 * se


def nlu_spared_claims(numbers: RunNumbers) -> list[Claim]:
    """Suppressing the general set spares NLU: one claim per NLU benchmark, against the first cultural benchmark.

    ``does not hold`` when the NLU change against random is significantly negative; ``holds`` when it
    is not and the cultural drop significantly exceeds the NLU drop (the specificity gap); else
    ``not significant`` (NLU not shown to be hurt, but not shown to be spared either).
    """
    cultural = _blocks(numbers.ablation, numbers.kinds, CULTURAL_KINDS)
    out = []
    for bench, split, block in _blocks(numbers.ablation, numbers.kinds, NLU_KINDS):
        diff = block.get("difference") or {}
        value, lo, hi = diff.get("value"), diff.get("ci_low"), diff.get("ci_high")
        hurt = verdict(lo, hi, -1) == HOLDS
        number = f"NLU Δ {stats.format_ci(value, lo, hi)} points vs random"
        gap_verdict = NOT_SIGNIFICANT
        note = _at_chance(bench, block, numbers.chance)
        if cultural:
            c_bench, _, c_block = cultural[0]
            gap, g_lo, g_hi = specificity_gap(c_block, block)
            gap_verdict = verdict(g_lo, g_hi, +1)
            number += f"; cultural drop minus NLU drop ({c_bench}) {stats.format_ci(gap, g_lo, g_hi)} points"
            note = "; ".join(x for x in (note, "gap CI: normal approximation from the two bootstrap CIs") if x)
        result = FAILS if hurt else HOLDS if gap_verdict == HOLDS else NOT_SIGNIFICANT
        out.append(
            Claim(
                "nlu-spared",
                "Suppressing the culture-general neurons spares language understanding (NLU)",
                f"{bench} ({split})",
                result,
                number,
                value,
                lo,
                hi,
                note,
            )
        )
    return out


def bootstrap_mean_ci(values: Sequence[float], n_boot: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile 95% bootstrap CI of the mean of ``values`` (fixed seed: the same numbers give the same CI)."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(n_boot, data.size))].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def own_country_claim(numbers: RunNumbers) -> Claim | None:
    """Each country's own specific set hurts its own questions most.

    Per suppressed set (row of the cross-culture matrix): the change on its own country's questions
    minus the mean change on the other countries' (points). The claim holds when the mean of that
    excess over countries is negative with a 95% bootstrap CI (resampling countries) below 0.
    """
    res = (numbers.cross_culture or {}).get("results") or {}
    rows = own_country_rows(res)  # the rows cross-culture's own summary line counts
    countries = len(res.get("eval_countries") or []) or len(rows)
    if not rows or countries < 2:
        return None
    excess = [float(r["diagonal"]) - float(r["off_diagonal_mean"]) for r in rows]
    mean = float(np.mean(excess))
    lo, hi = bootstrap_mean_ci(excess)
    hits = sum(bool(r.get("diagonal_is_most_negative")) for r in rows)
    number = (
        f"own country's change minus the others' mean {stats.format_ci(mean, lo, hi)} points over {len(rows)} "
        "countries; "
        f"own country hurt most in {hits} of {len(rows)} (1 in {countries} by chance)"
    )
    return Claim(
        "own-country",
        "Each country's own culture-specific neurons hurt its own questions most",
        "cross-culture",
        verdict(lo, hi, -1),
        number,
        mean,
        lo,
        hi,
        "CI: bootstrap over countries",
    )


def layer_claim(numbers: RunNumbers) -> Claim | None:
    """The general neurons sit in shallow-to-middle layers: the share in the first two thirds of the layers
    (layers ``0 .. floor(2L/3) - 1``) against the ``floor(2L/3) / L`` a uniform spread over layers would give."""
    counts = [int(c) for c in numbers.general_layers or []]
    layers, total = len(counts), sum(counts)
    lower = (2 * layers) // 3
    if total == 0 or lower == 0 or lower == layers:
        return None
    hits = sum(counts[:lower])
    lo, hi = wilson_interval(hits, total)
    expected = lower / layers
    where = "layer 0" if lower == 1 else f"layers 0–{lower - 1}"
    number = (
        f"{100 * hits / total:.0f}% [{100 * lo:.0f}, {100 * hi:.0f}] of {total} neurons in {where} of {layers}, "
        f"against {100 * expected:.0f}% for a uniform spread"
    )
    return Claim(
        "layers",
        "The culture-general neurons sit in shallow-to-middle layers",
        "general set",
        verdict(lo, hi, +1, expected),
        number,
        hits / total,
        lo,
        hi,
        "CI: Wilson interval, neurons counted as independent draws",
    )


def evaluate_claims(numbers: RunNumbers) -> list[Claim]:
    """Every claim the run can test, in the paper's order; claims whose experiment did not run are left out."""
    out = [*cultural_drop_claims(numbers), *nlu_spared_claims(numbers)]
    out += [c for c in (own_country_claim(numbers),) if c is not None]
    out += enhancement_claims(numbers)
    out += [c for c in (layer_claim(numbers),) if c is not None]
    return out


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
        stats.benchmark_kinds(sorted(benches)),
        stats.chance_by_benchmark(manifest or {}),
    )


def format_claim(claim: Claim) -> str:
    """One terminal line: ``verdict  claim [scope]: number (note)``."""
    scope = f" [{claim.scope}]" if claim.scope else ""
    note = f" ({claim.note})" if claim.note else ""
    return f"{claim.verdict:<15}  {claim.title}{scope}: {claim.number}{note}"


def claims_lines(run_dir: str | Path, manifest: Mapping[str, Any] | None = None) -> list[str]:
    """The "What holds and what does not" verdicts of a run as terminal lines (empty when nothing was tested)."""
    claims = evaluate_claims(read_numbers(run_dir, manifest))
    return ["What holds and what does not:", *("  " + format_claim(c) for c in claims)] if claims else []
