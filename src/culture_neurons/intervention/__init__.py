"""Interventions: suppress or enhance neuron sets through hooks owned by a context manager."""

from .intervene import OPS, Intervention, check_fits, intervene, plan

__all__ = ["OPS", "Intervention", "check_fits", "intervene", "plan"]
