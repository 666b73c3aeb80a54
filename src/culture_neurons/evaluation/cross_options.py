"""What the cross-culture experiment compares besides its matrix: random sets per country, and related cultures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import InputError
from .country_random import DEFAULT_PER_COUNTRY
from .related import check_groups


@dataclass(frozen=True)
class CrossCultureOptions:
    """Options of :func:`~.experiments.run_cross_culture` beyond the matrix.

    Attributes:
        random_sets: layer-matched random sets of each country's size, each suppressed on its country's
            questions only (0: none); the summary's ``vs_random`` compares each country's set with its own.
        related: groups of related countries (``[["UK", "USA"], ["Spain", "Mexico"]]``); None: the
            default table :data:`~.related.DEFAULT_RELATED`; ``()`` relates no country.
    """

    random_sets: int = DEFAULT_PER_COUNTRY
    related: Sequence[Sequence[str]] | None = None

    def groups(self) -> tuple[tuple[str, ...], ...]:
        """The relatedness table, every name resolved; raises :class:`InputError` for a bad option."""
        n = self.random_sets
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise InputError(f"random_sets (random sets per country) must be an integer 0 or more, got {n!r}")
        return check_groups(self.related)
