"""Neuron selection: culture-general, culture-specific and random sets, and the NeuronSet format."""

from .neuronset import Neuron, NeuronSet
from .select import select_general, select_random, select_specific, select_specific_many

__all__ = ["Neuron", "NeuronSet", "select_general", "select_random", "select_specific", "select_specific_many"]
