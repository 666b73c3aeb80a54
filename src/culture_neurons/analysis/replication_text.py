"""Each claim of the paper's abstract next to what one model's summary found, in words computed from its numbers.

Every sentence here is built from a replication summary (:mod:`.summary_export`): a number is
printed as it is stored, a verdict is the claims table's where the claim has a row, and where it
has none the verdict follows the same rule (:func:`~.verdicts.ci_verdict` and
:func:`~.verdicts.decide`). Nothing is typed in by hand, so a regenerated page says what its
summaries say.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..evaluation.metrics import format_p
from .stats import format_ci
from .verdicts import ci_verdict, decide

#: The abstract's claims, in its order: (key, what the paper says).
PAPER_CLAIMS: tuple[tuple[str, str], ...] = (
    ("share", "Culture neurons are under 1 % of all neurons."),
    ("layers", "They sit in shallow-to-middle MLP layers."),
    ("coexist", "Culture-general and culture-specific neurons coexist."),
    (
        "suppression",
        "Suppressing them degrades cultural benchmarks by up to 30 %, while NLU benchmarks stay largely unaffected.",
    ),
    ("related", "Culture-specific neurons support related cultures too."),
    (
        "finetune",
        "Training on NLU data erodes cultural understanding when it updates modules that hold many culture-general "
        "neurons.",
    ),
)

CULTURAL_KINDS = ("culture", "generation", "scale")


def _claims(summary: Mapping[str, Any], match: Callable[[str], bool]) -> list[Mapping[str, Any]]:
    return [c for c in summary.get("claims") or [] if match(str(c.get("key", "")))]


def _row_words(c: Mapping[str, Any]) -> str:
    scope = f" [{c['scope']}]" if c.get("scope") else ""
    holm = f", Holm p {format_p(c.get('p_holm'))}" if c.get("p_holm") is not None else ""
    return f"**{c.get('verdict')}**{scope}: {c.get('number')}{holm}"


def share_words(summary: Mapping[str, Any]) -> str:
    """The general set's share of its pools, and what fixes it."""
    general = (summary.get("sets") or {}).get("general")
    if not general or not general.get("pool_size"):
        return "not measured (no culture-general set)"
    fractions = ", ".join(
        f"{name} top {100 * p['fraction']:g} %" for name, p in (general.get("pools") or {}).items() if p.get("fraction")
    )
    specific = (summary.get("sets") or {}).get("specific") or {}
    spec = f"; the culture-specific sets hold {sum(specific.values()):,} more" if specific else ""
    return (
        f"{general['size']:,} culture-general neurons of {general['pool_size']:,} in their pools "
        f"({100 * general['share']:.2f} %){spec}. Under 1 % by construction: the thresholds fix the share "
        f"({fractions})."
    )


def layer_words(summary: Mapping[str, Any]) -> str:
    """The layer claims' rows, else the MLP pool's share in the first two thirds of its layers."""
    rows = _claims(summary, lambda k: k.startswith("layer"))
    if rows:
        return "; ".join(_row_words(c) for c in rows) + "."
    mlp = (((summary.get("sets") or {}).get("general") or {}).get("pools") or {}).get("mlp")
    if not mlp or not mlp.get("count"):
        return "not measured (no MLP neurons in the general set)"
    layers = len(mlp["per_layer"])
    lower = (2 * layers) // 3
    share = sum(mlp["per_layer"][:lower]) / mlp["count"]
    pool = sum(mlp["pool_per_layer"][:lower]) / max(1, sum(mlp["pool_per_layer"]))
    return (
        f"{100 * share:.0f} % of the {mlp['count']} MLP neurons in the first {lower} of {layers} layers, "
        f"against {100 * pool:.0f} % of the pool."
    )


def coexist_words(summary: Mapping[str, Any]) -> str:
    """Both kinds' sizes and how many neurons they share."""
    sets = summary.get("sets") or {}
    general, specific = sets.get("general"), sets.get("specific") or {}
    if not general or not specific:
        return "not measured (the run selected " + ("no specific sets)" if general else "no general set)")
    sizes = sorted(specific.values())
    ov = sets.get("overlap") or {}
    jac = ov.get("jaccard")
    kind = "mostly distinct" if jac is not None and jac < 0.5 else "largely the same neurons"
    both = "both kinds exist" if general["size"] and sum(sizes) else "one kind is empty"
    return (
        f"{both}: {general['size']:,} general neurons and {sum(sizes):,} specific ones over {len(sizes)} countries "
        f"({sizes[0]}–{sizes[-1]} per country); {ov.get('shared', 0):,} neurons are in both "
        f"(Jaccard {jac:.2f}: {kind})."
        if jac is not None
        else f"{both}: {general['size']:,} general and {sum(sizes):,} specific neurons."
    )


