""" "Can these neurons be trusted?": the validity analyses of ``validity/summary.json``, when the run has one.

The numbers, figures and readings come from the validity package: its readers turn each section's
numbers into one plain-language sentence, recomputed here from the numbers (never read back as
text), and its figure functions draw the dose-response curve, the faithfulness scatter and the
enhancement sweep. This module only lays them out, next to tables of the same numbers.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ...validity.plots import dose_response_figure, enhancement_figure, faithfulness_figure
from ...validity.readings import READERS
from .. import stats
from ..page import ReportContext, esc, note, num, table

SUMMARY = Path("validity") / "summary.json"
ORDER = ("sensitivity", "stability", "specificity", "faithfulness", "variants")
TITLES = {
    "sensitivity": "Threshold sensitivity and dose-response",
    "stability": "Stability",  # completed with the splits its table holds (_title)
    "specificity": "Specificity: culture against language understanding",
    "faithfulness": "Faithfulness: does the score predict the effect?",
    "variants": "Intervention variants",
}


def _ci(block: Mapping[str, Any] | None, key: str = "value") -> str:
    block = block or {}
    return stats.format_ci(block.get(key), block.get("ci_low"), block.get("ci_high"))


def _pair(value: Any, bounds: Sequence[Any] | None) -> str:
    lo, hi = (list(bounds) + [None, None])[:2] if bounds else (None, None)
    return stats.format_ci(value, lo, hi)


def _percent(fraction: Any) -> str:
    """A threshold stored as a fraction of its pool (0.01), shown in percent (``1``)."""
    return num(fraction * 100 if isinstance(fraction, (int, float)) else fraction, "{:.3g}")


def reading(name: str, section: Mapping[str, Any]) -> str:
    """The section's one-sentence reading, computed from its numbers."""
    reader = READERS.get(name)
    return reader(section) if reader else ""


def _sensitivity(ctx: ReportContext, sec: Mapping[str, Any]) -> list[str]:
    out = []
    if sec.get("dose_response"):
        out.append(
            ctx.figures.embed(
                "validity_dose_response",
                dose_response_figure(sec),
                "dose-response curve",
                "Change in score (points) against the number of neurons suppressed, for the cultural and the NLU "
                "benchmarks, each next to random sets of the same size; bands: 95% paired-bootstrap CIs.",
            )
        )
    rows = []
    for r in sec.get("general") or []:
        eff = r.get("effect") or {}
        rows.append(
            [
                _percent(r.get("t_mlp")) + (" (default)" if r.get("default") else ""),
                _percent(r.get("t_attn")),
                r.get("size", "-"),
                num((r.get("overlap_default") or {}).get("jaccard"), "{:.2f}"),
                _ci((eff.get("culture") or {}).get("difference")),
                _ci((eff.get("nlu") or {}).get("difference")),
            ]
        )
    if rows:
        out.append(
            table(
                [
                    "t_mlp (%)",
                    "t_attn (%)",
                    "neurons",
                    "Jaccard with default",
                    "culture Δ vs random",
                    "NLU Δ vs random",
                ],
                rows,
                "The general rule re-run at each MLP threshold (attention threshold scaled in proportion; both in % of "
                "their pool, so 1 is the top 1 %, the config's 0.01): set size, overlap with the default set, and the "
                "suppression effect against random sets of the same size (points, 95% CI).",
            )
        )
    return out


