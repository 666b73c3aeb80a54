"""culture-neurons: find, test and edit the neurons that carry an LLM's cultural knowledge."""

from __future__ import annotations

from .attribution.scoretable import ScoreTable
from .data.example import Example, read_examples
from .errors import CultureNeuronsError
from .version import __version__

__all__ = [
    "CultureNeuronsError",
    "Example",
    "ScoreTable",
    "__version__",
    "get_adapter",
    "load_model",
    "read_examples",
    "score_examples",
]


def __getattr__(name: str):
    # Heavy entry points (transformers) load lazily so `import culture_neurons` stays cheap.
    if name == "load_model":
        from .models.loading import load_model

        return load_model
    if name == "get_adapter":
        from .models.adapters import get_adapter

        return get_adapter
    if name == "score_examples":
        from .attribution.engine import score_examples

        return score_examples
    raise AttributeError(name)
