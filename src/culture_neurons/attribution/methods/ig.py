"""ig and ig-joint: integrated gradients of p with respect to site outputs, as captum's
``LayerIntegratedGradients`` defines them for a layer.

For one site of one layer with real output a (positions × channels) and baseline a' (0, or each
channel's mean activation at every position), the attribution of a channel at a position is

    IG = (a - a') ⊙ Σ_i w_i ∂p/∂z |_{z = a' + α_i (a - a')}

where z replaces the site's output and everything after it computes from z (everything before it
is real), and (α_i, w_i) are the quadrature rule's points and weights (rules.py). Summed over
positions and channels it tends to p(a) - p(a') as the steps grow (completeness). The attribution
is reduced as gxa's a ⊙ g is: multiplied by p (the real input's target probability) after the
aggregation over positions (max, sum or last), summed per group, clamped at 0 for controls.

``ig`` interpolates one site of one layer at a time: a batch of B examples costs one gradient-free
pass for p, then one pass of k × B rows (the k steps batched) forward and backward per site and
layer, about sites × layers × k passes per example: for samples and small models. ``ig-joint``
interpolates every scored site of every layer together, one pass of k × B rows per batch; its
attributions add up to the change of p when all sites move from their baselines at once, a
different quantity whose faithfulness is measured beside the others.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from ...errors import ScoringError
from ...models.adapters import HookPoint
from ...models.hooks import forward_hooks
from .base import Slot, finite_or_raise
from .means import channel_mask, scatter
from .prefix import LayerOutputs
from .rules import quadrature


@dataclass(frozen=True)
class Target:
    """What one interpolation moves: the sites ``point.sites`` of hook point ``index`` of the call."""

    key: int  # distinct per target: the shared-prompt path keeps pending reductions under it
    index: int
    point: HookPoint


@contextlib.contextmanager
def frozen(model: Any) -> Iterator[None]:
    """Every parameter frozen and eval mode, restored on exit. Unlike gxa's context the embedding output
    does not require grad: an interpolated output is a fresh leaf, so nothing before it needs a graph."""
    flags = [(q, q.requires_grad) for q in model.parameters()]
    modes = [(m, m.training) for m in model.modules()]
    try:
        for q, _ in flags:
            q.requires_grad_(False)
        model.eval()
        yield
    finally:
        for q, flag in flags:
            q.requires_grad_(flag)
        for m, mode in modes:
            m.training = mode


class Capture:
    """Forward hooks keeping every hook point's output of each pass (``ig-joint``'s real activations)."""

    def __init__(self, points: Sequence[HookPoint]) -> None:
        self.points = list(points)
        self.outputs: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(self.points))}

    def hooks(self) -> list[tuple[torch.nn.Module, Any]]:
        def make(index: int):
            def hook(_module, _inputs, output):
                self.outputs[index].append((output[0] if isinstance(output, tuple) else output).detach())

            return hook

        return [(point.module, make(i)) for i, point in enumerate(self.points)]


class Interpolation:
    """The forward hook that replaces one module's output by the k path points of its target's channels.

    Each pass through the module (two for a prompt shared through the KV cache) gives one leaf
    ``[k × rows, ...]`` (step-major: rows of step 0, then of step 1, ...) and the difference a - a'.
    """

    def __init__(
        self, target: Target, alphas: torch.Tensor, means: Mapping[str, torch.Tensor] | None, real: Capture | None
    ) -> None:
        self.target = target
        self.alphas = alphas
        self.means = means
        self.real = real
        self.leaves: list[torch.Tensor] = []
        self.deltas: list[torch.Tensor] = []

    def hook(self, _module, _inputs, output):
        out = output[0] if isinstance(output, tuple) else output
        k = len(self.alphas)
        rows = out.shape[0] // k
        phase = len(self.leaves)
        with torch.no_grad():
            # ig: upstream of the site everything is real, so every step's rows hold the real output
            a = out[:rows] if self.real is None else self.real.outputs[self.target.index][phase]
            width = out.shape[-1]
            mask = channel_mask(self.target.point.sites, width).to(out.device)
            base = scatter(self.target.point.sites, self.target.point.layer, self.means, width).to(
                out.device, out.dtype
            )
            base = torch.where(mask, base, a)  # channels of other sites stay real
            alpha = self.alphas.to(out.device, torch.float32).repeat_interleave(rows).view(-1, *[1] * (out.dim() - 1))
            reps = (k, *[1] * (out.dim() - 1))
            z = (base.repeat(reps) + alpha * (a - base).repeat(reps)).to(out.dtype)
        z.requires_grad_(True)
        self.leaves.append(z)
        self.deltas.append(a - base)
        return (z, *output[1:]) if isinstance(output, tuple) else z


def expand(rows: Any, idx: list[int], gold: Any, groups: list[int], k: int) -> tuple[Any, list[int], Any, list[int]]:
    """The batch's examples repeated for the k steps (step-major), as distinct virtual examples."""
    n = len(rows)
    vrows: dict[int, list] = {}
    vgold: dict[int, int] | None = {} if gold is not None else None
    vidx = []
    for step in range(k):
        for i in idx:
            v = step * n + i
            vrows[v] = [replace(r, example=v) for r in rows[i]]
            if vgold is not None:
                vgold[v] = gold[i]
            vidx.append(v)
    return vrows, vidx, vgold, list(groups) * k


