"""Synthetic experiment and validity summaries, shaped like the files a run writes, for the report and claims tests.

Every number is chosen by the test that builds it, so a test can make each claim hold, fail or be
not significant on purpose, without running a model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

CI = tuple[float, float, float]  # value, ci_low, ci_high


def block(difference: CI, original: float = 60.0, n: int = 200, p: float = 0.01) -> dict[str, Any]:
    """One benchmark split of an ablation/enhancement summary with the given Δ vs random (points)."""
    value, lo, hi = difference
    target = original + value - 1.0
    return {
        "original": {"value": original, "ci_low": original - 5, "ci_high": original + 5, "n": n},
        "target": {"value": target, "ci_low": target - 5, "ci_high": target + 5, "n": n},
        "random": {"r0": original - 1.0, "r1": original - 1.0},
        "random_mean": original - 1.0,
        "random_change": {"value": -1.0, "ci_low": -2.0, "ci_high": 0.0},
        "difference": {"value": value, "ci_low": lo, "ci_high": hi, "p_one_sided": p, "p_two_sided": min(1.0, 2 * p)},
        "change": {"value": value - 1.0, "ci_low": lo - 1.0, "ci_high": hi - 1.0},
        "n": n,
    }


def experiment_summary(
    results: Mapping[str, CI], name: str = "ablation", factor: float | None = None, **kw: Any
) -> dict[str, Any]:
    """``{"config": ..., "results": {bench: {"heldout": block, "metric": "accuracy"}}}``."""
    return {
        "config": {"experiment": name, "factor": factor},
        "results": {b: {"heldout": block(d, **kw), "metric": "accuracy"} for b, d in results.items()},
    }


def cross_summary(hits: Sequence[bool], n: int = 20) -> dict[str, Any]:
    """A cross-culture summary whose row ``i`` has its own country most hurt exactly when ``hits[i]``."""
    countries = [f"C{i}" for i in range(len(hits))]
    change, rows = {}, {}
    for i, (c, hit) in enumerate(zip(countries, hits)):
        other = countries[(i + 1) % len(countries)]
        change[c] = {
            e: {
                "value": (-10.0 if e == c else -2.0) if hit else (-1.0 if e == c else (-8.0 if e == other else 0.0)),
                "ci_low": -15.0,
                "ci_high": 5.0,
                "n": n,
            }
            for e in countries
        }
        others = [change[c][e]["value"] for e in countries if e != c]
        rows[c] = {
            "diagonal": change[c][c]["value"],
            "off_diagonal_mean": sum(others) / len(others),
            "most_affected": c if hit else other,
            "diagonal_is_most_negative": hit,
        }
    return {
        "config": {"experiment": "cross-culture"},
        "results": {"change": change, "rows": rows, "eval_countries": countries, "set_countries": countries},
    }


def validity_summary(
    gap: CI = (8.1, 3.0, 13.2), rho: CI = (0.42, 0.21, 0.60), fold_jaccard: float = 0.31
) -> dict[str, Any]:
    """A ``validity/summary.json`` in the validity package's schema (sections with their numbers)."""

    def diff(v: float, lo: float, hi: float) -> dict[str, Any]:
        return {
            "difference": {"value": v, "ci_low": lo, "ci_high": hi, "p_one_sided": 0.01},
            "change": {"value": v - 1, "ci_low": lo - 1, "ci_high": hi - 1},
            "random_change": {"value": -1.0, "ci_low": -2.0, "ci_high": 0.0},
        }

    general = [
        {
            "t_mlp": t,
            "t_attn": t / 2,
            "size": size,
            "default": t == 0.5,
            "overlap_default": {"jaccard": j},
            "effect": {"culture": diff(-2.0 * k, -3.0 * k, -k), "nlu": diff(-0.5 * k, -1.5 * k, 0.5 * k)},
        }
        for k, (t, size, j) in enumerate([(0.25, 40, 0.5), (0.5, 80, 1.0), (1.0, 160, 0.5), (2.0, 320, 0.25)], start=1)
    ]
    dose = [
        {
            "size": r["size"],
            "t_mlp": r["t_mlp"],
            "side": side,
            "change": r["effect"][side]["change"]["value"],
            "change_ci": [r["effect"][side]["change"]["ci_low"], r["effect"][side]["change"]["ci_high"]],
            "random_change": -1.0,
            "random_change_ci": [-2.0, 0.0],
            "difference": r["effect"][side]["difference"]["value"],
            "difference_ci": [r["effect"][side]["difference"]["ci_low"], r["effect"][side]["difference"]["ci_high"]],
            "p": 0.01,
        }
        for r in general
        for side in ("culture", "nlu")
    ]
    pair = {
        "sets": {"fold0": 80, "fold1": 82},
        "pairs": [],
        "with_full": [],
        "summary": {
            "jaccard": fold_jaccard,
            "range": [fold_jaccard, fold_jaccard],
            "random_expected": 0.004,
            "random_ci": [0.0, 0.01],
        },
    }
    g_value, g_lo, g_hi = gap
    spec = {
        "baselines": {"warnings": [], "sides": {"culture": {"informative": True}, "nlu": {"informative": True}}},
        "interventions": [
            {
                "label": "default",
                "size": 80,
                "effect": {"culture": diff(-6.0, -9.0, -3.0), "nlu": diff(2.1, -1.0, 5.0)},
                "gap_vs_random": {"gap": g_value, "ci_low": g_lo, "ci_high": g_hi, "p_value": 0.002},
            }
        ],
        "nlu_informative": True,
    }
    spec["headline"] = {"value": g_value, "ci_low": g_lo, "ci_high": g_hi}
    r_value, r_lo, r_hi = rho
    faith = {
        "spearman": {"rho": r_value, "ci_low": r_lo, "ci_high": r_hi, "n": 6},
        "headline": {"value": r_value, "ci_low": r_lo, "ci_high": r_hi, "n": 6},
        "additivity": [{"k": 5, "joint": 0.02, "sum_single": 0.015, "ratio": 1.33}],
    }
    stab = {"folds": {**pair, "full_in_every_fold": 0.6}, "templates": None, "k": 2}
    stab["headline"] = {"value": fold_jaccard, "random_expected": 0.004, "random_ci_high": 0.01}
    return {
        "schema": "culture-neurons/validity",
        "schema_version": 1,
        "default_set": {"size": 80},
        "sensitivity": {"general": general, "specific": [], "dose_response": dose},
        "stability": stab,
        "specificity": spec,
        "faithfulness": faith,
        "variants": {
            "enhancement": [
                {"factor": f, "effect": {"culture": {"change": {"value": v, "ci_low": v - 2, "ci_high": v + 2}}}}
                for f, v in ((0.0, -6.0), (2.0, 1.0), (3.0, -1.0))
            ],
            "mean_ablation": None,
        },
    }


FAITHFULNESS_CSV = "site,layer,index,score,effect,stratum\n" + "".join(
    f"mlp.gate,{i % 2},{i},{0.1 * (6 - i)},{0.01 * (6 - i)},{s}\n"
    for i, s in enumerate(["top", "top", "threshold", "threshold", "random", "random"])
)


def write_validity(run_dir: Path, summary: Mapping[str, Any]) -> Path:
    """Write ``validity/summary.json`` (and a small ``faithfulness.csv``) into a run directory."""
    folder = Path(run_dir) / "validity"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    (folder / "faithfulness.csv").write_text(FAITHFULNESS_CSV, encoding="utf-8")
    return folder / "summary.json"
