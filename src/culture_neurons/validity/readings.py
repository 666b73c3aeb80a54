"""One-sentence readings of the validity results, computed from the numbers (never hand-written).

Each function takes one section of ``validity/summary.json`` (a dict) and returns a plain-language
sentence. A CI that excludes 0 (or excludes the random interval) is called significant; anything
else is reported as "not significant", with the interval, so a null result reads as one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _ci(value: float | None, low: float | None, high: float | None, unit: str = " points", digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if low is None or high is None:
        return f"{value:+.{digits}f}{unit}"
    return f"{value:+.{digits}f}{unit} [{low:+.{digits}f}, {high:+.{digits}f}]"


def _excludes_zero(low: float | None, high: float | None) -> bool:
    return low is not None and high is not None and (low > 0 or high < 0)


def reading_specificity(section: Mapping[str, Any]) -> str:
    """E.g. "the cultural drop exceeds the NLU drop: gap +8.1 points [+3.0, +13.2]" or "... not significant"."""
    head = section.get("headline") or {}
    if not section.get("nlu_informative", False):
        return (
            "the NLU side is at chance for this model, so specificity cannot be judged: "
            "pick NLU benchmarks the model answers above chance"
        )
    g, lo, hi = head.get("value"), head.get("ci_low"), head.get("ci_high")
    if g is None:
        return "no specificity gap could be computed (one side has no items)"
    text = _ci(g, lo, hi)
    if _excludes_zero(lo, hi) and g > 0:
        verdict = f"the cultural drop exceeds the NLU drop: gap {text}"
    elif _excludes_zero(lo, hi):
        verdict = f"the NLU drop exceeds the cultural drop, so the set is not culture-specific: gap {text}"
    else:
        verdict = f"the cultural and NLU drops do not differ significantly: gap {text}"
    excl = head.get("excluded")
    if excl and excl.get("value") is not None:
        verdict += (
            f"; with the NLU exclusion filter the gap is {_ci(excl['value'], excl.get('ci_low'), excl.get('ci_high'))}"
        )
    nlu = ((section.get("baselines") or {}).get("sides") or {}).get("nlu") or {}
    if nlu.get("left_out"):
        verdict += (
            f" (NLU side: {', '.join(nlu.get('pooled', []))}; left out as at chance: {', '.join(nlu['left_out'])})"
        )
    return verdict


def reading_stability(section: Mapping[str, Any]) -> str:
    """Fold (and template) Jaccard against the random expectation."""
    head = section.get("headline") or {}
    j, rnd, rhi = head.get("value"), head.get("random_expected"), head.get("random_ci_high")
    if j is None:
        return "no fold overlap could be computed (a fold selected no neurons)"
    ratio = f"{j / rnd:.0f}x" if rnd else "far above"
    if rhi is not None and j > rhi:
        text = (
            f"the folds agree well above chance: Jaccard {j:.2f} between folds "
            f"vs {rnd:.3f} for random sets of the same size ({ratio})"
        )
    else:
        text = f"the folds agree no more than random sets of the same size would: Jaccard {j:.2f} vs {rnd:.3f} expected"
    t = head.get("template_jaccard")
    if t is not None:
        text += f"; across templates {t:.2f} (random {head.get('template_random_expected', 0):.3f})"
    if head.get("stable_size") is not None:
        text += (
            f"; {head['stable_size']} neurons are stable across the cells (expected false selections <= "
            f"{head['stable_bound']:.2f}; Jaccard {head.get('stable_jaccard') or 0:.2f} with the default set)"
        )
    return text


def reading_faithfulness(section: Mapping[str, Any]) -> str:
    """Spearman correlation of score and true effect, and the method comparison's recommendation when there is one."""
    text = _reading_rho(section)
    methods, chosen = section.get("methods") or {}, (section.get("recommended") or {}).get("method")
    if methods:
        rhos = ", ".join(f"{m} {e['spearman']['rho']:.2f}" for m, e in methods.items())
        text += f"; methods: rho {rhos}" + (f"; recommended: {chosen}" if chosen else "")
    return text


def _reading_rho(section: Mapping[str, Any]) -> str:
    head = section.get("headline") or {}
    rho, lo, hi = head.get("value"), head.get("ci_low"), head.get("ci_high")
    if rho is None or rho != rho:
        return "the attribution-effect correlation is undefined (constant scores or effects)"
    text = f"rho = {rho:.2f} [{lo:.2f}, {hi:.2f}] over {head.get('n', '?')} neurons"
    if _excludes_zero(lo, hi) and rho > 0:
        strength = "strongly" if rho >= 0.5 else "weakly" if rho < 0.3 else "moderately"
        return f"the attribution score {strength} predicts the true single-neuron effect: {text}"
    if _excludes_zero(lo, hi):
        return f"the attribution score anti-predicts the true single-neuron effect: {text}"
    return f"the attribution score does not significantly predict the true single-neuron effect: {text}"


def reading_sensitivity(section: Mapping[str, Any]) -> str:
    """How the culture and NLU effects change with set size across the sweep."""
    points = section.get("dose_response") or []
    if not points:
        sizes = [r["size"] for r in section.get("general", [])]
        return f"set sizes across the threshold sweep: {', '.join(map(str, sizes))} (effects not evaluated)"
    parts = []
    for side in ("culture", "nlu"):
        pts = sorted((p for p in points if p["side"] == side), key=lambda p: p["size"])
        if not pts:
            continue
        sig = [p for p in pts if _excludes_zero(*p["difference_ci"]) and p["difference"] < 0]
        first = (
            f"; the first size beating random is {sig[0]['size']}" if sig else "; no size beats random significantly"
        )
        parts.append(
            f"{side}: {_ci(pts[0]['difference'], *pts[0]['difference_ci'])} vs random at {pts[0]['size']} neurons, "
            f"{_ci(pts[-1]['difference'], *pts[-1]['difference_ci'])} at {pts[-1]['size']}{first}"
        )
    return "excess drop against random sets of the same size — " + "; ".join(parts)


def reading_variants(section: Mapping[str, Any]) -> str:
    """Mean ablation against zeroing on the culture side."""
    mean = section.get("mean_ablation")
    if not mean:
        return "mean ablation was not run"
    z = mean["zero"]["effect"].get("culture", {}).get("difference", {})
    m = mean["mean"]["effect"].get("culture", {}).get("difference", {})
    return (
        f"culture excess drop against random: zeroing {_ci(z.get('value'), z.get('ci_low'), z.get('ci_high'))}, "
        f"mean ablation {_ci(m.get('value'), m.get('ci_low'), m.get('ci_high'))}"
    )


READERS = {
    "sensitivity": reading_sensitivity,
    "stability": reading_stability,
    "specificity": reading_specificity,
    "faithfulness": reading_faithfulness,
    "variants": reading_variants,
}
