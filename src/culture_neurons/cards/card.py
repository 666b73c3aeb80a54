"""The neuron card: every number a card shows, as a frozen record with its JSON form and a DataFrame row.

A card is built from measurements (:mod:`.build`); nothing on it is written by hand, the one-line
``summary`` included. ``neurons/cards.jsonl`` holds one :meth:`NeuronCard.to_dict` per line.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..fileio import atomic_path
from .lens import TokenLogit
from .neurons import NeuronRef

SOURCES = ("identification", "control", "nlu")  # where a card's examples come from; identification = culture


@dataclass(frozen=True)
class Membership:
    """A set that holds the neuron: its name (``general``, ``specific:Japan``), the neuron's rank (1 = best)
    within the pool the set was ranked in, the pool's size in the set, and the neuron's score there."""

    set: str
    rank: int
    of: int
    score: float | None
    pool: str


@dataclass(frozen=True)
class ExampleHit:
    """One of the examples a neuron fires most on: its activation (the maximum), where, and its heat line.

    ``tokens`` are the example's scored positions as text and ``heat`` the activation at each (None where
    it is not counted: the prefix every example shares); ``breaks`` are the positions where an option's
    own tokens begin (``choice``: each option without its last token, which is only read as a target)."""

    id: str
    source: str
    group: str
    activation: float
    position: int
    token: str
    tokens: tuple[str, ...] = ()
    heat: tuple[float | None, ...] = ()
    breaks: tuple[int, ...] = ()


@dataclass(frozen=True)
class CountryStat:
    """One country: its identification examples' mean activation (``n`` of them), its control examples' mean,
    and the neuron's country score s_c from the run's score tables (None when they are not given)."""

    country: str
    n: int
    mean: float | None
    control_mean: float | None = None
    attribution: float | None = None


@dataclass(frozen=True)
class SourceStat:
    """The examples of one source (identification, control, NLU): how many, their mean and maximum activation."""

    source: str
    n: int
    mean: float | None
    max: float | None


@dataclass(frozen=True)
class Histogram:
    """Example activations in equal-width bins: ``len(edges) == len(counts) + 1``."""

    edges: tuple[float, ...]
    counts: tuple[int, ...]


@dataclass(frozen=True)
class NeuronCard:
    """Everything known about one neuron (see docs/cards.md for how to read each field)."""

    site: str
    layer: int
    index: int
    sets: tuple[Membership, ...] = ()
    frequency: Mapping[str, float] = field(default_factory=dict)  # {"folds": 0.5, "templates": 1.0}
    through: str | None = None  # the weights it writes through; None: no output direction
    lens_note: str = ""
    promoted: tuple[TokenLogit, ...] = ()
    suppressed: tuple[TokenLogit, ...] = ()
    top_examples: tuple[ExampleHit, ...] = ()
    countries: tuple[CountryStat, ...] = ()
    sources: tuple[SourceStat, ...] = ()
    control_ratio: float | None = None  # identification mean / control mean (both > 0)
    nlu_ratio: float | None = None  # identification mean / NLU mean (both > 0)
    max_activation: float | None = None
    density: float | None = None  # fraction of counted positions with activation > 0
    positions: int = 0
    histogram: Histogram | None = None
    effect: float | None = None  # single-neuron effect (faithfulness): mean drop of p when zeroed
    effect_stratum: str | None = None
    summary: str = ""

    @property
    def ref(self) -> NeuronRef:
        return NeuronRef(self.site, self.layer, self.index)

    @property
    def name(self) -> str:
        return str(self.ref)

    def source(self, name: str) -> SourceStat | None:
        return next((s for s in self.sources if s.source == name), None)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form (one line of ``cards.jsonl``)."""
        return dataclasses.asdict(self) | {"frequency": dict(self.frequency)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "card") -> NeuronCard:
        """A card from its :meth:`to_dict` form; a one-line error naming ``where`` for a damaged record."""
        try:
            hist = data.get("histogram")
            return cls(
                site=str(data["site"]),
                layer=int(data["layer"]),
                index=int(data["index"]),
                sets=tuple(Membership(**m) for m in data.get("sets", ())),
                frequency=dict(data.get("frequency") or {}),
                through=data.get("through"),
                lens_note=data.get("lens_note", ""),
                promoted=tuple(TokenLogit(**t) for t in data.get("promoted", ())),
                suppressed=tuple(TokenLogit(**t) for t in data.get("suppressed", ())),
                top_examples=tuple(
                    ExampleHit(**{**h, **{k: tuple(h.get(k, ())) for k in ("tokens", "heat", "breaks")}})
                    for h in data.get("top_examples", ())
                ),
                countries=tuple(CountryStat(**c) for c in data.get("countries", ())),
                sources=tuple(SourceStat(**s) for s in data.get("sources", ())),
                control_ratio=data.get("control_ratio"),
                nlu_ratio=data.get("nlu_ratio"),
                max_activation=data.get("max_activation"),
                density=data.get("density"),
                positions=int(data.get("positions", 0)),
                histogram=Histogram(tuple(hist["edges"]), tuple(hist["counts"])) if hist else None,
                effect=data.get("effect"),
                effect_stratum=data.get("effect_stratum"),
                summary=str(data.get("summary", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{where} is not a neuron card ({type(exc).__name__}: {exc})") from None

    def row(self) -> dict[str, Any]:
        """One flat DataFrame row: where, how it ranks, how it fires, what it writes, the summary."""
        best = min(self.sets, key=lambda m: m.rank, default=None)
        top = max((c for c in self.countries if c.mean is not None), key=lambda c: c.mean, default=None)
        ident = self.source("identification")
        return {
            "site": self.site,
            "layer": self.layer,
            "index": self.index,
            "sets": ", ".join(m.set for m in self.sets),
            "best_rank": best.rank if best else None,
            "best_set": best.set if best else None,
            "max_activation": self.max_activation,
            "density": self.density,
            "culture_mean": ident.mean if ident else None,
            "control_ratio": self.control_ratio,
            "nlu_ratio": self.nlu_ratio,
            "top_country": top.country if top else None,
            "effect": self.effect,
            "fold_frequency": self.frequency.get("folds"),
            "template_frequency": self.frequency.get("templates"),
            "promoted": " ".join(repr(t.token) for t in self.promoted[:5]),
            "suppressed": " ".join(repr(t.token) for t in self.suppressed[:5]),
            "top_example": self.top_examples[0].id if self.top_examples else None,
            "summary": self.summary,
        }


class CardSet(Sequence[NeuronCard]):
    """Cards in order: iterate, index, :meth:`frame` for a pandas DataFrame, :meth:`write` for ``cards.jsonl``."""

    def __init__(self, cards: Sequence[NeuronCard]) -> None:
        self.cards = list(cards)

    def __len__(self) -> int:
        return len(self.cards)

    def __getitem__(self, i):  # type: ignore[override]
        return self.cards[i]

    def __iter__(self) -> Iterator[NeuronCard]:
        return iter(self.cards)

    def __repr__(self) -> str:
        return f"CardSet({len(self)} cards)"

    def get(self, ref: NeuronRef | str) -> NeuronCard | None:
        """The card of one neuron (a :class:`NeuronRef` or ``SITE:LAYER:INDEX``), or None."""
        key = str(ref)
        return next((c for c in self.cards if c.name == key), None)

    def frame(self) -> Any:
        """One row per card (:meth:`NeuronCard.row`), as a pandas DataFrame."""
        import pandas as pd

        columns = list(NeuronCard("", 0, 0).row())
        return pd.DataFrame([c.row() for c in self.cards], columns=columns)

    def write(self, path: str | Path) -> Path:
        """``path`` as JSON Lines, one card per line (written atomically)."""
        path = Path(path)
        with atomic_path(path, suffix=".jsonl") as tmp:
            with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
                for card in self.cards:
                    fh.write(json.dumps(card.to_dict(), ensure_ascii=False, allow_nan=False) + "\n")
        return path


def read_cards(path: str | Path) -> CardSet:
    """The cards of a ``cards.jsonl`` file (a one-line error naming the file and line for a damaged one)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist; the pipeline's cards stage writes neurons/cards.jsonl")
    cards = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except ValueError as exc:
                raise InputError(f"{path} line {number} is not JSON ({exc})") from None
            cards.append(NeuronCard.from_dict(data, f"{path} line {number}"))
    return CardSet(cards)
