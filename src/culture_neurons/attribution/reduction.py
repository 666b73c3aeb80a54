"""The per-call state of a scoring run: accumulators, per-batch masks and the hooks' reductions.

:class:`ScoringCall` owns everything one ``ScoringEngine.score`` call needs while it runs; the
forward hooks it hands out and the tensor hooks they register close over it. Nothing here knows
about examples or targets: the engine fills a :class:`BatchState` per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import ScoringError
from ..models.adapters import HookPoint


@dataclass(frozen=True)
class ReduceOptions:
    """The options the reductions read (a subset of the engine's ``ScoringOptions``)."""

    aggregation: str = "max"
    control: bool = False
    reference_compat: bool = False
    recompute: bool = False  # layers run again in backward (models.hooks.recomputed_layers)


class Accumulators:
    """Float32 ``[groups, channels]`` sums per site and layer.

    Each is created on the device where its site's activations first arrive, so models split over
    several devices (``device_map``), offloaded layers included, keep their sums beside the layer.
    """

    def __init__(self, points: Sequence[HookPoint], site_order: Sequence[str], num_groups: int) -> None:
        self.num_groups = num_groups
        self.widths = {site.name: site.width for point in points for site in point.sites}
        layers = {site.name: site.num_layers for point in points for site in point.sites}
        self.sums: dict[str, list[torch.Tensor | None]] = {name: [None] * layers[name] for name in site_order}
        self._restored: dict[str, torch.Tensor] | None = None

    def get(self, site: str, layer: int, device: torch.device) -> torch.Tensor:
        t = self.sums[site][layer]
        if t is None:
            if self._restored is not None:
                t = self._restored[site][layer].to(device, copy=True)
            else:
                t = torch.zeros(self.num_groups, self.widths[site], dtype=torch.float32, device=device)
            self.sums[site][layer] = t
        return t

    def tensors(self) -> list[torch.Tensor]:
        """Every accumulator, in a fixed order (the same on every rank, for all-reduce)."""
        return [
            self.get(name, layer, torch.device("cpu")) if t is None else t
            for name, ts in self.sums.items()
            for layer, t in enumerate(ts)
        ]

    def raw(self) -> dict[str, torch.Tensor]:
        """``{site: [layers, groups, channels]}`` on the CPU, the internal layout (for checkpoints)."""
        self.tensors()
        return {name: torch.stack([t.cpu() for t in layers]) for name, layers in self.sums.items()}

    def stacked(self) -> dict[str, torch.Tensor]:
        """``{site: [layers, channels, groups]}`` on the CPU."""
        return {name: t.permute(0, 2, 1).contiguous() for name, t in self.raw().items()}

    def restore(self, raw: dict[str, torch.Tensor]) -> None:
        for name, layers in self.sums.items():
            if name not in raw or tuple(raw[name].shape) != (len(layers), self.num_groups, self.widths[name]):
                raise ScoringError(f"checkpoint does not match this model's site {name}")
        self._restored = raw
        self.sums = {name: [None] * len(layers) for name, layers in self.sums.items()}


class BatchState:
    """What the tensor hooks of one batch read: masks (moved to each device once and cached), the
    example groups, and what the hooks report back.

    ``kind`` says how the batch ran:

    - ``rows``: one row per example (``label``, ``answer``);
    - ``stacked``: ``choice`` with every option row recomputing its prompt (right padding puts an
      example's rows' prompts in the same columns, and the gradient there is the sum over its rows);
    - ``shared``: ``choice`` with the prompt run once (pass 0) and the option continuations from its
      KV cache (pass 1); the prompt activation's gradient already sums over the options.
    """

    def __init__(self, kind: str, groups: list[int]) -> None:
        self.kind = kind
        self.groups = groups  # the group of each example, as Python ints (the accumulation loop reads them)
        self.num_examples = len(groups)
        self._src: dict[str, torch.Tensor] = {}
        self._cache: dict[tuple[str, torch.device], torch.Tensor] = {}
        self.passes: dict[int, int] = {}  # hook point -> forward passes seen (0: prompt, 1: continuations)
        self.inputs: list[torch.Tensor] = []  # the first hooked layer's outputs: what autograd.grad is asked for
        self.pending: dict[int, torch.Tensor] = {}  # continuation-pass reductions waiting for their prompt pass
        self.checks: list[torch.Tensor] = []  # one sum per reduction: NaN or inf if any score is
        self.fired = 0
        self.recomputed: dict[int, torch.Tensor] = {}  # hook point -> activation of its layer's second run

    def set(self, **tensors: torch.Tensor) -> None:
        """Provide (CPU or device) tensors by name: masks, row maps, last positions."""
        self._src.update(tensors)

    def get(self, name: str, device: torch.device) -> torch.Tensor:
        """Tensor ``name`` on ``device`` (moved once per batch and device)."""
        key = (name, device)
        if key not in self._cache:
            self._cache[key] = self._src[name].to(device)
        return self._cache[key]

    def bias(self, name: str, device: torch.device) -> torch.Tensor:
        """``[rows, T, 1]`` float32: 0 at the real positions of mask ``name``, -inf elsewhere.

        (For one fused addcmul.)
        """
        key = (f"{name}:bias", device)
        if key not in self._cache:
            mask = self.get(name, device)
            self._cache[key] = torch.zeros(mask.shape, dtype=torch.float32, device=device).masked_fill_(
                ~mask, float("-inf")
            )[..., None]
        return self._cache[key]


class ScoringCall:
    """The state of one :meth:`ScoringEngine.score` call. The forward and tensor hooks close over it,
    so nothing per call lives on the engine and two engines (or calls) never share sums.

    The reductions work on ``[rows, T, F]`` only inside the tensor hook; what outlives it is
    ``[examples, F]``, multiplied by p there (cheap at that size).
    """

    def __init__(
        self, options: ReduceOptions, points: Sequence[HookPoint], site_order: Sequence[str], num_groups: int
    ) -> None:
        self.options = options
        self.points = list(points)
        self.first_layer = min(point.layer for point in self.points)
        self.accs = Accumulators(self.points, site_order, num_groups)
        self.batch: BatchState | None = None
        # With options.recompute the first forward keeps no activation; the layer's second run inside
        # backward (while this flag is set) hands each site's activation to its gradient hook.
        self.recomputing = False
        # A method that scores (a - b) ⊙ g sets the baseline b of each hook point's output here
        # (``.get(index, width, device)``, e.g. methods.means.PointBaselines); None is b = 0, gxa.
        self.baselines: Any = None

    def set_recomputing(self, flag: bool) -> None:
        self.recomputing = flag

    def hooks(self) -> list[tuple[torch.nn.Module, Any]]:
        """``(module, forward hook)`` pairs for :func:`~culture_neurons.models.hooks.forward_hooks`."""
        return [(point.module, self._forward_hook(index, point)) for index, point in enumerate(self.points)]

    def _forward_hook(self, index: int, point: HookPoint):
        def hook(_module, _inputs, output):
            batch = self.batch
            out = output[0] if isinstance(output, tuple) else output
            if self.recomputing:
                batch.recomputed[index] = out.detach()
                return
            if not out.requires_grad:
                raise ScoringError(
                    f"{point.path}: output does not require grad; is the module detached from the input?"
                )
            phase = batch.passes.get(index, 0)
            batch.passes[index] = phase + 1
            if point.layer == self.first_layer:
                batch.inputs.append(out)
            activation = None if self.options.recompute else out.detach()
            out.register_hook(lambda grad: self.reduce(index, point, phase, activation, grad))

        return hook

    def reduce(
        self, index: int, point: HookPoint, phase: int, activation: torch.Tensor | None, grad: torch.Tensor
    ) -> None:
        """Reduce one pass of hook point ``index`` (``phase``: its forward pass in the batch) into the sums of
        ``point.sites``: p × the aggregation over positions of ``activation ⊙ grad`` (minus the baseline's
        share when :attr:`baselines` is set), clamped for controls. Methods other than the gradient hooks'
        call it with their own factors (integrated gradients: ``(a - a') ⊙ the path's mean gradient``)."""
        batch = self.batch
        batch.fired += 1
        if activation is None:
            activation = batch.recomputed.pop(index, None)
            if activation is None:
                raise ScoringError(f"{point.path}: its gradient arrived before its layer was recomputed")
        device = activation.device
        if activation.dtype != torch.float32:  # bfloat16/float16 models: the product and sums stay float32
            activation, grad = activation.float(), grad.float()
        if self.baselines is not None:
            activation = activation - self.baselines.get(index, activation.shape[-1], device)
        if batch.kind == "stacked":
            reduced = self._stacked(activation * grad, batch, device)
        elif phase == 0:  # one row per example, or the shared prompt
            reduced = self._masked(activation, grad, batch, "mask", device)
            later = batch.pending.pop(index, None)
            if later is not None:
                reduced = torch.maximum(reduced, later) if self.options.aggregation == "max" else reduced.add_(later)
        else:  # the option continuations of a shared prompt: reduced per example,
            # combined when the prompt's gradient arrives
            if self.options.aggregation != "last":
                batch.pending[index] = self._continuations(activation, grad, batch, device)
            return
        reduced = reduced * batch.get("p", device)[:, None]
        if self.options.control:
            reduced = reduced.clamp_(min=0.0)
        batch.checks.append(reduced.sum())
        for site in point.sites:
            acc = self.accs.get(site.name, point.layer, device)
            values = site.take(reduced)
            # A few row adds beat index_add_, whose parallel scatter path stalls on a loaded machine.
            for row, group in enumerate(batch.groups):
                acc[group].add_(values[row])

    def _masked(
        self, activation: torch.Tensor, grad: torch.Tensor, batch: BatchState, mask: str, device: torch.device
    ) -> torch.Tensor:
        """Reduce a ⊙ g over the real positions of ``mask`` (max, sum or last) to ``[rows, F]``."""
        agg = self.options.aggregation
        if agg == "last":  # only the last real position is ever read: multiply there alone
            rows = torch.arange(activation.shape[0], device=device)
            last = batch.get("last", device)
            return activation[rows, last] * grad[rows, last]
        if agg == "max" and not self.options.reference_compat:
            return torch.addcmul(batch.bias(mask, device), activation, grad).amax(dim=1)  # -inf at padding, one pass
        keep = batch.get(mask, device)[..., None]
        prod = (activation * grad).masked_fill_(~keep, 0.0)  # reference_compat: zero-filled padding before the max
        return prod.amax(dim=1) if agg == "max" else prod.sum(dim=1)

    def _continuations(
        self, activation: torch.Tensor, grad: torch.Tensor, batch: BatchState, device: torch.device
    ) -> torch.Tensor:
        """Per-example max (or sum) of a ⊙ g over the option rows' own continuation positions, ``[examples, F]``."""
        rows = batch.get("row_example", device)
        if self.options.aggregation == "max":
            per_row = torch.addcmul(batch.bias("cont", device), activation, grad).amax(dim=1)
            out = per_row.new_full((batch.num_examples, per_row.shape[1]), float("-inf"))
            return out.scatter_reduce_(0, rows[:, None].expand_as(per_row), per_row, reduce="amax")
        per_row = (activation * grad).masked_fill_(~batch.get("cont", device)[..., None], 0.0).sum(dim=1)
        return per_row.new_zeros((batch.num_examples, per_row.shape[1])).index_add_(0, rows, per_row)

    def _stacked(self, prod: torch.Tensor, batch: BatchState, device: torch.device) -> torch.Tensor:
        """``stacked`` choice rows: prompt positions use the gradient summed over an example's rows."""
        agg = self.options.aggregation
        n = batch.num_examples
        rows = batch.get("row_example", device)
        prompt = batch.get("example_prompt", device)
        shared = prod.new_zeros((n, *prod.shape[1:])).index_add_(0, rows, prod)
        own = batch.get("own", device)
        if agg == "last":
            return shared[torch.arange(n, device=device), batch.get("last", device)]
        if agg == "sum":
            return shared.masked_fill_(~prompt[..., None], 0.0).sum(1) + prod.new_zeros(n, prod.shape[2]).index_add_(
                0, rows, prod.masked_fill(~own[..., None], 0.0).sum(1)
            )
        best = shared.masked_fill_(~prompt[..., None], float("-inf")).amax(1)
        per_row = prod.masked_fill_(~own[..., None], float("-inf")).amax(1)
        return best.scatter_reduce_(0, rows[:, None].expand_as(per_row), per_row, reduce="amax")

    def backward(self, p: torch.Tensor, batch_ids: list[str]) -> None:
        """Run the backward pass for one batch: every hook reduces its site as its gradient arrives.

        ``torch.autograd.grad`` is asked only for the first hooked layer's outputs, so autograd
        prunes what lies below them (the embedding and the first layer's input gradients) and no
        gradient is accumulated anywhere; the returned tensors are dropped at once.
        """
        batch = self.batch
        batch.set(p=p.detach().float())
        torch.autograd.grad(p.sum(), batch.inputs, allow_unused=True)
        expected = sum(batch.passes.values())
        if batch.fired != expected:
            raise ScoringError(
                f"only {batch.fired} of {expected} site gradients arrived in the batch with examples {batch_ids}; "
                "a site is not upstream of the first hooked layer in this model"
            )
        if not torch.isfinite(torch.stack([c.to(p.device) for c in batch.checks])).all():
            raise ScoringError(
                f"NaN or inf in neuron scores in the batch with examples {batch_ids}; nothing was written"
            )
