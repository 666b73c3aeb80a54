"""Analysis 3: specificity — is the cultural drop larger than the NLU drop?

For the default general set, and for the set re-selected with the NLU exclusion filter (neurons
in the top ``exclude_r`` of an NLU identification table dropped, as the CountryRC filter does), the
specificity gap (culture drop minus NLU drop, points, bootstrap CI and p) is reported twice: drops
against the original model, and excess drops against the mean of random sets of the same size.
Each benchmark's baseline is checked against chance first: one at chance cannot show a drop, so it is
left out of its side's pool (``drop_at_chance``); a side with no benchmark above chance cannot be judged.
"""

from __future__ import annotations

from typing import Any

from .conditions import accuracy, effect_vs_random, gap
from .overlap import layer_distribution, overlap
from .study import Study


def baselines(study: Study) -> dict[str, Any]:
    """Accuracy of the original model on every benchmark against chance, which benchmarks each side pools,
    and the pooled accuracy per side."""
    opts = study.options
    out = {k: v for k, v in study.evaluator.baselines().items() if k != "pooled"}
    out["overall"] = accuracy(study.original, opts.n_boot, opts.seed)
    return out


def intervention_row(study: Study, label: str, ns: Any) -> dict[str, Any]:
    """Effect vs random and both gaps for suppressing ``ns``."""
    opts = study.options
    base = study.original
    target, randoms = study.suppression(label, ns)
    return {
        "label": label,
        "size": len(ns),
        "layers": layer_distribution(ns),
        "effect": effect_vs_random(base, target, randoms, opts.n_boot, opts.seed),
        "gap": gap(base, target, opts.n_boot, opts.seed),
        "gap_vs_random": gap(base, target, opts.n_boot, opts.seed, randoms),
    }


def specificity(study: Study) -> dict[str, Any]:
    """The specificity section of ``validity/summary.json``."""
    out: dict[str, Any] = {"baselines": baselines(study)}
    rows = [intervention_row(study, "default", study.default_set)]
    nlu = study.nlu_table
    if nlu is not None:
        r = study.settings.exclude_r
        excluded = study.general(exclude=[(nlu, r)])
        if len(excluded):
            row = intervention_row(study, f"exclude-nlu-{r:g}", excluded)
            row["exclude_r"] = r
            row["overlap_default"] = overlap(excluded, study.default_set)
            rows.append(row)
        excluded.save(study.out / "folds" / "general-exclude-nlu.json")
        out["exclusion"] = {
            "r": r,
            "table": nlu.meta.get("dataset"),
            "size_before": len(study.default_set),
            "size_after": len(excluded),
        }
    else:
        out["exclusion"] = None
    out["interventions"] = rows
    out["nlu_informative"] = out["baselines"]["sides"].get("nlu", {}).get("informative", False)
    return out
