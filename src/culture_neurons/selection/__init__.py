"""Neuron selection: culture-general, culture-specific and random sets, and the NeuronSet format."""

from .general import select_general
from .neuronset import Neuron, NeuronSet
from .options import GeneralOptions, SpecificOptions, StabilityOptions
from .randomsets import RandomBaseline, select_random
from .specific import CountryPlan, plan_countries, select_specific, select_specific_many
from .stability import Resample, StableSelection, stable_general, stable_specific_many

__all__ = [
    "CountryPlan",
    "GeneralOptions",
    "Neuron",
    "NeuronSet",
    "RandomBaseline",
    "Resample",
    "SpecificOptions",
    "StabilityOptions",
    "StableSelection",
    "plan_countries",
    "select_general",
    "select_random",
    "select_specific",
    "select_specific_many",
    "stable_general",
    "stable_specific_many",
]
