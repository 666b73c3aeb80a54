"""Analysis 4: faithfulness — does a neuron's attribution score predict what zeroing it does?

A sample of neurons from the general (MLP + attention) ranking: the top ones, those at ranks just
around the selection threshold, and random pool neurons. Each is zeroed alone on a fixed subset of
identification examples and its true effect measured (mean drop of the scoring target p). The
Spearman correlation between the general score and the effect gets a bootstrap CI over neurons.
Additivity: the top-k set zeroed together against the sum of its members' single effects.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..data.example import Example
from ..fileio import atomic_path, sha256_json
from ..progress import progress as progress_bar
from ..selection.neuronset import NeuronSet
from ..selection.select import Pool
from .claims import compute_once
from .effects import TargetRows, ablation_effects, single_neurons
from .study import Study


def general_scores(study: Study) -> tuple[Pool, torch.Tensor, list[str]]:
    """The general score of every neuron of the MLP and attention pools (one flat ranking)."""
    s = study.settings
    sites = [*s.mlp_sites, *s.attn_sites]
    table = study.full_table
    pool = Pool.of(sites, table.num_layers, table.widths)
    # The general score is sum_d (S_d - S_c(d)); with one dataset table that is S_d - S_c.
    controls = study.controls()
    per_site = {
        site: table.dataset_score(site).double() - sum(c.dataset_score(site).double() for c in controls) / len(controls)
        for site in pool.sites
    }
    return pool, pool.flatten(per_site), list(pool.sites)


def sample(study: Study) -> tuple[NeuronSet, list[str]]:
    """The neuron sample and each neuron's stratum (``top``, ``threshold``, ``random``)."""
    opts = study.options
    pool, score, sites = general_scores(study)
    order = torch.sort(score, descending=True, stable=True).indices
    k = len(study.default_set)
    strata: dict[int, str] = {}
    for i in order[: opts.faith_top].tolist():
        strata.setdefault(i, "top")
    lo = max(0, k - opts.faith_threshold // 2)
    for i in order[lo : lo + opts.faith_threshold].tolist():
        strata.setdefault(i, "threshold")
    gen = torch.Generator().manual_seed(opts.seed)
    for i in torch.randperm(pool.size, generator=gen)[: opts.faith_random].tolist():
        strata.setdefault(i, "random")
    flat = torch.tensor(list(strata), dtype=torch.int64)
    site_id, layer, index = pool.locate(flat)
    ns = NeuronSet(
        sites,
        site_id,
        layer,
        index,
        score[flat],
        kind="faithfulness-sample",
        num_layers=pool.num_layers,
        widths=study.full_table.widths,
        model=study.default_set.model,
    )
    return ns, list(strata.values())


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho (``scipy.stats.spearmanr``: ties share their mean rank); NaN when either side is constant."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    from scipy.stats import spearmanr  # imported here: scipy.stats costs ~0.7 s and the CLI loads this module

    return float(spearmanr(x, y).statistic)


def spearman_ci(x: np.ndarray, y: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    """rho with a 95% percentile bootstrap CI over neurons."""
    rho = spearman(x, y)
    rng = np.random.default_rng(seed)
    boot = [spearman(x[i], y[i]) for i in rng.integers(0, x.size, size=(n_boot, x.size))]
    boot = np.array([b for b in boot if np.isfinite(b)])
    lo, hi = np.quantile(boot, [0.025, 0.975]) if boot.size else (float("nan"),) * 2
    return {"rho": rho, "ci_low": float(lo), "ci_high": float(hi), "n": int(x.size)}


def write_csv(rows: list[dict[str, Any]], path: Any) -> None:
    """Write rows (dicts with the same keys) as CSV, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["site", "layer", "index", "score", "effect"])
        writer.writeheader()
        writer.writerows(rows)


@dataclass
class FaithfulnessParts:
    """The faithfulness section and what it was measured on (the method comparison reuses them)."""

    section: dict[str, Any]
    sample: NeuronSet
    examples: list[Example]
    rows: TargetRows
    zero_effects: np.ndarray  # the true effect of zeroing each neuron of ``sample`` alone


def faithfulness(study: Study) -> dict[str, Any]:
    """The faithfulness section of ``validity/summary.json``; writes ``validity/faithfulness.csv``."""
    return faithfulness_parts(study).section


def faithfulness_parts(study: Study) -> FaithfulnessParts:
    """:func:`faithfulness` with its sample, examples, rows and single-neuron zeroing effects."""
    opts = study.options
    ns, strata = sample(study)
    exs = study.data.identification[:: max(1, len(study.data.identification) // max(opts.faith_examples, 1))][
        : opts.faith_examples
    ]
    rows_in = TargetRows(study.tokenizer, exs, study.scoring.target, study.scoring.chat_template)
    singles = single_neurons(ns)
    ks = [k for k in opts.additivity_k if k <= len(study.default_set)]
    top = single_neurons(_top_k(study.default_set, max(ks))) if ks else []
    together = [_top_k(study.default_set, k) for k in ks]
    units = singles + top + together
    effects, base = cached_effects(study, rows_in, units)
    single = effects[: len(singles)].numpy()
    top_single = effects[len(singles) : len(singles) + max(ks, default=0)].numpy()
    joint = effects[len(singles) + max(ks, default=0) :].numpy()
    rows = [
        {"site": n.site, "layer": n.layer, "index": n.index, "score": n.score, "effect": float(e), "stratum": s}
        for n, e, s in zip(ns.neurons, single, strata)
    ]
    write_csv(rows, study.out / "faithfulness.csv")
    scores = np.array([r["score"] for r in rows])
    corr = spearman_ci(scores, single, opts.n_boot, opts.seed)
    by_stratum = {}
    for name in ("top", "threshold", "random"):
        m = np.array([s == name for s in strata])
        by_stratum[name] = {
            "n": int(m.sum()),
            "mean_effect": float(single[m].mean()) if m.any() else None,
            "mean_score": float(scores[m].mean()) if m.any() else None,
        }
    additivity = [
        {
            "k": k,
            "joint": float(j),
            "sum_single": float(top_single[:k].sum()),
            "ratio": float(j / top_single[:k].sum()) if top_single[:k].sum() else None,
        }
        for k, j in zip(ks, joint)
    ]
    section = {
        "spearman": corr,
        "n_neurons": len(rows),
        "n_examples": len(exs),
        "base_p": float(base.mean()),
        "strata": by_stratum,
        "additivity": additivity,
        "target": study.scoring.target,
    }
    return FaithfulnessParts(section, ns, exs, rows_in, single)


def cached_effects(
    study: Study,
    rows: TargetRows,
    units: list[NeuronSet],
    name: str = "faithfulness_effects",
    means: Mapping[str, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`ablation_effects` (mean ablation with ``means``), computed once per (units, examples, means) and kept
    in ``<name>.npz``."""
    ident: dict[str, Any] = {
        "units": [u.content_hash() for u in units],
        "ids": [ex.id for ex in rows.examples],
        "target": rows.target,
    }
    if means is not None:
        ident["means"] = {k: hashlib.sha256(v.double().numpy().tobytes()).hexdigest() for k, v in sorted(means.items())}
    key = sha256_json(ident)
    path = study.out / f"{name}.npz"

    def load() -> tuple[torch.Tensor, torch.Tensor] | None:
        if not path.is_file():
            return None
        with np.load(path) as z:
            if str(z["key"]) != key:
                return None
            return torch.from_numpy(z["effects"]), torch.from_numpy(z["base"])

    def make() -> tuple[torch.Tensor, torch.Tensor]:
        # each unit is a forward pass over every example: minutes to hours for a few hundred units
        with progress_bar(
            total=len(units) * len(rows.examples), desc=name.replace("_", " "), unit="pass", disable=not study.progress
        ) as bar:
            effects, base = ablation_effects(
                study.model, rows, units, study.options.max_rows, means=means, progress=bar.update
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, key=np.array(key), effects=effects.numpy(), base=base.numpy())
        return effects, base

    return compute_once(path, load, make)


def _top_k(ns: NeuronSet, k: int) -> NeuronSet:
    """The first ``k`` neurons of a set (a general set lists each pool best first; the MLP pool comes first)."""
    order = torch.sort(ns.scores, descending=True, stable=True).indices[:k]
    return NeuronSet(
        ns.site_names,
        ns.site_ids[order],
        ns.layers[order],
        ns.indices[order],
        ns.scores[order],
        kind=f"top{k}",
        num_layers=ns.num_layers,
        widths=ns.widths,
        model=ns.model,
    )
