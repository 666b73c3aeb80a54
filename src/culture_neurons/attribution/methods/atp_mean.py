"""atp-mean: attribution patching against the mean activation, the linear estimate of mean ablation.

Per position, (a - m) ⊙ ∂p/∂a, with m each channel's mean activation (methods/means.py), reduced
as gxa is. Mean-ablating a neuron moves its output from a to m, so to first order p changes by
(m - a) ⊙ g, AtP's estimate; the score is its negative, p(real) - p(ablated), so that a high score
means the neuron supports p, as for gxa (which is this with m = 0) and ig.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from .gxa import GradientRun
from .means import PointBaselines


class MeanAblationPatching:
    """``atp-mean``: gxa's single backward pass, with each site's activation measured from its mean."""

    name = "atp-mean"

    def describe(self, options: Any) -> dict[str, Any]:
        return {"name": self.name, "baseline": "mean"}

    def needs_means(self, options: Any) -> bool:
        return True

    def start(self, engine: Any, call: Any, means: Mapping[str, torch.Tensor] | None) -> GradientRun:
        call.baselines = PointBaselines(call.points, means)
        return GradientRun(engine, call)


ATP_MEAN = MeanAblationPatching()
