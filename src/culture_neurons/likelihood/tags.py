"""Which example each row of the coming forward pass holds.

Every batched forward pass of this package announces, just before it calls the model, the index of
the example behind each row of its batch (the batch's first dimension). Hooks that act per row
(:func:`~culture_neurons.intervention.rowwise.intervene_rows`: each row under its own condition)
read it; nothing else does, and announcing costs a small tensor per pass. The announcement lives in a
context variable, so it belongs to one call (and one thread) and is gone when the block ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextvars import ContextVar

import torch

_ROWS: ContextVar[torch.Tensor | None] = ContextVar("culture_neurons_batch_examples", default=None)


@contextlib.contextmanager
def batch_examples(indices: Sequence[int] | torch.Tensor) -> Iterator[torch.Tensor]:
    """Announce that row ``r`` of every forward pass inside the block holds example ``indices[r]``."""
    tensor = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
    token = _ROWS.set(tensor)
    try:
        yield tensor
    finally:
        _ROWS.reset(token)


def current_batch_examples() -> torch.Tensor | None:
    """The example index of each row of the current forward pass (CPU, int64), or None when nobody said."""
    return _ROWS.get()
