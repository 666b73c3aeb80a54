"""Neuron cards: what a neuron writes (logit lens), what makes it fire (top examples with heat lines),
whose culture it answers to (per-country activation and attribution, culture against control and NLU),
how often and how strongly it fires (density, histogram), and what removing it does (the validity
stage's single-neuron effect), with a one-line summary computed from those numbers (docs/cards.md).

- :func:`neuron_cards` — cards for any neurons of a model on given examples;
- :func:`cards_from_run` — cards from a run directory's own examples, sets, tables and validity files;
- :class:`NeuronCard`, :class:`CardSet` (``.frame()``: a DataFrame; ``.write()``: ``cards.jsonl``),
  :func:`read_cards`;
- :func:`logit_lens` and :func:`capture` — the two measurements, usable on their own.
"""

from .activations import Captured, capture
from .api import cards_from_run, neuron_cards
from .build import CardContext, build_cards, summary_line
from .card import CardSet, CountryStat, ExampleHit, Histogram, Membership, NeuronCard, SourceStat, read_cards
from .lens import Lens, TokenLogit, logit_lens
from .neurons import NeuronRef, parse_neuron
from .options import CardOptions
from .render import card_html, text_card

__all__ = [
    "Captured",
    "CardContext",
    "CardOptions",
    "CardSet",
    "CountryStat",
    "ExampleHit",
    "Histogram",
    "Lens",
    "Membership",
    "NeuronCard",
    "NeuronRef",
    "SourceStat",
    "TokenLogit",
    "build_cards",
    "capture",
    "card_html",
    "cards_from_run",
    "logit_lens",
    "neuron_cards",
    "parse_neuron",
    "read_cards",
    "summary_line",
    "text_card",
]
