"""Analysis 3: specificity — is the cultural drop larger than the NLU drop?

For the default general set, and for the set re-selected with the NLU exclusion filter (neurons
in the top ``exclude_r`` of an NLU identification table dropped, as the CountryRC filter does), the
specificity gap (culture drop minus NLU drop, points, bootstrap CI and p) is reported twice: drops
against the original model, and excess drops against the mean of random sets of the same size.
Each side's baseline is checked against chance first: a side at chance cannot show a drop.
"""

from __future__ import annotations

from typing import Any

from ..chance import chance_level, chance_warning
from .conditions import SIDES, accuracy, effect_vs_random, gap
from .overlap import layer_distribution, overlap
from .study import Study


def baselines(study: Study) -> dict[str, Any]:
    """Accuracy of the original model on every benchmark, its chance level, and a warning when at chance."""
    per = study.evaluator.by_benchmark("original")
    n_boot, seed = study.options.n_boot, study.options.seed
    out: dict[str, Any] = {"benchmarks": {}, "sides": {}, "warnings": []}
    for side in SIDES:
        side_ok = []
        for bench, exs in study.evaluator.benches[side].items():
            if not exs:
                continue
            from ..evaluation.metrics import mean_ci

            acc = mean_ci(per[bench], n_boot, seed)
            chance = chance_level(exs) * 100.0
            warn = chance_warning(
                f"{bench} baseline accuracy",
                acc["value"] / 100.0,
                chance / 100.0,
                acc["n"],
                fix=f"the {side} side says nothing about this benchmark; "
                "pick or cap benchmarks on which the model is above chance",
            )
            out["benchmarks"][bench] = {"side": side, "accuracy": acc, "chance": chance, "at_chance": warn is not None}
            if warn:
                out["warnings"].append(warn)
            side_ok.append(warn is None)
        out["sides"][side] = {"informative": bool(side_ok) and all(side_ok)}
    out["overall"] = accuracy(study.original, n_boot, seed)
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
