"""Analysis 1: threshold sensitivity and dose-response.

The general rule is re-run at every ``t_mlp`` of the sweep (``t_attn`` scaled in proportion) and
the specific rule over a (t, z) grid. For each setting: the set size, its Jaccard overlap with the
default set and its layer distribution. For each general set, optionally, the suppression effect
on the culture and NLU sides against random sets of the same size (the dose-response curve).
"""

from __future__ import annotations

from typing import Any

from ..selection.select import select_specific_many
from .conditions import effect_vs_random, gap
from .overlap import jaccard_index, layer_distribution, overlap
from .study import Study


def _evaluate(study: Study, label: str, ns: Any) -> dict[str, Any]:
    opts = study.options
    base = study.original
    target, randoms = study.suppression(label, ns)
    return {
        "effect": effect_vs_random(base, target, randoms, opts.n_boot, opts.seed),
        "gap": gap(base, target, opts.n_boot, opts.seed),
        "gap_vs_random": gap(base, target, opts.n_boot, opts.seed, randoms),
    }


def general_sweep(study: Study) -> list[dict[str, Any]]:
    """One row per swept ``t_mlp``: size, overlap with the default set, layers, and (optionally) effects."""
    default = study.default_set
    rows = []
    for t in sorted(set(study.options.t_mlp_sweep) | {study.settings.t_mlp}):
        # The default point is the set the study is about (a run's own set when it gave one).
        ns = default if t == study.settings.t_mlp else study.general(t_mlp=t)
        row: dict[str, Any] = {
            "t_mlp": t,
            "t_attn": study.settings.t_attn * t / study.settings.t_mlp,
            "size": len(ns),
            "default": t == study.settings.t_mlp,
            "layers": layer_distribution(ns),
        }
        row["overlap_default"] = overlap(ns, default) if len(ns) else {"jaccard": 0.0}
        if study.options.evaluate_sweep and len(ns):
            row.update(_evaluate(study, f"t{t:g}", ns))
        rows.append(row)
    return rows


def specific_sweep(study: Study) -> list[dict[str, Any]]:
    """One row per (t, z): total size over countries and the mean Jaccard with the default specific sets."""
    s = study.settings
    tables, controls, crc = [study.full_table], study.controls(), study.countryrc_table

    def select(t: float, z: float) -> dict[str, Any]:
        return select_specific_many(tables, controls, crc, None, t=t, r=s.r, z=z, sites=s.specific_sites)

    default = select(s.specific_t, s.specific_z)
    rows = []
    for t in study.options.specific_t_sweep:
        for z in study.options.specific_z_sweep:
            sets = select(t, z)
            jac = [jaccard_index(sets[c], default[c]) for c in default]
            rows.append(
                {
                    "t": t,
                    "z": z,
                    "size": sum(len(v) for v in sets.values()),
                    "per_country": {c: len(v) for c, v in sets.items()},
                    "mean_jaccard_default": sum(jac) / len(jac) if jac else None,
                    "default": t == s.specific_t and z == s.specific_z,
                }
            )
    return rows


def sensitivity(study: Study) -> dict[str, Any]:
    """The sensitivity section of ``validity/summary.json``."""
    general = general_sweep(study)
    return {"general": general, "specific": specific_sweep(study), "dose_response": dose_points(general)}


def dose_points(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flat points of the dose-response curve: size -> change (target and random) per side, with CIs."""
    points = []
    for row in rows:
        for side, eff in (row.get("effect") or {}).items():
            points.append(
                {
                    "size": row["size"],
                    "t_mlp": row["t_mlp"],
                    "side": side,
                    "change": eff["change"]["value"],
                    "change_ci": [eff["change"]["ci_low"], eff["change"]["ci_high"]],
                    "random_change": eff["random_change"]["value"],
                    "random_change_ci": [eff["random_change"]["ci_low"], eff["random_change"]["ci_high"]],
                    "difference": eff["difference"]["value"],
                    "difference_ci": [eff["difference"]["ci_low"], eff["difference"]["ci_high"]],
                    "p": eff["difference"]["p_one_sided"],
                    "default": bool(row.get("default")),
                    "n": eff.get("n"),
                    "excess_ci_two_level": eff.get("excess_ci_two_level"),
                    "mde": eff.get("mde"),
                    "rank": eff.get("rank"),
                    "m_random": eff.get("m_random"),
                    "p_mc": eff.get("p_mc"),
                }
            )
    return points
