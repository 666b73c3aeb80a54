"""The selection rules' options and their defaults, in one place.

The selectors' keyword defaults are read from these dataclasses, the CLI shows them, and the
pipeline's ``[select.general]`` / ``[select.specific]`` config sections are these classes (plus the
stage-only key ``enabled``). Sites are lists so that a TOML array maps onto them unchanged.

``stability`` (a :class:`StabilityOptions`, or None) is not a selector argument: it asks the pipeline
to replace the rule's set by its stability-selected set (:mod:`culture_neurons.selection.stability`),
so :meth:`GeneralOptions.kwargs` leaves it out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from ..errors import InputError

# Not an argument of the selectors: read by the pipeline, which selects on resamples when it is set.
_NOT_SELECTOR_ARGS = ("stability",)


def check_pi(pi: float) -> float:
    """``pi`` as a float in (0.5, 1], else a one-line :class:`InputError` (the bound needs pi > 0.5)."""
    if isinstance(pi, bool) or not isinstance(pi, (int, float)) or not 0.5 < float(pi) <= 1.0:
        raise InputError(
            f"stability pi must be a fraction above 0.5 and at most 1 (the bound needs pi > 0.5), got {pi!r}"
        )
    return float(pi)


@dataclass
class StabilityOptions:
    """Stability selection (Meinshausen & Bühlmann 2010, complementary pairs as in Shah & Samworth 2013).

    The identification questions are split into ``blocks`` blocks (balanced per country, by question,
    seeded by ``seed``), each scored once; a resample is a random half of the blocks, drawn together with
    its complement, ``resamples`` halves in all (``resamples / 2`` distinct complementary pairs). A neuron
    is kept when the rule selects it in at least a fraction ``pi`` of the halves.

    ``pi`` must lie in (0.5, 1]: the bound on the expected number of false selections,
    ``q**2 / ((2 pi - 1) p)``, holds only there. 0.6 is the lower end of the range Meinshausen and
    Bühlmann recommend (0.6-0.9; their results hardly change within it): it keeps the most true units,
    at the price of the loosest bound (``5 q**2 / p``).
    """

    resamples: int = 20
    pi: float = 0.6
    blocks: int = 8
    seed: int = 0

    def check(self) -> None:
        """Raise :class:`InputError` naming the first value out of range."""
        if isinstance(self.resamples, bool) or not isinstance(self.resamples, int) or self.resamples < 2:
            raise InputError(f"stability resamples must be an even integer of at least 2, got {self.resamples!r}")
        if self.resamples % 2:
            raise InputError(
                f"stability resamples must be even (halves come in complementary pairs), got {self.resamples}"
            )
        check_pi(self.pi)
        if isinstance(self.blocks, bool) or not isinstance(self.blocks, int) or self.blocks < 2 or self.blocks % 2:
            raise InputError(
                f"stability blocks must be an even integer of at least 2 (a half is blocks / 2 of them), "
                f"got {self.blocks!r}"
            )
        pairs = math.comb(self.blocks, self.blocks // 2) // 2
        if self.resamples // 2 > pairs:
            raise InputError(
                f"stability resamples = {self.resamples} needs {self.resamples // 2} distinct complementary pairs of "
                f"halves, but {self.blocks} blocks give only {pairs}; raise blocks or lower resamples"
            )


@dataclass
class GeneralOptions:
    """Options of :func:`~culture_neurons.selection.select_general` (fractions: 0.01 = 1%)."""

    t_mlp: float = 0.01
    t_attn: float = 0.002
    r: float = 0.01
    mlp_sites: list[str] = field(default_factory=lambda: ["mlp.gate"])
    attn_sites: list[str] = field(default_factory=lambda: ["attn.q", "attn.k", "attn.v"])
    stability: StabilityOptions | None = None

    def kwargs(self) -> dict[str, Any]:
        """The selector's keyword arguments (only this class's fields, not a subclass's extra keys)."""
        return {f.name: getattr(self, f.name) for f in fields(GeneralOptions) if f.name not in _NOT_SELECTOR_ARGS}


@dataclass
class SpecificOptions:
    """Options of :func:`~culture_neurons.selection.select_specific_many`.

    ``countries``: None = every country the tables share (those missing from a table are reported
    as dropped); ``"targets"`` = the paper's 8; or a list, where a missing country is an error.
    """

    countries: str | list[str] | None = None
    t: float = 0.003
    r: float = 0.01
    z: float = 0.5
    sites: list[str] = field(default_factory=lambda: ["mlp.gate", "attn.q", "attn.k", "attn.v"])
    stability: StabilityOptions | None = None

    def kwargs(self) -> dict[str, Any]:
        """The selector's keyword arguments (only this class's fields, not a subclass's extra keys)."""
        return {f.name: getattr(self, f.name) for f in fields(SpecificOptions) if f.name not in _NOT_SELECTOR_ARGS}


GENERAL = GeneralOptions()
SPECIFIC = SpecificOptions()
STABILITY = StabilityOptions()
