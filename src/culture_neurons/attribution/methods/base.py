"""The interface of a scoring method: what the engine asks of it, and what it may use of the engine.

A method is a small object registered in :mod:`.` (``METHODS``). For one ``ScoringEngine.score``
call the engine hands it the call's :class:`~culture_neurons.attribution.reduction.ScoringCall`
(accumulators and the reduction every method shares) and gets back a :class:`Run`, which scores one
batch at a time. Through the engine a run may use ``model``, ``adapter``, ``options``, ``points``
and ``forward(slot, rows, idx, gold, groups) -> p``, which runs one batch the way the target needs
(rows, packed options, or the prompt's KV cache), sets ``slot.batch`` to the batch's
:class:`~culture_neurons.attribution.reduction.BatchState` and returns p per example.

Adding a method is one module with an object like those of :mod:`.gxa` or :mod:`.ig` and one line in
the registry; the engine, the table format and the CLI's choices follow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

import torch

from ...errors import ScoringError


class Run(Protocol):
    """One score call of one method."""

    def armed(self) -> AbstractContextManager[Any]:
        """What the whole call runs under: frozen parameters, hooks (removed on exit, errors included)."""
        ...

    def batch(self, rows: Any, idx: list[int], gold: Any, groups: list[int], batch_ids: list[str]) -> torch.Tensor:
        """Score one batch into the call's sums; return p per example (detached)."""
        ...


class Method(Protocol):
    """A way of scoring neurons, reduced like the paper's score (p × aggregation over positions, per group)."""

    name: str

    def describe(self, options: Any) -> dict[str, Any]:
        """What a ScoreTable records of it: ``name``, ``baseline`` and the method's own parameters."""
        ...

    def needs_means(self, options: Any) -> bool:
        """Whether it needs each channel's mean activation (a mean baseline)."""
        ...

    def start(self, engine: Any, call: Any, means: Mapping[str, torch.Tensor] | None) -> Run:
        """Set up one score call (``means``: ``{site: [layers, width]}`` when :meth:`needs_means`)."""
        ...


class Slot:
    """Where ``engine.forward`` leaves a batch's state when the call's own ``batch`` must not change."""

    def __init__(self) -> None:
        self.batch: Any = None


def finite_or_raise(values: Sequence[torch.Tensor], what: str, batch_ids: list[str]) -> None:
    """A :class:`ScoringError` naming the batch when any of ``values`` holds NaN or inf."""
    if values and not bool(torch.isfinite(torch.stack([v.reshape(-1).sum().cpu() for v in values])).all()):
        raise ScoringError(f"{what} in the batch with examples {batch_ids}; nothing was written")
