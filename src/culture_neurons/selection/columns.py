"""What the file format (:mod:`.setfile`) and the set operations (:mod:`.setops`) read from a neuron set.

:class:`~culture_neurons.selection.neuronset.NeuronSet` has these attributes; the two modules are
written against this protocol instead of the class, so that ``neuronset`` imports them and neither
imports ``neuronset`` back (not even for an annotation).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import torch


class NeuronColumns(Protocol):
    """A neuron set's parallel columns and the shape and provenance of the model it was selected on."""

    site_names: tuple[str, ...]
    site_ids: torch.Tensor
    layers: torch.Tensor
    indices: torch.Tensor
    scores: torch.Tensor
    kind: str
    num_layers: int | None
    widths: Mapping[str, int] | None
    model: Mapping[str, Any]
    params: Mapping[str, Any]
    sources: Mapping[str, Any]

    def __len__(self) -> int: ...
