"""Interventions: suppress, enhance or mean-ablate neuron sets through hooks owned by a context manager."""

from .intervene import OPS, Intervention, check_fits, intervene, plan
from .means import channel_means, load_means, means_path, save_means
from .rowwise import RowCondition, copies_of, intervene_rows

__all__ = [
    "OPS",
    "Intervention",
    "RowCondition",
    "channel_means",
    "check_fits",
    "copies_of",
    "intervene",
    "intervene_rows",
    "load_means",
    "means_path",
    "plan",
    "save_means",
]
