"""Analysis 5: intervention variants — mean ablation next to zeroing, and an enhancement factor sweep.

Mean ablation replaces each selected channel with its mean activation over identification
examples (a reference set the evaluation never sees), which removes the neuron's variation without
pushing the model off its usual activation range, as zeroing can. The enhancement sweep multiplies
the channels by each factor (0 = zeroing, 1 = the original model) and gives a curve per side.
"""

from __future__ import annotations

from typing import Any

from ..intervention import channel_means, means_path, save_means
from .conditions import effect_vs_random, gap
from .study import Study


def _row(study: Study, label: str, target: dict, randoms: list[dict]) -> dict[str, Any]:
    opts = study.options
    base = study.original
    return {
        "label": label,
        "effect": effect_vs_random(base, target, randoms, opts.n_boot, opts.seed),
        "gap": gap(base, target, opts.n_boot, opts.seed),
    }


def mean_ablation(study: Study) -> dict[str, Any]:
    """Zeroing vs mean ablation of the default set, each against random sets ablated the same way."""
    ns = study.default_set
    opts = study.options
    exs = study.data.identification[:: max(1, len(study.data.identification) // max(opts.mean_examples, 1))][
        : opts.mean_examples
    ]
    path = means_path(study.out / "folds" / "general.json")
    means = channel_means(
        study.model,
        study.tokenizer,
        exs,
        ns,
        batch_size=study.evaluation.batch_size,
        chat_template=study.evaluation.chat_template,
    )
    save_means(means, path, model=study.model)
    zero = _row(study, "zero", *study.suppression("default", ns))
    mean = _row(study, "mean", *study.suppression("default", ns, op="mean", means=means))
    return {"zero": zero, "mean": mean, "mean_examples": len(exs), "means_file": path.name}


def enhancement_sweep(study: Study) -> list[dict[str, Any]]:
    """One row per factor: the change on each side (points, CI) when the default set is scaled."""
    ns = study.default_set
    rows = []
    for factor in study.options.enhance_factors:
        op = "suppress" if factor == 0 else "enhance"
        label = "suppress-default" if factor == 0 else f"enhance-{factor:g}"
        target = study.evaluator.scores(label, ns, op=op, factor=float(factor))
        row = _row(study, label, target, [])
        row["factor"] = float(factor)
        rows.append(row)
    return rows


def variants(study: Study) -> dict[str, Any]:
    """The variants section of ``validity/summary.json``."""
    out: dict[str, Any] = {"enhancement": enhancement_sweep(study)}
    out["mean_ablation"] = mean_ablation(study) if study.options.mean_op else None
    return out
