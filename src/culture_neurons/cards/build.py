"""Cards from measurements: the pass's activations, the logit lens, and what the run knows about each neuron.

Every per-neuron statistic is computed for all neurons at once (tensors ``[examples, neurons]``); the
loop over neurons only assembles the records. The one-line summary is :func:`summary_line` of the
numbers on the card.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from ..data.example import Example
from .activations import Captured
from .card import SOURCES, CountryStat, ExampleHit, Histogram, Membership, NeuronCard, SourceStat
from .lens import Lens
from .neurons import NeuronRef


@dataclass
class CardContext:
    """What a card knows beyond the forward pass (all optional, keyed by neuron).

    Attributes:
        memberships: the sets that hold each neuron, with its rank and score there.
        frequency: selection frequency over the validity stage's folds and templates (``{"folds": f}``).
        effects: the single-neuron effect measured by the faithfulness analysis, and its stratum.
        attribution: the country score s_c per country, from the run's score tables.
    """

    memberships: Mapping[NeuronRef, Sequence[Membership]] = field(default_factory=dict)
    frequency: Mapping[NeuronRef, Mapping[str, float]] = field(default_factory=dict)
    effects: Mapping[NeuronRef, tuple[float, str | None]] = field(default_factory=dict)
    attribution: Mapping[NeuronRef, Mapping[str, float]] = field(default_factory=dict)


def _value(x: float) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def _nanmean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Column means of ``values[mask]`` over the non-NaN entries, ``[n]`` (NaN where there are none)."""
    if not bool(mask.any()):
        return torch.full((values.shape[1],), float("nan"))
    return values[mask].double().nanmean(0).float()


