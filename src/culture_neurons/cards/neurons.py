"""Which neurons get a card: ``SITE:LAYER:INDEX`` references, read from text or a NeuronSet, checked against a model."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from ..errors import InputError
from ..models.adapters import ModelAdapter
from ..selection.neuronset import Neuron, NeuronSet


class NeuronRef(NamedTuple):
    """One neuron: output channel ``index`` of ``site`` in ``layer`` (``mlp.gate:3:117``)."""

    site: str
    layer: int
    index: int

    def __str__(self) -> str:
        return f"{self.site}:{self.layer}:{self.index}"


def parse_neuron(text: str) -> NeuronRef:
    """``"mlp.gate:3:117"`` as a :class:`NeuronRef`; a one-line error naming the text otherwise."""
    site, sep1, rest = str(text).strip().partition(":")
    layer, sep2, index = rest.partition(":")
    if not (sep1 and sep2 and site and layer.isdigit() and index.isdigit()):
        raise InputError(f"neuron {text!r} must look like SITE:LAYER:INDEX, e.g. mlp.gate:3:117")
    return NeuronRef(site, int(layer), int(index))


def refs_of(neurons: NeuronSet | Iterable[NeuronRef | Neuron | tuple[str, int, int] | str]) -> list[NeuronRef]:
    """Neuron references from a NeuronSet, :class:`Neuron` records, triples or ``SITE:LAYER:INDEX`` strings,
    in the given order with repeats dropped."""
    items = neurons.neurons if isinstance(neurons, NeuronSet) else neurons
    out: dict[NeuronRef, None] = {}
    for item in items:
        if isinstance(item, str):
            ref = parse_neuron(item)
        elif isinstance(item, Neuron):
            ref = NeuronRef(item.site, item.layer, item.index)
        else:
            site, layer, index = item
            ref = NeuronRef(str(site), int(layer), int(index))
        out.setdefault(ref, None)
    return list(out)


def check_neurons(refs: Sequence[NeuronRef], adapter: ModelAdapter) -> None:
    """Raise :class:`InputError` for the first neuron that does not exist in the adapter's model."""
    for ref in refs:
        if ref.site not in adapter.sites:
            raise InputError(
                f"neuron {ref}: this {adapter.family} model has no site {ref.site!r} "
                f"(it has {', '.join(adapter.sites)})"
            )
        width = adapter.sites[ref.site].width
        if not 0 <= ref.layer < adapter.num_layers:
            raise InputError(
                f"neuron {ref} is outside the model: layer {ref.layer}, but this {adapter.family} model has "
                f"layers 0-{adapter.num_layers - 1}"
            )
        if not 0 <= ref.index < width:
            raise InputError(
                f"neuron {ref} is outside the model: index {ref.index}, but {ref.site} has channels 0-{width - 1}"
            )
