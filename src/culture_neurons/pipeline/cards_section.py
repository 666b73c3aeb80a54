"""``[cards]``: the neuron cards stage's config section (its own module: :mod:`.sections` is near its size limit)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..cards.options import CardOptions


@dataclass
class CardsSection(CardOptions):
    """``[cards]``: every :class:`~culture_neurons.cards.CardOptions` field, and whether the stage runs (it writes
    ``neurons/cards.jsonl``, which the report shows)."""

    enabled: bool = True

    def options(self) -> CardOptions:
        """The :class:`CardOptions` of this section (without ``enabled``)."""
        return CardOptions(**{f.name: getattr(self, f.name) for f in fields(CardOptions)})
