"""The ablation, cross-culture and enhancement sections: figures and captioned tables with CIs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import plots, stats
from ..page import ReportContext, esc, note, num, table

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
            "Bars: accuracy with 95% bootstrap CIs; dots: each random seed; dashed: chance. Marks: * p&lt;0.05, "
            "** p&lt;0.01, *** p&lt;0.001, n.s. not significant (paired bootstrap of intervened vs the random mean).",
        )
    )
    diffs = _differences(summary)
    rows = []
    for b in bars.itertuples():
        lo, hi = diffs.get((b.benchmark, b.split), (None, None))
        p = b.p_two_sided if two_sided else b.p_one_sided
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
            ]
        )
    sided = "two-sided" if two_sided else "one-sided (a larger drop than random)"
    out.append(
        table(
            ["benchmark", "split", "n", "original", label, "random", "Δ vs random [95% CI]", "p"],
            rows,
            f"{heading.split(':')[0]} per benchmark. Accuracy in %; Δ vs random: {label} minus the mean of the "
            "random sets, "
            f"in points, with its 95% paired-bootstrap CI; p: centred paired bootstrap, {sided}.",
            left=2,
        )
    )
    return "\n".join(out)


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
    return "\n".join(out)