def _nanmax(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Column maxima of ``values[mask]`` over the non-NaN entries, ``[n]`` (NaN where there are none)."""
    if not bool(mask.any()):
        return torch.full((values.shape[1],), float("nan"))
    chosen = values[mask]
    return chosen.nan_to_num(nan=float("-inf")).amax(0).masked_fill_(chosen.isnan().all(0), float("nan"))


def histograms(values: torch.Tensor, bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Equal-width histograms of each column's non-NaN values: ``([n, bins + 1] edges, [n, bins] counts)``."""
    finite = ~values.isnan()
    low = values.nan_to_num(nan=float("inf")).amin(0)
    high = values.nan_to_num(nan=float("-inf")).amax(0)
    empty = ~finite.any(0)
    low, high = low.masked_fill(empty, 0.0), high.masked_fill(empty, 0.0)
    span = (high - low).clamp(min=1e-12)
    which = ((values - low) / span * bins).floor().clamp_(0, bins - 1).nan_to_num_(0).long()
    counts = torch.zeros(values.shape[1], bins, dtype=torch.long)
    counts.scatter_add_(1, which.t(), finite.t().long())
    steps = torch.linspace(0, 1, bins + 1)
    edges = low[:, None] + (high - low)[:, None] * steps[None, :]
    return edges, counts


def _stats(captured: Captured, examples: Sequence[Example], sources: Sequence[str]) -> dict[str, Any]:
    """Per-source and per-country means and maxima for every neuron, as ``[n]`` tensors."""
    values = captured.example_max
    source = list(sources)
    out: dict[str, Any] = {"source": {}, "country": {}, "control": {}}
    for name in SOURCES:
        mask = torch.tensor([s == name for s in source], dtype=torch.bool)
        out["source"][name] = (int(mask.sum()), _nanmean(values, mask), _nanmax(values, mask))
    countries = sorted({ex.group for ex, s in zip(examples, source) if s == "identification"})
    for country in countries:
        ident = torch.tensor([s == "identification" and ex.group == country for ex, s in zip(examples, source)])
        ctrl = torch.tensor([s == "control" and ex.group == country for ex, s in zip(examples, source)])
        others = torch.tensor([s == "identification" and ex.group != country for ex, s in zip(examples, source)])
        out["country"][country] = (int(ident.sum()), _nanmean(values, ident), _nanmean(values, others))
        out["control"][country] = _nanmean(values, ctrl) if bool(ctrl.any()) else None
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    """``a / b`` when both are positive (a ratio of activations means nothing across 0), else None."""
    return a / b if a is not None and b is not None and a > 0 and b > 0 else None


def _hits(
    captured: Captured, j: int, examples: Sequence[Example], sources: Sequence[str], decode: Any
) -> tuple[ExampleHit, ...]:
    hits = []
    for r in range(captured.top_index.shape[0]):
        e = int(captured.top_index[r, j])
        value = _value(float(captured.example_max[e, j])) if e >= 0 else None
        if value is None:
            continue
        tokens = decode(e)
        position = int(captured.example_argmax[e, j])
        heat = captured.top_heat[r, j, : len(tokens)].tolist()
        hits.append(
            ExampleHit(
                examples[e].id,
                sources[e],
                examples[e].group,
                value,
                position,
                tokens[position],
                tuple(tokens),
                tuple(None if math.isnan(v) else float(f"{v:.4g}") for v in heat),
                captured.breaks[e],
            )
        )
    return tuple(hits)


def build_cards(
    captured: Captured,
    lenses: Sequence[Lens],
    examples: Sequence[Example],
    sources: Sequence[str],
    tokenizer: Any,
    context: CardContext | None = None,
    bins: int = 20,
) -> list[NeuronCard]:
    """One card per neuron of ``captured`` (``lenses`` in the same order; ``sources[e]`` names example ``e``'s
    source: ``identification``, ``control`` or ``nlu``)."""
    context = context or CardContext()
    stats = _stats(captured, examples, sources)
    edges, counts = histograms(captured.example_max, bins)
    density = captured.active.double() / max(captured.positions, 1)
    overall = captured.example_max.nan_to_num(nan=float("-inf")).amax(0)
    decoded: dict[int, list[str]] = {}

    def decode(e: int) -> list[str]:
        if e not in decoded:
            decoded[e] = tokenizer.batch_decode([[t] for t in captured.tokens[e]])
        return decoded[e]

    cards = []
    for j, ref in enumerate(captured.neurons):
        lens = lenses[j]
        source_stats = tuple(
            SourceStat(name, n, _value(float(mean[j])), _value(float(peak[j])))
            for name, (n, mean, peak) in stats["source"].items()
            if n
        )
        attribution = context.attribution.get(ref, {})
        countries = tuple(
            CountryStat(
                c,
                n,
                _value(float(mean[j])),
                None if stats["control"][c] is None else _value(float(stats["control"][c][j])),
                attribution.get(c),
            )
            for c, (n, mean, _others) in stats["country"].items()
        )
        means = {s.source: s.mean for s in source_stats}
        effect = context.effects.get(ref)
        card = NeuronCard(
            ref.site,
            ref.layer,
            ref.index,
            sets=tuple(context.memberships.get(ref, ())),
            frequency=dict(context.frequency.get(ref, {})),
            through=lens.through,
            lens_note=lens.note,
            promoted=lens.promoted,
            suppressed=lens.suppressed,
            top_examples=_hits(captured, j, examples, sources, decode),
            countries=countries,
            sources=source_stats,
            control_ratio=_ratio(means.get("identification"), means.get("control")),
            nlu_ratio=_ratio(means.get("identification"), means.get("nlu")),
            max_activation=_value(float(overall[j])) if math.isfinite(float(overall[j])) else None,
            density=float(density[j]) if captured.positions else None,
            positions=captured.positions,
            histogram=Histogram(tuple(edges[j].tolist()), tuple(counts[j].tolist())),
            effect=None if effect is None else float(effect[0]),
            effect_stratum=None if effect is None else effect[1],
        )
        others = {c: _value(float(o[j])) for c, (_n, _m, o) in stats["country"].items()}
        cards.append(replace(card, summary=summary_line(card, others)))
    return cards


def _tokens(tokens: Sequence[Any], n: int = 3) -> str:
    return ", ".join(repr(t.token) for t in tokens[:n])


def summary_line(card: NeuronCard, others: Mapping[str, float | None] | None = None) -> str:
    """The card's one line, computed from its numbers: what it promotes, where it fires most, culture against
    control, and what zeroing it does (each part only when its numbers exist).

    ``others[c]`` is the mean activation on the identification examples of every country but ``c``.
    """
    parts = [f"promotes {_tokens(card.promoted)}" if card.promoted else "no output direction"]
    ranked = sorted((c for c in card.countries if c.mean is not None), key=lambda c: -c.mean)
    if len(ranked) > 1:
        top = ranked[0]
        rest = (others or {}).get(top.country)
        ratio = _ratio(top.mean, rest)
        if ratio is not None and f"{ratio:.1f}" == "1.0":  # at the precision shown, no country stands out
            parts.append(f"fires about alike on every country's questions ({top.country} highest, {ratio:.2f}×)")
        elif ratio is not None:
            parts.append(f"fires most on {top.country} questions, {ratio:.1f}× its mean on the others")
        else:
            parts.append(f"fires most on {top.country} questions (mean {top.mean:.3g}, others {_num(rest)})")
    ident, control = card.source("identification"), card.source("control")
    if card.control_ratio is not None:
        r = card.control_ratio
        if f"{r:.1f}" == "1.0" or f"{1 / r:.1f}" == "1.0":
            parts.append(f"about as much on culture as on control items ({r:.2f}×)")
        else:
            parts.append(
                f"{r:.1f}× more on culture than on control items"
                if r >= 1
                else f"{1 / r:.1f}× less on culture than on control items"
            )
    elif ident and control and ident.mean is not None and control.mean is not None:
        parts.append(f"mean {ident.mean:.3g} on culture vs {control.mean:.3g} on control items")
    if card.effect is not None:
        verb = "lowers" if card.effect >= 0 else "raises"
        parts.append(f"zeroing it {verb} p by {abs(card.effect):.2g}")
    return "; ".join(parts)


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"