def _ablation_words(row: Mapping[str, Any], claim: Mapping[str, Any] | None) -> str:
    o, ch, ex = row["original"], row["change"], row["excess"]
    rel = ""
    if o.get("value") and ch.get("value") is not None:
        rel = f" ({round(100 * ch['value'] / o['value']):+d} % of the baseline)"
    rank = ""
    if row.get("rank") is not None and row.get("m_random"):
        rank = f", rank {row['rank']} of {row['m_random'] + 1} among random sets (p_mc {format_p(row.get('p_mc'))})"
    verdict = f" — **{claim['verdict']}**" if claim else ""
    chance = "" if row.get("chance") is None else f", chance {row['chance']:.1f} %"
    return (
        f"{row['benchmark']}: {o['value']:.1f} %{chance}, change {format_ci(ch['value'], ch['ci_low'], ch['ci_high'])} "
        f"points{rel}; {format_ci(ex['value'], ex['ci_low'], ex['ci_high'])} points vs random{rank}{verdict}"
    )


def suppression_words(summary: Mapping[str, Any]) -> str:
    """Per benchmark: the change, its share of the baseline and the excess vs random, with the claims' verdicts; then
    the largest cultural drop next to the paper's 30 %."""
    rows = summary.get("ablation") or []
    if not rows:
        return "not measured (no ablation experiment)"
    by_scope = {str(c.get("scope", "")).split(" (")[0]: c for c in _claims(summary, lambda k: k == "cultural-drop")}
    nlu_claims = {str(c.get("scope", "")).split(" (")[0]: c for c in _claims(summary, lambda k: k == "nlu-spared")}
    cultural = [r for r in rows if r["kind"] in CULTURAL_KINDS]
    nlu = [r for r in rows if r["kind"] not in CULTURAL_KINDS]
    parts = [_ablation_words(r, by_scope.get(r["benchmark"])) for r in cultural]
    parts += [_ablation_words(r, nlu_claims.get(r["benchmark"])) for r in nlu]
    drops = [
        -100 * r["change"]["value"] / r["original"]["value"]
        for r in cultural
        if r["original"].get("value") and r["change"].get("value") is not None
    ]
    tail = (
        f" The largest cultural drop is {round(max(drops))} % of its baseline (the paper: up to 30 %)." if drops else ""
    )
    above = [b["benchmark"] for b in summary.get("baselines") or [] if b.get("kind") == "nlu" and b.get("above")]
    tail += f" NLU benchmarks above chance: {', '.join(above) if above else 'none'}."
    return "; ".join(parts) + "." + tail


def related_words(summary: Mapping[str, Any]) -> str:
    """The related-culture claim's row, if the run tested it."""
    rows = _claims(summary, lambda k: "related" in k)
    return "; ".join(_row_words(c) for c in rows) + "." if rows else "not tested in this run (no relatedness row)."


def finetune_words(summary: Mapping[str, Any]) -> str:
    """The fine-tuning claim: its claims row if there is one, else the train stage's numbers (``finetune.claim``)."""
    rows = _claims(summary, lambda k: "finetune" in k or "fine-tun" in k)
    if rows:
        return "; ".join(_row_words(c) for c in rows) + "."
    ft = summary.get("finetune") or {}
    claim = ft.get("claim")
    if not claim or claim.get("value") is None:
        return "not tested in this run (no [train] stage, or no cultural benchmark to evaluate)."
    verdict = decide(
        ci_verdict(claim.get("ci_low"), claim.get("ci_high"), int(claim.get("expect", -1))), claim.get("p_one_sided")
    )
    culture = (ft.get("sides") or {}).get("culture") or {}
    changes = ", ".join(
        f"{name} {format_ci(s['change'].get('value'), s['change'].get('ci_low'), s['change'].get('ci_high'))}"
        for name, s in (culture.get("sets") or {}).items()
    )
    mde = "" if claim.get("mde") is None else f"; it would detect {claim['mde']:.1f} points at 80 % power"
    chance = "" if claim.get("above_chance", True) else " (every cultural benchmark is at chance: it says little)"
    return (
        f"**{verdict}** (no claims row, so not Holm-adjusted): top − random on the cultural side "
        f"{format_ci(claim.get('value'), claim.get('ci_low'), claim.get('ci_high'))} points, paired t-test one-sided "
        f"p {format_p(claim.get('p_one_sided'))}, n={claim.get('n')} items{mde}; each set's change from base: "
        f"{changes}{chance}."
    )


FOUND: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "share": share_words,
    "layers": layer_words,
    "coexist": coexist_words,
    "suppression": suppression_words,
    "related": related_words,
    "finetune": finetune_words,
}


def found_lines(summaries: Sequence[Mapping[str, Any]]) -> list[str]:
    """The markdown of the paper-claims section: each claim, then one bullet per model."""
    out = []
    for i, (key, said) in enumerate(PAPER_CLAIMS, 1):
        out.append(f"{i}. **The paper:** {said}")
        for s in summaries:
            out.append(f"   - *{s['model']['name']}:* {FOUND[key](s)}")
    return out
