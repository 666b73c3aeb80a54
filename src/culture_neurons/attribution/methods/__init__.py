"""Scoring methods: how a neuron's attribution is computed before the shared reduction (docs/methods.md).

Every method is one module with one object behind :class:`~.base.Method`; the registry below is the
list the options, the CLI's choices and the engine read.

- ``gxa`` (:mod:`.gxa`): activation × gradient, the paper's score (default);
- ``atp-mean`` (:mod:`.atp_mean`): (activation − mean activation) × gradient, the linear estimate of mean ablation;
- ``ig``, ``ig-joint`` (:mod:`.ig`): integrated gradients from a zero or mean baseline, one site at a
  time or every site together.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from .atp_mean import ATP_MEAN
from .base import Method, Run
from .gxa import GXA
from .ig import IG, IG_JOINT
from .means import means_sha256

METHODS: dict[str, Method] = {m.name: m for m in (GXA, ATP_MEAN, IG, IG_JOINT)}
METHOD_NAMES = tuple(METHODS)

__all__ = ["METHODS", "METHOD_NAMES", "Method", "Run", "describe", "get_method"]


def get_method(name: str) -> Method:
    """The registered method called ``name`` (``ScoringOptions.validate`` has checked it)."""
    return METHODS[name]


def describe(options: Any, means: Mapping[str, torch.Tensor] | None = None, given: bool = False) -> dict[str, Any]:
    """What a ScoreTable records of its method: name, baseline, the method's parameters and, for a mean
    baseline, where the means came from (``given``, or the examples scored) and their hash."""
    out = get_method(options.method).describe(options)
    if means is not None:
        out["means"] = "given" if given else "scored examples"
        out["means_sha256"] = means_sha256(means)
    return out
