"""The top of the report: the "What holds" box, chance banners, baselines and the interventions table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ...chance import LETTER_FIX, chance_warning
from .. import claims as claims_mod
from .. import stats
from ..overall import overall_verdict
from ..page import ReportContext, esc, note, num, table
from ..verdicts import format_mde, format_rank, reading_tail

_VERDICT_CLASS = {claims_mod.HOLDS: "good", claims_mod.FAILS: "bad", claims_mod.NOT_SIGNIFICANT: "ns"}


def overall_line(claims: Sequence[claims_mod.Claim], deciding: bool = False) -> str:
    """The run's overall verdict (:func:`~culture_neurons.analysis.overall.overall_verdict`) as a paragraph; with
    ``deciding`` the rows that decide it below. Empty when no claim was tested."""
    if not claims:
        return ""
    overall = overall_verdict(claims)
    rows = overall.deciding() if deciding else []
    below = f'<span class="note">Decided by: {esc("; ".join(rows))}.</span>' if rows else ""
    return f'<p class="overall"><b>Overall:</b> {esc(overall.text)}.{below}</p>'


def holds_box(claims: Sequence[claims_mod.Claim]) -> str:
    """The "What holds and what does not" box, rendered from checked claims (nothing hand-written): the overall
    verdict first, then one row per claim."""
    if not claims:
        body = note(
            "No experiment of this run tests one of the paper's claims (run ablation, cross-culture or enhancement)."
        )
    else:
        rows = [
            [
                esc(c.title),
                esc(c.scope),
                f'<span class="verdict {_VERDICT_CLASS[c.verdict]}">{esc(c.verdict)}</span>'
                + (f'<br><span class="note">{esc(tail)}</span>' if (tail := reading_tail(c)) else ""),
                esc(c.number) + (f'<br><span class="note">{esc(c.note)}</span>' if c.note else ""),
                format_rank(c.rank, c.m_random),
                stats.format_p(c.p) + (f'<br><span class="note">{esc(c.p_test)}</span>' if c.p_test else ""),
                stats.format_p(c.p_holm),
                format_mde(c),
            ]
            for c in claims
        ]
        family = sum(c.p_holm is not None for c in claims)
        body = table(
            [
                "claim (the paper's)",
                "tested on",
                "verdict",
                "measured, 95% CI",
                "rank among random sets",
                "p",
                "Holm p",
                "detectable at 80% power",
            ],
            rows,
            "Each claim of the paper this run can test, checked against its own numbers. <b>holds</b>: the whole 95% "
            "CI lies on the side the paper predicts and the Holm-adjusted p is below 0.05; <b>does not hold</b>: the "
            "CI lies on the other side; <b>not significant</b>: anything else, with what the test could have seen. "
            "Δ vs random: intervened accuracy minus the mean of the random sets, in points, with a CI that resamples "
            "items and random sets together (two-level bootstrap). Rank among random sets: where the set stands "
            "among itself and the random sets (1st = furthest the predicted way); its p is the Monte-Carlo p "
            "(b + 1) / (m + 1), which cannot go below 1 / (m + 1) with m random sets. p: each row's own one-sided "
            f"test; Holm p: the same p adjusted by Holm's method for the {family} rows of this table that have one. "
            "Detectable at 80% power: the smallest effect the row's test finds 80% of the time at alpha 0.05, "
            "given its items, random sets and noise.",
            left=4,
        )
    head = overall_line(claims, deciding=True)
    return f'<section class="holds" id="holds"><h2>What holds and what does not</h2>{head}{body}</section>'


def baseline_warnings(ctx: ReportContext) -> list[str]:
    """One warning per benchmark whose baseline accuracy is below chance or within noise of it, then
    the warnings the experiment summaries recorded (each once)."""
    out = []
    for bench, rec in _baselines(ctx.manifest):
        info = rec.get("info", {})
        level, value, n = ctx.chance.get(bench), info.get("value"), int(info.get("n") or 0)
        if level is None or value is None:
            continue
        warning = chance_warning(f"{bench} baseline accuracy", value / 100.0, level / 100.0, n, LETTER_FIX)
        if warning:
            out.append(warning)
    for name in ("ablation", "cross-culture", "enhancement"):
        for warning in (stats.read_summary(ctx.run_dir, name) or {}).get("warnings") or []:
            if warning not in out:
                out.append(str(warning))
    return out


def _baselines(manifest: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """``(benchmark, step record)`` of each finished baseline evaluation, by benchmark name."""
    out = []
    for key, rec in sorted((manifest.get("steps") or {}).items()):
        cond = stats.condition_of(key)
        if cond is not None and cond[1] == "original" and rec.get("status") == "done":
            out.append((cond[0], rec))
    return out


def banner(ctx: ReportContext) -> str:
    """A red banner over the report when a baseline is at chance: then every effect below rests on noise."""
    warnings = baseline_warnings(ctx)
    if not warnings:
        return ""
    items = "".join(f"<li><code>{esc(w)}</code></li>" for w in warnings)
    return (
        '<div class="banner" id="chance"><b>At chance:</b> the model answers these benchmarks no better than '
        "guessing, "
        f"so the effects measured on them say little.<ul>{items}</ul></div>"
    )


def _method(ctx: ReportContext) -> str:
    score_cfg, eval_cfg = ctx.config.get("score", {}), ctx.config.get("evaluate", {})
    return (
        f"<p>Neurons were scored with the <code>{esc(score_cfg.get('target', '?'))}</code> target on "
        f"{esc(', '.join(score_cfg.get('datasets', [])))} ({esc(score_cfg.get('split', '?'))} split), with control "
        f"{esc(', '.join(score_cfg.get('controls', [])) or 'none')} and CountryRC "
        f"<code>{esc(score_cfg.get('countryrc') or 'off')}</code>. "
        f"Effects are measured on the {esc(eval_cfg.get('split', '?'))} split with the "
        f"<code>{esc(eval_cfg.get('scorer', '?'))}</code> scorer.</p>"
    )


def _baseline_table(ctx: ReportContext) -> str:
    rows = []
    for bench, rec in _baselines(ctx.manifest):
        info = rec.get("info", {})
        rows.append([esc(bench), info.get("n", "-"), num(ctx.chance.get(bench)), num(info.get("value"))])
    if not rows:
        return ""
    return table(
        ["benchmark", "n", "chance %", "accuracy %"],
        rows,
        "Baseline accuracy (no intervention) against chance: the mean of 1 / (number of options) over the items.",
    )


def _interventions(ctx: ReportContext) -> str:
    head = stats.headline_rows(ctx.run_dir, ctx.manifest)
    if not head:
        return ""
    rows = [
        [
            esc(h["experiment"]),
            esc(h["benchmark"]),
            esc(h["split"]),
            h["n"],
            num(h.get("chance")),
            num(h["original"]),
            num(h["target"]),
            num(h["random"]),
            stats.format_ci(h["difference"], h.get("ci_low"), h.get("ci_high")),
            stats.format_p(h.get("p")),
        ]
        for h in head
    ]
    return table(
        [
            "experiment",
            "benchmark",
            "split",
            "n",
            "chance",
            "original",
            "intervened",
            "random (mean)",
            "Δ vs random [95% CI]",
            "p",
        ],
        rows,
        "Interventions on the culture-general set (held-out split where the benchmark has one). Accuracy in %; Δ vs "
        "random: "
        "intervened minus the mean of the random sets, in points, with its 95% paired-bootstrap CI; p: centred "
        "paired bootstrap, "
        "one-sided (intervened drop larger than random) for ablation, two-sided for enhancement.",
        left=3,
    )


def render(ctx: ReportContext) -> str:
    """The Results section: method in one paragraph, baselines against chance, the interventions table."""
    parts = ['<h2 id="results">Results</h2>', _method(ctx), _baseline_table(ctx), _interventions(ctx)]
    return "\n".join(p for p in parts if p)
