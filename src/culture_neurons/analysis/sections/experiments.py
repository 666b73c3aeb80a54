"""The ablation, cross-culture and enhancement sections: figures and captioned tables with CIs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from .. import plots, stats
from ..page import ReportContext, esc, note, num, table
from ..verdicts import format_rank

EXPERIMENTS = {
    "ablation": ("Ablation: suppressing the culture-general neurons", "suppressed", False),
    "enhancement": ("Enhancement: amplifying the culture-general neurons", "enhanced", True),
}


def experiment(ctx: ReportContext, name: str) -> str:
    """The ablation or enhancement section: bar chart and table (Δ vs random with its CI, p in the one format)."""
    heading, label, two_sided = EXPERIMENTS[name]
    out = [f'<h2 id="{name}">{heading}</h2>']
    summary = stats.read_summary(ctx.run_dir, name)
    if summary is None:
        return "\n".join(out + [note(f'Not run (add "{name}" to evaluate.experiments).')])
    bars = stats.experiment_bars(summary)
    factor = summary.get("config", {}).get("factor")
    title = (
        f"{heading.split(':')[0]} ({label}{'' if factor is None else f' ×{factor:g}'} vs random sets of the same size)"
    )
    out.append(
        ctx.figures.embed(
            name,
            plots.experiment_figure(bars, title, f"{label} (general)", ctx.chance, two_sided),
            f"{name} bar chart",
            f"Error bars: on the original and {label} bars, the 95% bootstrap CI of the accuracy; on the random bar "
            "(the mean of the random sets), the 95% paired-bootstrap CI of the random sets' change from the "
            "original, placed around the random mean. Dots: each random seed; dashed: chance. Marks: * p&lt;0.05, "
            "** p&lt;0.01, *** p&lt;0.001, n.s. not significant (paired bootstrap of intervened vs the random mean).",
        )
    )
    diffs = _differences(summary)
    rows = []
    for b in bars.itertuples():
        lo, hi = diffs.get((b.benchmark, b.split), (None, None))
        p = b.p_two_sided if two_sided else b.p_one_sided
        rank, p_mc = (b.rank_rise, b.p_mc_rise) if two_sided else (b.rank, b.p_mc)
        rows.append(
            [
                esc(b.benchmark),
                esc(b.split),
                b.n,
                num(b.original),
                num(b.target),
                num(b.random),
                stats.format_ci(b.difference, lo, hi),
                stats.format_p(p),
                _two_level(b.excess_lo, b.excess_hi),
                format_rank(_int(rank), _int(b.m_random)),
                stats.format_p(_float(p_mc)),
                num(_float(b.mde)),
            ]
        )
    sided = "two-sided" if two_sided else "one-sided (a larger drop than random)"
    direction = "rise" if two_sided else "drop"
    out.append(
        table(
            [
                "benchmark",
                "split",
                "n",
                "original",
                label,
                "random",
                "Δ vs random [95% CI]",
                "p",
                "CI over items and random sets",
                f"rank by {direction}",
                "p_mc",
                "detectable Δ",
            ],
            rows,
            f"{heading.split(':')[0]} per benchmark. Accuracy in %; Δ vs random: {label} minus the mean of the "
            "random sets, "
            f"in points, with its 95% paired-bootstrap CI over items; p: centred paired bootstrap, {sided}. The random "
            "sets are a sample too: CI over items and random sets: the two-level bootstrap of the same Δ, resampling "
            f"items and random sets together; rank by {direction}: where the {label} set stands among itself and the "
            f"random sets (1st = the largest {direction}; ties count against it); p_mc: the Monte-Carlo p "
            "(b + 1) / (m + 1), b = random sets whose "
            f"{direction} is at least as large, m = random sets, so it cannot go below 1 / (m + 1); detectable Δ: the "
            "smallest |Δ| the two-level test detects at 80% power (alpha 0.05), in points.",
            left=2,
        )
    )
    return "\n".join(out)


def _float(v: Any) -> float | None:
    """A number from a pandas cell, None where the summary had none (NaN)."""
    return None if v is None or pd.isna(v) else float(v)


def _int(v: Any) -> int | None:
    f = _float(v)
    return None if f is None else int(f)


def _two_level(lo: Any, hi: Any) -> str:
    lo, hi = _float(lo), _float(hi)
    return "-" if lo is None or hi is None else f"[{lo:+.1f}, {hi:+.1f}]"


def _differences(summary: Mapping[str, Any]) -> dict[tuple[str, str], tuple[float | None, float | None]]:
    """``{(benchmark, split): (ci_low, ci_high)}`` of each Δ vs random."""
    out = {}
    for bench, entry in summary.get("results", {}).items():
        for split, block in entry.items():
            if isinstance(block, Mapping):
                diff = block.get("difference") or {}
                out[(bench, split)] = (diff.get("ci_low"), diff.get("ci_high"))
    return out


def _cell(v: Mapping[str, Any] | None) -> str:
    if not v or v.get("value") is None:
        return "-"
    value = stats.format_ci(v["value"], v.get("ci_low"), v.get("ci_high"))
    return f"{value}<br><span class=note>n={v.get('n', '?')}</span>"


def _cells_table(res: Mapping[str, Any]) -> str:
    change = res.get("change") or {}
    cols = list(res.get("eval_countries") or next(iter(change.values()), {}).keys())
    rows = [[esc(c)] + [_cell((change.get(c) or {}).get(e)) for e in cols] for c in change]
    ns = [int(v["n"]) for r in change.values() for v in r.values() if isinstance(v, Mapping) and v.get("n")]
    resolution = ""
    if ns:
        lo, hi = min(ns), max(ns)
        span = f"{lo}" if lo == hi else f"{lo}–{hi}"
        step = f"{100 / hi:.1f}" if lo == hi else f"{100 / hi:.1f}–{100 / lo:.1f}"
        resolution = (
            f" Each cell rests on {span} questions, so one question moves it by {step} points: "
            "differences smaller than that, or inside the CIs, are noise."
        )
    return table(
        ["suppressed ↓ / evaluated on →"] + [esc(c) for c in cols],
        rows,
        "Change in accuracy (points) on each country's questions when each country's culture-specific set is "
        "suppressed, "
        f"with its 95% paired-bootstrap CI and the number of questions n.{resolution}",
    )


def cross_culture(ctx: ReportContext) -> str:
    """The cross-culture section: heatmap, per-row summary, and every cell with its CI and n."""
    out = ['<h2 id="cross">Cross-culture suppression</h2>']
    matrix = stats.read_matrix(ctx.run_dir)
    summary = stats.read_summary(ctx.run_dir, "cross-culture")
    if matrix is None or summary is None:
        return "\n".join(
            out
            + [note('Not run (add "cross-culture" to evaluate.experiments; it needs non-empty culture-specific sets).')]
        )
    out.append(
        ctx.figures.embed(
            "cross_culture",
            plots.cross_culture_figure(matrix),
            "cross-culture heatmap",
            "Each row suppresses one country's culture-specific neurons; each column is the change in accuracy on "
            "one country's questions (points). The diagonal (bold) is expected to be the most negative entry of its "
            "row.",
        )
    )
    res = summary["results"]
    rows = [
        [
            esc(c),
            num(v.get("diagonal"), "{:+.1f}"),
            num(v.get("off_diagonal_mean"), "{:+.1f}"),
            esc(v.get("most_affected")),
            "yes" if v.get("diagonal_is_most_negative") else "no",
        ]
        for c, v in res.get("rows", {}).items()
    ]
    out.append(
        table(
            ["suppressed", "own country", "others (mean)", "most affected", "own most hurt"],
            rows,
            "Per suppressed set: the change on its own country's questions, the mean change on the other countries', "
            "the country hurt most, and whether that is its own (points).",
        )
    )
    if res.get("change"):
        out.append(_cells_table(res))
    out += [x for x in (_random_table(res.get("vs_random")), _related_table(res.get("related"))) if x]
    return "\n".join(out)


def _random_table(block: Mapping[str, Any] | None) -> str:
    """Each country's set against random sets of its size on its own questions (the summary's ``vs_random``)."""
    per = (block or {}).get("per_country") or {}
    if not per:
        return ""
    rows = []
    for country, b in per.items():
        two = b.get("excess_ci_two_level") or {}
        rows.append(
            [
                esc(country),
                b.get("n", "-"),
                num((b.get("change") or {}).get("value"), "{:+.1f}"),
                num((b.get("random_change") or {}).get("value"), "{:+.1f}"),
                stats.format_ci(two.get("value"), two.get("ci_low"), two.get("ci_high")) if two else "-",
                format_rank(_int(b.get("rank")), _int(b.get("m_random"))),
                stats.format_p(_float(b.get("p_mc"))),
                num(_float(b.get("mde"))),
            ]
        )
    pooled = block.get("pooled") or {}
    if pooled.get("value") is not None:
        rows.append(
            [
                "<b>mean over countries</b>",
                pooled.get("n", "-"),
                num(pooled.get("change"), "{:+.1f}"),
                num(float(sum(pooled["random_changes"]) / len(pooled["random_changes"])), "{:+.1f}")
                if pooled.get("random_changes")
                else "-",
                stats.format_ci(pooled["value"], pooled.get("ci_low"), pooled.get("ci_high")),
                format_rank(_int(pooled.get("rank")), _int(pooled.get("m_random"))),
                stats.format_p(_float(pooled.get("p_mc"))),
                num(_float(pooled.get("mde"))),
            ]
        )
    return table(
        [
            "suppressed",
            "n",
            "own change",
            "random sets' change",
            "Δ vs random [95% CI]",
            "rank by drop",
            "p_mc",
            "detectable Δ",
        ],
        rows,
        "Each country's culture-specific set against layer-matched random sets of its size, on its own country's "
        "questions (points): its change, the mean change of its random sets, and the difference with the two-level "
        "CI over items and random sets; rank by drop among itself and its random sets, with the Monte-Carlo p "
        "(b + 1) / (m + 1); detectable Δ at 80% power. The last row averages the countries: its CI combines the "
        "countries' standard errors, its rank compares the mean change with the means over countries of each "
        "country's s-th random set.",
        left=1,
    )


def _related_table(block: Mapping[str, Any] | None) -> str:
    """The related-culture statistic per country and overall (the summary's ``related``)."""
    per = (block or {}).get("per_country") or {}
    if not per:
        return ""
    rows = [
        [
            esc(c),
            esc(", ".join(v.get("related") or [])),
            num(v.get("related_drop"), "{:+.1f}"),
            num(v.get("unrelated_drop"), "{:+.1f}"),
            num(v.get("excess"), "{:+.1f}"),
        ]
        for c, v in per.items()
    ]
    rows.append(
        [
            "<b>mean over countries</b>",
            "",
            "",
            "",
            stats.format_ci(block.get("value"), block.get("ci_low"), block.get("ci_high")),
        ]
    )
    left = "; ".join(f"{c}: {why}" for c, why in (block.get("left_out") or {}).items())
    pairs = ", ".join("–".join(g) for g in block.get("table") or [])
    return table(
        ["suppressed", "related cultures", "drop on related", "drop on unrelated", "related − unrelated"],
        rows,
        "Related cultures: when a country's culture-specific set is suppressed, the mean drop (points, positive = "
        "hurt) on the questions of its related countries and of its unrelated ones, and the difference; the last "
        "row is the mean over countries with its 95% CI from a two-level bootstrap (countries, and items within "
        f"each). Related: {esc(pairs or 'none')} (config key evaluate.related)."
        + (f" Left out: {esc(left)}." if left else ""),
        left=2,
    )
