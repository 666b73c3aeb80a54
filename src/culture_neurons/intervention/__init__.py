"""Interventions: suppress, enhance or mean-ablate neuron sets through hooks owned by a context manager."""

from .intervene import OPS, Intervention, check_fits, intervene, plan
from .means import channel_means, load_means, means_path, save_means

__all__ = [
    "OPS",
    "Intervention",
    "channel_means",
    "check_fits",
    "intervene",
    "load_means",
    "means_path",
    "plan",
    "save_means",
]
