"""Analysis 4b: which scoring method predicts what its neurons do (docs/validity.md, "Which method is faithful").

Every method of ``faith_methods`` (``gxa`` always among them, first: the reference of the cost ratios)
scores the faithfulness examples with the run's scoring options, the method apart, and is judged on
the ablation it estimates: zeroing for ``gxa``, ``ig`` and ``ig-joint`` with a zero baseline, setting a
channel to its mean over these examples' prompts for ``atp-mean`` and the mean baselines (the same
means are the methods' baseline). Per method:

- ``spearman``: its score of each neuron of the faithfulness sample (the examples' per-neuron sum, as
  scoring reduces it) against that neuron's true effect (mean drop of p when ablated alone), with a
  bootstrap CI over neurons; ``vs_gxa``: rho minus gxa's on the same neurons, with a paired bootstrap CI
  (the same neuron resamples for both);
- ``top_k``: the true drop when the method's own top ``faith_top`` neurons of the pool are ablated
  together, against ``random_seeds`` random sets of the same per-site (and with ``layer_matched``
  per-layer) counts ablated the same way: the excess and its rank among them;
- ``seconds`` and ``cost_vs_gxa``: the scoring time on the same examples and batches.

``recommended`` is the cheapest method whose rho is not significantly below the best one's (the paired
CI of their difference includes 0), so a costlier method is recommended only when it predicts better.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..attribution.engine import score_examples
from ..attribution.methods import get_method
from ..attribution.scoretable import ScoreTable
from ..data.example import Example
from ..evaluation.metrics import rank_among_random
from ..intervention.means import channel_means
from ..selection.neuronset import NeuronSet
from ..selection.randomsets import select_random
from ..selection.ranking import top_indices
from ..selection.select import Pool
from .claims import compute_once
from .effects import TargetRows, single_neurons
from .faithfulness import cached_effects, faithfulness_parts, spearman, spearman_ci
from .folds import load_if
from .study import Study

REFERENCE = "gxa"


def uses_mean(method: str, options: Any) -> bool:
    """Whether ``method`` estimates mean ablation (its baseline is the channel mean) rather than zeroing."""
    return get_method(method).needs_means(options)


def rho_difference(
    x: np.ndarray, tx: np.ndarray, y: np.ndarray, ty: np.ndarray, n_boot: int, seed: int
) -> dict[str, float]:
    """rho(x, tx) - rho(y, ty) over the same neurons, with a 95% percentile CI from paired neuron resamples (the
    same resample for both correlations)."""
    rng = np.random.default_rng(seed)
    boot = []
    for idx in rng.integers(0, x.size, size=(n_boot, x.size)):
        d = spearman(x[idx], tx[idx]) - spearman(y[idx], ty[idx])
        if np.isfinite(d):
            boot.append(d)
    lo, hi = np.quantile(boot, [0.025, 0.975]) if boot else (float("nan"),) * 2
    return {"value": spearman(x, tx) - spearman(y, ty), "ci_low": float(lo), "ci_high": float(hi)}


def _scored(study: Study, method: str, exs: Sequence[Example], means: Mapping[str, torch.Tensor] | None) -> tuple:
    """``(table, seconds)``: ``exs`` scored with ``method`` (cached as ``methods/<method>.safetensors``; the time is
    the one measured when it was scored)."""
    path = study.out / "methods" / f"{method}.safetensors"
    options = dataclasses.replace(study.scoring, method=method, control=False)
    wanted = get_method(method).describe(options)
    ids = [ex.id for ex in exs]

    def load() -> tuple[ScoreTable, float] | None:
        table = load_if(path, ids, model_id=study.model_id) if path.is_file() else None
        if table is None or any(table.method.get(k) != v for k, v in wanted.items()):
            return None  # another method's parameters (ig steps, rule, baseline): score again
        return table, float(table.meta.get("faith_seconds", "nan"))

    def make() -> tuple[ScoreTable, float]:
        start = time.perf_counter()
        table = score_examples(study.model, study.tokenizer, list(exs), options, progress=study.progress, means=means)
        seconds = time.perf_counter() - start
        table.meta["faith_seconds"] = seconds
        path.parent.mkdir(parents=True, exist_ok=True)
        table.save(path)
        return table, seconds

    return compute_once(path, load, make)


def _top_set(pool: Pool, flat_scores: torch.Tensor, k: int, like: NeuronSet, method: str) -> NeuronSet:
    """The pool's ``k`` best neurons by ``flat_scores`` (selection's own tie rule), as a NeuronSet of the model's
    shape."""
    top = top_indices(flat_scores, k)
    return NeuronSet(
        *pool.columns(top, flat_scores[top]),
        kind=f"top{k}:{method}",
        num_layers=like.num_layers,
        widths=like.widths,
        model=like.model,
    )


def compare_methods(
    study: Study, exs: Sequence[Example], rows: TargetRows, sample_set: NeuronSet, zero_effects: np.ndarray
) -> dict[str, Any]:
    """The ``methods`` block of the faithfulness section (see the module docstring)."""
    opts = study.options
    methods = list(dict.fromkeys([REFERENCE, *opts.faith_methods]))
    sites = [*study.settings.mlp_sites, *study.settings.attn_sites]
    table0 = study.full_table
    pool = Pool.of(sites, table0.num_layers, table0.widths)
    options = dataclasses.replace(study.scoring, control=False)
    mean_of = {m: uses_mean(m, dataclasses.replace(options, method=m)) for m in methods}
    means = (
        channel_means(study.model, study.tokenizer, list(exs), chat_template=study.scoring.chat_template)
        if any(mean_of.values())
        else None
    )
    singles = single_neurons(sample_set)
    mean_effects = None
    if means is not None:
        mean_effects = cached_effects(study, rows, singles, "methods_mean_effects", means)[0].numpy()
    k = min(opts.faith_top, pool.size)
    out: dict[str, Any] = {}
    scores: dict[str, np.ndarray] = {}
    for method in methods:
        mean = mean_of[method]
        table, seconds = _scored(study, method, exs, means if mean else None)
        per_site = {s: table.dataset_score(s).double() for s in pool.sites}
        flat = pool.flatten(per_site)
        sample_scores = np.array(
            [float(per_site[n.site][n.layer, n.index]) for n in sample_set.neurons], dtype=np.float64
        )
        scores[method] = sample_scores
        truth = mean_effects if mean else zero_effects
        top = _top_set(pool, flat, k, sample_set, method)
        randoms = [select_random(top, 10_000 + s, layer_matched=opts.layer_matched) for s in range(opts.random_seeds)]
        drops = cached_effects(study, rows, [top, *randoms], f"methods_topk_{method}", means if mean else None)[0]
        drops = drops.numpy()
        ranked = rank_among_random(-drops[0], -drops[1:])  # changes: a drop is negative
        out[method] = {
            "ablation": "mean" if mean else "zero",
            "method": table.method,
            "spearman": spearman_ci(sample_scores, truth, opts.n_boot, opts.seed),
            "top_k": {
                "k": k,
                "drop": float(drops[0]),
                "random_mean": float(drops[1:].mean()) if drops.size > 1 else None,
                "excess": float(drops[0] - drops[1:].mean()) if drops.size > 1 else None,
                "rank": ranked["rank"],
                "m_random": ranked["m_random"],
                "p_mc": ranked["p_mc"],
            },
            "seconds": seconds,
        }
    ref_seconds = out[REFERENCE]["seconds"]
    for method, entry in out.items():
        entry["cost_vs_gxa"] = entry["seconds"] / ref_seconds if ref_seconds else None
        truth = mean_effects if entry["ablation"] == "mean" else zero_effects
        if method != REFERENCE:
            entry["vs_gxa"] = rho_difference(
                scores[method], truth, scores[REFERENCE], zero_effects, opts.n_boot, opts.seed
            )
    return {"methods": out, "recommended": recommend(out, scores, zero_effects, mean_effects, opts)}


def recommend(
    entries: Mapping[str, Any],
    scores: Mapping[str, np.ndarray],
    zero: np.ndarray,
    mean: np.ndarray | None,
    opts: Any,
) -> dict[str, Any]:
    """The cheapest method whose rho is not significantly below the best method's (paired bootstrap CI over
    neurons of the difference includes 0 or lies above it), with the rule and the numbers it rests on."""
    rhos = {m: e["spearman"]["rho"] for m, e in entries.items() if np.isfinite(e["spearman"]["rho"])}
    if not rhos:
        return {"method": None, "rule": "no method has a defined correlation"}
    best = max(rhos, key=rhos.get)

    def truth(m: str) -> np.ndarray:
        return mean if entries[m]["ablation"] == "mean" and mean is not None else zero

    level = {best: True}
    for m in rhos:
        if m != best:  # each method against its own truth, on the same neuron resamples
            d = rho_difference(scores[m], truth(m), scores[best], truth(best), opts.n_boot, opts.seed)
            level[m] = d["ci_high"] >= 0
    candidates = [m for m in rhos if level[m]]
    chosen = min(candidates, key=lambda m: (entries[m]["seconds"], m))
    return {
        "method": chosen,
        "best_rho": best,
        "level_with_best": sorted(candidates),
        "rule": "the cheapest method whose Spearman rho is not significantly below the best one's (paired bootstrap)",
    }


def faithfulness_with_methods(study: Study) -> dict[str, Any]:
    """The faithfulness section, with the ``methods`` and ``recommended`` blocks when ``faith_methods`` names any."""
    parts = faithfulness_parts(study)
    if not study.options.faith_methods:
        return parts.section
    compared = compare_methods(study, parts.examples, parts.rows, parts.sample, parts.zero_effects)
    return {**parts.section, **compared}