class IntegratedRun:
    """One score call of ``ig`` or ``ig-joint``."""

    def __init__(self, engine: Any, call: Any, means: Mapping[str, torch.Tensor] | None, joint: bool) -> None:
        self.engine = engine
        self.call = call
        self.means = means
        self.joint = joint
        options = engine.options
        self.alphas, weights = quadrature(options.ig_rule, options.ig_steps)
        self.weights = weights.float()
        points = call.points
        if joint:
            self.passes = [[Target(i, i, point) for i, point in enumerate(points)]]
        else:
            singles = [
                (i, HookPoint(pt.layer, pt.path, pt.module, [s])) for i, pt in enumerate(points) for s in pt.sites
            ]
            self.passes = [[Target(key, i, pt)] for key, (i, pt) in enumerate(singles)]

    def armed(self) -> contextlib.AbstractContextManager[None]:
        return frozen(self.engine.model)

    def batch(self, rows: Any, idx: list[int], gold: Any, groups: list[int], batch_ids: list[str]) -> torch.Tensor:
        real = Capture(self.call.points) if self.joint else None
        # ig: the layers below a site replay their real output in its interpolated pass (prefix.py)
        below = None if self.joint else LayerOutputs(self.engine.model.get_submodule(self.engine.adapter.layers_path))
        slot = Slot()
        with torch.no_grad(), forward_hooks([*(real.hooks() if real else []), *(below.hooks() if below else [])]):
            p = self.engine.forward(slot, rows, idx, gold, groups)
        if not torch.isfinite(p).all():
            raise ScoringError(f"target probability is NaN or inf in the batch with examples {batch_ids}")
        state = slot.batch
        state.set(p=p.float())
        self.call.batch = state
        virtual = expand(rows, idx, gold, groups, len(self.alphas))
        if state.kind == "shared":  # the KV cache needs every layer of the prompt pass
            below = None
        try:
            for targets in self.passes:
                self._pass(targets, virtual, real, below, batch_ids)
            finite_or_raise(state.checks, "NaN or inf in neuron scores", batch_ids)
        finally:
            self.call.batch = None
        return p

    def _pass(
        self,
        targets: list[Target],
        virtual: tuple,
        real: Capture | None,
        below: LayerOutputs | None,
        batch_ids: list[str],
    ) -> None:
        """The k steps of one interpolation in one forward and backward pass, reduced into the sums."""
        interpolations = [Interpolation(t, self.alphas, self.means, real) for t in targets]
        slot = Slot()
        skipped = below.replacing(targets[0].point.layer, len(self.alphas)) if below else contextlib.nullcontext()
        with skipped, forward_hooks([(t.point.module, it.hook) for t, it in zip(targets, interpolations)]):
            vp = self.engine.forward(slot, *virtual)
        finite_or_raise([vp.detach()], "target probability on the integration path is NaN or inf", batch_ids)
        leaves = [leaf for it in interpolations for leaf in it.leaves]
        grads = iter(torch.autograd.grad(vp.sum(), leaves, allow_unused=True))
        slot.batch = None
        k = len(self.alphas)
        for t, it in zip(targets, interpolations):
            mine = [next(grads) for _ in it.leaves]
            # later passes first: a prompt shared through the KV cache combines its options' reductions
            for phase in reversed(range(len(mine))):
                g = mine[phase]
                leaf = it.leaves[phase]
                g = torch.zeros_like(leaf) if g is None else g
                w = self.weights.to(g.device).view(k, *[1] * leaf.dim())
                mean_grad = (g.float().view(k, -1, *leaf.shape[1:]) * w).sum(0)
                self.call.reduce(t.key, t.point, phase, it.deltas[phase], mean_grad)


class IntegratedGradients:
    """``ig`` (one site of one layer at a time) or ``ig-joint`` (every scored site together)."""

    def __init__(self, name: str, joint: bool) -> None:
        self.name = name
        self.joint = joint

    def describe(self, options: Any) -> dict[str, Any]:
        return {"name": self.name, "baseline": options.ig_baseline, "steps": options.ig_steps, "rule": options.ig_rule}

    def needs_means(self, options: Any) -> bool:
        return options.ig_baseline == "mean"

    def start(self, engine: Any, call: Any, means: Mapping[str, torch.Tensor] | None) -> IntegratedRun:
        return IntegratedRun(engine, call, means if self.needs_means(engine.options) else None, self.joint)


IG = IntegratedGradients("ig", joint=False)
IG_JOINT = IntegratedGradients("ig-joint", joint=True)
