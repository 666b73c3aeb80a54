"""The options of neuron cards, in one place: the Python API's defaults, the CLI's and the ``[cards]`` section's."""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..errors import InputError


@dataclass
class CardOptions:
    """How cards are made.

    Attributes:
        top: neurons per set that get a card in a run (per pool of the general set: MLP and attention,
            each ranked on its own, as the selection ranks them).
        top_tokens: promoted and suppressed tokens listed.
        top_examples: examples listed, highest activation first, each with its heat line.
        bins: bins of the activation histogram.
        batch_size: examples per forward pass.
        max_per_group: identification and control examples per country read from a run (0: all). A
            small sample by default: a card costs one forward pass per example, and the stage is meant to
            stay a small fraction of the scoring stage (docs/cards.md, "Cost").
        nlu_limit: NLU examples read from a run, in all (0: all).
        shared_prefix: count the leading tokens every example shares (BOS, a system prompt) and the first
            position too; their activations are the same in every example, or an outlier with no context
            (an attention sink), so by default they are left out.
    """

    top: int = 10
    top_tokens: int = 10
    top_examples: int = 5
    bins: int = 20
    batch_size: int = 8
    max_per_group: int = 4
    nlu_limit: int = 16
    shared_prefix: bool = False

    def check(self, key: str = "cards option '{}'") -> None:
        """Raise :class:`InputError` naming the first value out of range (``key`` formats its name, e.g.
        ``"config key 'cards.{}'"``)."""
        least = {"top": 0, "top_tokens": 1, "top_examples": 1, "bins": 1, "batch_size": 1}
        for f in fields(CardOptions):
            value, name = getattr(self, f.name), key.format(f.name)
            if f.name == "shared_prefix":
                if not isinstance(value, bool):
                    raise InputError(f"{name} must be true or false, got {value!r}")
                continue
            low = least.get(f.name, 0)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InputError(f"{name} must be an integer of at least {low}, got {value!r}")
