"""gxa, the paper's score: activation × gradient at every position, one backward pass per batch.

The gradient hooks of :class:`~culture_neurons.attribution.reduction.ScoringCall` reduce each site
as its gradient arrives (docs/design.md, "The scoring engine"). :class:`GradientRun` also serves
``atp-mean``, which only moves the activation by a baseline first.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from ...errors import ScoringError
from ...models.hooks import forward_hooks, frozen_for_attribution, recomputed_layers


class GradientRun:
    """One forward and one backward pass per batch; ``call``'s hooks do the rest."""

    def __init__(self, engine: Any, call: Any) -> None:
        self.engine = engine
        self.call = call

    @contextlib.contextmanager
    def armed(self) -> Iterator[None]:
        engine = self.engine
        layers = engine.model.get_submodule(engine.adapter.layers_path) if engine.options.recompute else ()
        with (
            frozen_for_attribution(engine.model),
            forward_hooks(self.call.hooks()),
            recomputed_layers(layers, self.call.set_recomputing),
        ):
            yield

    def batch(self, rows: Any, idx: list[int], gold: Any, groups: list[int], batch_ids: list[str]) -> torch.Tensor:
        p = self.engine.forward(self.call, rows, idx, gold, groups)
        if not torch.isfinite(p).all():
            raise ScoringError(f"target probability is NaN or inf in the batch with examples {batch_ids}")
        self.call.backward(p, batch_ids)
        self.call.batch = None  # drop the batch's activations before the next forward
        return p.detach()


class GradientTimesActivation:
    """``gxa``: p × max over positions of a ⊙ ∂p/∂a (the linear estimate of what zeroing a neuron does)."""

    name = "gxa"

    def describe(self, options: Any) -> dict[str, Any]:
        return {"name": self.name, "baseline": "zero"}

    def needs_means(self, options: Any) -> bool:
        return False

    def start(self, engine: Any, call: Any, means: Mapping[str, torch.Tensor] | None) -> GradientRun:
        return GradientRun(engine, call)


GXA = GradientTimesActivation()
