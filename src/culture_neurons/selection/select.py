"""The selectors under their historical module path (``culture_neurons.selection.select``).

Each rule lives in its own module: :mod:`.general`, :mod:`.specific`, :mod:`.randomsets`; the
scores in :mod:`.scores`, the pools and ranking in :mod:`.ranking`, the defaults in :mod:`.options`.
"""

from __future__ import annotations

from .general import select_general
from .options import GeneralOptions, SpecificOptions
from .randomsets import select_random
from .ranking import Pool, top_count, top_indices, top_mask
from .specific import plan_countries, select_specific, select_specific_many

__all__ = [
    "GeneralOptions",
    "Pool",
    "SpecificOptions",
    "plan_countries",
    "select_general",
    "select_random",
    "select_specific",
    "select_specific_many",
    "top_count",
    "top_indices",
    "top_mask",
]
