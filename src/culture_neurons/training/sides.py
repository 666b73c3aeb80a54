"""The fine-tuning claim's numbers: each trained set's change on the pooled cultural and NLU sides, and top − random.

The paper's claim: training on NLU data erodes cultural understanding when it updates the modules that
hold many culture-general neurons. Per benchmark, :mod:`.compare` already gives each set's change; a
claim needs one number per side with the power of every item. So the items of a side's benchmarks are
pooled (the cultural side: benchmarks of kind ``culture`` or ``generation``; the NLU side: ``nlu``),
leaving out a benchmark on which the base model is within noise of chance (it cannot show a drop),
as the validity analyses do, unless that would leave the side empty.

``finetune.json`` → ``sides`` (docs/training.md, "The fine-tuning claim"), per side:

- ``benchmarks`` (pooled), ``left_out`` (benchmark → why), ``above_chance``, ``n`` (items);
- ``base``: the base model's accuracy (%, bootstrap CI);
- ``sets[name]``: ``value`` (accuracy after training) and ``change`` (paired mean of set − base, points,
  bootstrap CI, ``mde``);
- ``contrasts["top-random"]``, ``contrasts["top-bottom"]``: the paired difference of the two sets'
  scores (points) with its bootstrap CI, ``mde`` (the smallest difference a paired t-test detects at
  80 % power), ``p_two_sided`` and ``p_one_sided`` (the paired t-test of "below 0": the top set lowers
  the side more than the other set does).

``claim``: the row the claims table reads, the cultural side's ``top-random`` contrast with the
direction the paper predicts (``expect = -1``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..chance import chance_level, chance_warning
from ..data import get_benchmark
from ..data.example import Example
from ..errors import InputError
from ..evaluation.experiments import condition_table
from ..evaluation.metrics import mean_ci, paired_change
from .compare import BASE, CONTRASTS

SIDE_KINDS = {"culture": ("culture", "generation"), "nlu": ("nlu",)}
CLAIM = {"key": "finetune-erosion", "side": "culture", "contrast": "top-random", "expect": -1}


def side_of(name: str, examples: Sequence[Example]) -> str | None:
    """``culture``, ``nlu`` or None (a scale benchmark, or a name the registry does not know) for one benchmark."""
    dataset = next((ex.dataset for ex in examples if getattr(ex, "dataset", None)), None)
    for candidate in (dataset, name):
        if not candidate:
            continue
        try:
            kind = get_benchmark(candidate).kind
        except InputError:
            continue
        return next((side for side, kinds in SIDE_KINDS.items() if kind in kinds), None)
    return None


def _at_chance(name: str, examples: Sequence[Example], base: np.ndarray) -> str:
    """Why a benchmark cannot show a drop (its base accuracy is within noise of chance), or ``""``."""
    level = chance_level(examples)
    if not math.isfinite(level) or base.size == 0:
        return ""
    warning = chance_warning(name, float(base.mean()), level, int(base.size))
    return "" if warning is None else f"base {100 * base.mean():.1f}% within noise of chance {100 * level:.1f}%"


def _t_test(diff: np.ndarray) -> tuple[float | None, float | None]:
    """Two-sided and one-sided ("below 0") p of a one-sample t-test on paired differences (None without spread)."""
    if diff.size < 2 or float(diff.std(ddof=1)) == 0.0:
        return None, None
    from scipy.stats import ttest_1samp

    two = float(ttest_1samp(diff, 0.0).pvalue)
    below = float(ttest_1samp(diff, 0.0, alternative="less").pvalue)
    return two, below


def _contrast(before: np.ndarray, after: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    out = paired_change(before, after, n_boot, seed)
    out["p_two_sided"], out["p_one_sided"] = _t_test(np.asarray(after, np.float64) - np.asarray(before, np.float64))
    return out


def _pool(
    side: str, benches: Mapping[str, Sequence[Example]], table: pd.DataFrame, drop_at_chance: bool
) -> tuple[list[str], dict[str, str], bool]:
    """The benchmarks a side pools, those left out and why, and whether any pooled one is above chance."""
    members = [b for b, exs in benches.items() if side_of(b, exs) == side and b in table.index.get_level_values(0)]
    reasons = {b: _at_chance(b, benches[b], table.loc[b][BASE].to_numpy()) for b in members}
    above = [b for b in members if not reasons[b]]
    if drop_at_chance and above:
        return above, {b: r for b, r in reasons.items() if r}, True
    return members, {}, bool(above)


def side_changes(
    rows: pd.DataFrame,
    benches: Mapping[str, Sequence[Example]],
    sets: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
    drop_at_chance: bool = True,
) -> dict[str, Any]:
    """The ``sides`` block of ``finetune.json``: per side, the pooled base accuracy, each set's change and the
    ``top-random`` / ``top-bottom`` contrasts (see the module docstring); sides without a benchmark are left out."""
    sets = list(sets)
    table = condition_table(rows, [BASE, *sets])
    out: dict[str, Any] = {}
    for side in SIDE_KINDS:
        pooled, left_out, above = _pool(side, benches, table, drop_at_chance)
        if not pooled:
            continue
        block = pd.concat([table.loc[[b]] for b in pooled])
        base = block[BASE].to_numpy(np.float64)
        entry: dict[str, Any] = {
            "benchmarks": pooled,
            "left_out": left_out,
            "above_chance": above,
            "n": int(base.size),
            "base": mean_ci(base, n_boot, seed),
            "sets": {
                name: {
                    "value": mean_ci(block[name].to_numpy(np.float64), n_boot, seed),
                    "change": _contrast(base, block[name].to_numpy(np.float64), n_boot, seed),
                }
                for name in sets
            },
        }
        contrasts = {
            f"{a}-{b}": _contrast(block[b].to_numpy(np.float64), block[a].to_numpy(np.float64), n_boot, seed)
            for a, b in CONTRASTS
            if a in sets and b in sets
        }
        if contrasts:
            entry["contrasts"] = contrasts
        out[side] = entry
    return out


def claim_input(sides: Mapping[str, Any]) -> dict[str, Any] | None:
    """The claims row's numbers: the cultural side's ``top-random`` contrast (None when it was not measured)."""
    contrast = ((sides.get(CLAIM["side"]) or {}).get("contrasts") or {}).get(CLAIM["contrast"])
    if not contrast:
        return None
    side = sides[CLAIM["side"]]
    return {**CLAIM, **contrast, "benchmarks": side["benchmarks"], "above_chance": side["above_chance"]}


def _ci(m: Mapping[str, Any]) -> str:
    if m.get("value") is None:
        return "n/a"
    if m.get("ci_low") is None or m.get("ci_high") is None:
        return f"{m['value']:+.1f}"
    return f"{m['value']:+.1f} [{m['ci_low']:+.1f}, {m['ci_high']:+.1f}]"


def format_sides(sides: Mapping[str, Any]) -> str:
    """One line per side: the pooled benchmarks, the base accuracy, each set's change and the contrasts (points)."""
    lines = []
    for side, entry in sides.items():
        base = entry["base"]["value"]
        cells = [f"base {base:.1f}%" if base is not None else "base n/a"]
        cells += [f"{name} {_ci(s['change'])}" for name, s in entry["sets"].items()]
        for name, c in (entry.get("contrasts") or {}).items():
            p = c.get("p_one_sided")
            cells.append(f"{name} {_ci(c)}" + ("" if p is None else f" (p one-sided {p:.3g})"))
        left = f"; left out at chance: {', '.join(entry['left_out'])}" if entry["left_out"] else ""
        lines.append(f"{side} side ({', '.join(entry['benchmarks'])}; n={entry['n']}{left}): " + "; ".join(cells))
    return "\n".join(lines)
