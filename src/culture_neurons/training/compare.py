"""The fine-tuning comparison: each trained set against the base model, on the same evaluation rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from ..errors import InputError
from ..evaluation import plan as planner
from ..evaluation.api import metric_name
from ..evaluation.experiments import condition_table, split_parts
from ..evaluation.metrics import mean_ci, paired_change

BASE = "base"
CONTRASTS = (("top", "random"), ("top", "bottom"))


def compare_conditions(rows: pd.DataFrame, sets: Sequence[str], n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Per benchmark, for ``all`` and each split: every condition's metric (CI), each set's change
    from ``base`` (paired CI), and the ``top - random`` / ``top - bottom`` differences (paired CI)."""
    experiment = planner.finetune_comparison(list(sets), [], baseline=BASE)
    try:
        table = condition_table(rows, experiment.labels)
    except InputError as exc:
        raise InputError(f"{exc}; remove the eval folder and rerun") from None
    info = rows[rows["condition"] == BASE].set_index(["benchmark", "id"])
    summary: dict[str, Any] = {}
    for bench in rows.loc[rows["condition"] == BASE, "benchmark"].unique():
        block, meta, parts = split_parts(table, info, bench)
        entry: dict[str, Any] = {"metric": metric_name(meta)}
        for part, index in parts.items():
            sub = block.loc[index]
            base = sub[BASE].to_numpy()
            res: dict[str, Any] = {BASE: mean_ci(base, n_boot, seed)}
            for name in sets:
                res[name] = {
                    "value": mean_ci(sub[name].to_numpy(), n_boot, seed),
                    "change": paired_change(base, sub[name].to_numpy(), n_boot, seed),
                }
            contrasts = {
                f"{a}-{b}": paired_change(sub[b].to_numpy(), sub[a].to_numpy(), n_boot, seed)
                for a, b in CONTRASTS
                if a in sets and b in sets
            }
            if contrasts:
                res["contrasts"] = contrasts
            entry[part] = res
        summary[str(bench)] = entry
    return summary


def format_comparison(summary: Mapping[str, Any]) -> str:
    """One line per benchmark and part: ``bench [part]: base X; top Y (change +d [lo, hi]) ...``.

    ``all`` is always shown; a split only when it is not all of the benchmark's examples.
    """

    def fmt(m: Mapping[str, Any]) -> str:
        return "n/a" if m.get("value") is None else f"{m['value']:.1f}"

    def ci(m: Mapping[str, Any]) -> str:
        return "n/a" if m.get("value") is None else f"{m['value']:+.1f} [{m['ci_low']:+.1f}, {m['ci_high']:+.1f}]"

    lines = []
    for bench, entry in summary.items():
        n_all = (entry.get("all") or {}).get(BASE, {}).get("n")
        for part, res in entry.items():
            # A split that holds every example repeats the [all] line word for word (as in ablate).
            if part == "metric" or (part != "all" and n_all is not None and res[BASE].get("n") == n_all):
                continue
            cells = [f"base {fmt(res[BASE])}"]
            for name, val in res.items():
                if name in (BASE, "contrasts"):
                    continue
                cells.append(f"{name} {fmt(val['value'])} ({ci(val['change'])})")
            for name, val in res.get("contrasts", {}).items():
                cells.append(f"{name} {ci(val)}")
            lines.append(f"{bench} [{part}] {entry['metric']}: " + "; ".join(cells))
    return "\n".join(lines)
