"""Skipping the real part of an interpolated pass: the decoder layers below the interpolated site.

When ``ig`` moves one site of layer l, the layers below l compute the same output in every one of
the k steps, and the same as in the batch's real pass. :class:`LayerOutputs` keeps each layer's
output of the real pass; while :meth:`LayerOutputs.replacing` is active, the layers below l return it
repeated k times (step-major, as the interpolated batch lays out its rows) instead of running, so an
interpolated pass computes layers l and above only. Not for a prompt shared through the KV cache:
the skipped layers would leave their part of the cache empty.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ...models.hooks import forwards_replaced


def repeat_rows(value: Any, rows: int, k: int) -> Any:
    """``value`` with every tensor whose first dimension is ``rows`` repeated k times along it (tuples too)."""
    if isinstance(value, torch.Tensor):
        return value.repeat(k, *[1] * (value.dim() - 1)) if value.dim() and value.shape[0] == rows else value
    if isinstance(value, tuple):
        return type(value)(repeat_rows(v, rows, k) for v in value)
    return value


class LayerOutputs:
    """The decoder layers' outputs of one batch's real pass, and the stubs that replay them."""

    def __init__(self, layers: nn.ModuleList) -> None:
        self.layers = list(layers)
        self.outputs: dict[int, Any] = {}
        self.rows = 0

    def hooks(self) -> list[tuple[nn.Module, Any]]:
        """Forward hooks that keep each layer's output (detached) while the real pass runs."""

        def keep(index: int):
            def hook(_module, _inputs, output):
                first = output[0] if isinstance(output, tuple) else output
                self.rows = first.shape[0]
                self.outputs[index] = output

            return hook

        return [(layer, keep(i)) for i, layer in enumerate(self.layers)]

    @contextlib.contextmanager
    def replacing(self, below: int, k: int) -> Iterator[None]:
        """Layers ``0 .. below - 1`` return their real output repeated k times instead of running."""
        replays = [
            (self.layers[i], repeat_rows(self.outputs[i], self.rows, k)) for i in range(min(below, len(self.layers)))
        ]
        with forwards_replaced((layer, lambda *_a, _r=replay, **_kw: _r) for layer, replay in replays):
            yield