def _stability_rows(sec: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """The splits (``folds``, ``templates``) the stability section has an overlap for, in table order."""
    parts = (("folds", sec.get("folds")), ("templates", sec.get("templates")))
    return [(label, part) for label, part in parts if ((part or {}).get("summary") or {}).get("jaccard") is not None]


def _title(name: str, sec: Mapping[str, Any]) -> str:
    # The stability heading names only the splits its table holds (a run without templates has only folds).
    if name != "stability":
        return TITLES[name]
    labels = [label for label, _ in _stability_rows(sec)]
    return f"{TITLES[name]} across {' and '.join(labels)}" if labels else TITLES[name]


def _stability(ctx: ReportContext, sec: Mapping[str, Any]) -> list[str]:
    rows = []
    for label, part in _stability_rows(sec):
        s = part["summary"]
        rng = s.get("range") or [None, None]
        rnd = s.get("random_ci") or [None, None]
        sizes = ", ".join(f"{esc(k)} {v}" for k, v in (part.get("sets") or {}).items())
        rows.append(
            [
                label,
                sizes,
                f"{s['jaccard']:.2f} [{num(rng[0], '{:.2f}')}, {num(rng[1], '{:.2f}')}]",
                f"{num(s.get('random_expected'), '{:.3f}')} [{num(rnd[0], '{:.3f}')}, {num(rnd[1], '{:.3f}')}]",
            ]
        )
    if not rows:
        return [note("No fold or template overlap in the summary.")]
    labels = [label for label, _ in _stability_rows(sec)]
    where = {
        "folds": "on disjoint folds of the identification data",
        "templates": "on each instruction template alone",
    }
    share = (sec.get("folds") or {}).get("full_in_every_fold") if "folds" in labels else None
    extra = "" if share is None else f" {100 * share:.0f}% of the default set's neurons are selected in every fold."
    return [
        table(
            ["split by", "sets (neurons)", "mean Jaccard [range over pairs]", "random sets: expected [95% range]"],
            rows,
            f"Overlap of the general sets selected {' and '.join(where[x] for x in labels)}, next to the exact "
            f"overlap of random sets of the same per-pool sizes.{extra}",
            left=2,
        )
    ]


def _specificity(ctx: ReportContext, sec: Mapping[str, Any]) -> list[str]:
    out = []
    warnings = ((sec.get("baselines") or {}).get("warnings")) or []
    if warnings:
        out.append(
            '<div class="banner"><b>At chance:</b><ul>'
            + "".join(f"<li><code>{esc(w)}</code></li>" for w in warnings)
            + "</ul></div>"
        )
    rows = []
    for r in sec.get("interventions") or []:
        eff, g = r.get("effect") or {}, r.get("gap_vs_random") or {}
        rows.append(
            [
                esc(r.get("label")),
                r.get("size", "-"),
                _ci((eff.get("culture") or {}).get("difference")),
                _ci((eff.get("nlu") or {}).get("difference")),
                stats.format_ci(g.get("gap"), g.get("ci_low"), g.get("ci_high")),
                stats.format_p(g.get("p_value")),
            ]
        )
    if rows:
        out.append(
            table(
                ["set", "neurons", "culture Δ vs random", "NLU Δ vs random", "gap: culture drop − NLU drop", "p"],
                rows,
                "Suppressing the general set (default, and re-selected without the neurons that score highest on NLU "
                "data): "
                "each side's change against random sets of the same size, and the specificity gap with its 95% "
                "bootstrap CI "
                "and p (points; a positive gap means culture is hurt more than NLU).",
                left=1,
            )
        )
    return out


def _faithfulness_rows(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "validity" / "faithfulness.csv"
    if not path.is_file():
        return []
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _faithfulness(ctx: ReportContext, sec: Mapping[str, Any]) -> list[str]:
    out = []
    rows = _faithfulness_rows(ctx.run_dir)
    if rows:
        out.append(
            ctx.figures.embed(
                "validity_faithfulness",
                faithfulness_figure(rows, sec.get("headline")),
                "faithfulness scatter",
                "Attribution score of each sampled neuron against its true effect: the mean drop of the scoring target "
                "when that neuron alone is zeroed (top: the highest-scoring general neurons; threshold: ranks around "
                "the selection threshold; random: drawn from the pool).",
            )
        )
    add = [
        [a.get("k"), num(a.get("joint"), "{:.4f}"), num(a.get("sum_single"), "{:.4f}"), num(a.get("ratio"), "{:.2f}")]
        for a in sec.get("additivity") or []
    ]
    if add:
        out.append(
            table(
                ["top k", "effect of zeroing all k", "sum of single effects", "ratio"],
                add,
                "Additivity: the effect of zeroing the top k general neurons together (the mean drop of the target "
                "probability) against the sum of their single effects. Ratio = together ÷ sum: below 0, the joint "
                "effect has the opposite sign of the sum of single effects (zeroed together they raise the target "
                "where alone they lower it, or the reverse); between 0 and 1, together they do less than the sum "
                "(sub-additive); 1 = additive; above 1, together they do more than the sum (super-additive: the "
                "neurons act together); - when the single effects sum to 0.",
            )
        )
    return out


def _variants(ctx: ReportContext, sec: Mapping[str, Any]) -> list[str]:
    if not sec.get("enhancement"):
        return []
    return [
        ctx.figures.embed(
            "validity_enhancement",
            enhancement_figure(sec),
            "enhancement factor sweep",
            "Change in score (points, 95% CI) on each side when the general set is scaled by each factor "
            "(0: zeroed, 1: unchanged).",
        )
    ]


RENDER = {
    "sensitivity": _sensitivity,
    "stability": _stability,
    "specificity": _specificity,
    "faithfulness": _faithfulness,
    "variants": _variants,
}


def checked_set(summary: Mapping[str, Any]) -> str:
    """Which general set the checks are about, in words: the run's own, or one validity selected again (with its
    overlap with the run's, so a reader knows how far the checks carry over to the set the tables describe)."""
    info = summary.get("default_set") or {}
    size = info.get("size")
    sized = "" if size is None else f" ({size} neurons)"
    if info.get("source") == "given":
        return f"the run's own culture-general set{sized}, the one the tables above describe (neurons/general.json)"
    ref = info.get("reference_overlap") or {}
    if ref.get("jaccard") is None:
        return f"a culture-general set{sized} that the validity analyses selected from their identification examples"
    return (
        f"a culture-general set{sized} that the validity analyses selected again from their own identification "
        f"examples, not the run's set of {ref.get('size_b')} neurons that the tables above describe "
        f"(Jaccard {ref['jaccard']:.2f}, {ref.get('intersection')} neurons shared); rerun the validate stage of the "
        "pipeline to check the run's own set"
    )


def _body(ctx: ReportContext, summary: Mapping[str, Any]) -> list[str]:
    out = [
        f"<p>Checks of {esc(checked_set(summary))}, each read in one sentence computed from its numbers. What each "
        "check means, when to trust it and what it costs: docs/validity.md.</p>"
    ]
    for name in ORDER:
        sec = summary.get(name)
        if not isinstance(sec, Mapping):
            continue
        out.append(f'<h3 id="validity-{name}">{esc(_title(name, sec))}</h3>')
        text = reading(name, sec)
        if text:
            out.append(f'<p class="reading"><b>Reading:</b> {esc(text)}.</p>')
        out.extend(RENDER[name](ctx, sec))
    return out


def render(ctx: ReportContext) -> str:
    """The validity section, or a note saying how to get one when the run has no ``validity/summary.json``."""
    summary = stats.read_json(ctx.run_dir / SUMMARY)
    if summary is None:
        body = [
            note(
                "Not run: add a <code>[validate]</code> stage to the config, or run <code>culture-neurons validate "
                "RUN_DIR</code>, "
                "to test threshold sensitivity, stability, specificity and faithfulness."
            )
        ]
    else:
        body = _body(ctx, summary)
    return "\n".join(['<section id="validity"><h2>Can these neurons be trusted?</h2>', *body, "</section>"])
