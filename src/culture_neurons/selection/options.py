"""The selection rules' options and their defaults, in one place.

The selectors' keyword defaults are read from these dataclasses, the CLI shows them, and the
pipeline's ``[select.general]`` / ``[select.specific]`` config sections are these classes (plus the
stage-only key ``enabled``). Sites are lists so that a TOML array maps onto them unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class GeneralOptions:
    """Options of :func:`~culture_neurons.selection.select_general` (fractions: 0.01 = 1%)."""

    t_mlp: float = 0.01
    t_attn: float = 0.002
    r: float = 0.01
    mlp_sites: list[str] = field(default_factory=lambda: ["mlp.gate"])
    attn_sites: list[str] = field(default_factory=lambda: ["attn.q", "attn.k", "attn.v"])

    def kwargs(self) -> dict[str, Any]:
        """The selector's keyword arguments (only this class's fields, not a subclass's extra keys)."""
        return {f.name: getattr(self, f.name) for f in fields(GeneralOptions)}


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

    def kwargs(self) -> dict[str, Any]:
        """The selector's keyword arguments (only this class's fields, not a subclass's extra keys)."""
        return {f.name: getattr(self, f.name) for f in fields(SpecificOptions)}


GENERAL = GeneralOptions()
SPECIFIC = SpecificOptions()
