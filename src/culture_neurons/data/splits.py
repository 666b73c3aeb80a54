"""Identification / held-out splits (DESIGN.md, "Splits").

Neurons are found on the identification part and effects are measured on the held-out part.

| Benchmark | Identification | Held-out |
|---|---|---|
| BLEnD (and the demo culture set) | topics Food, Work life, Sport | Education, Family, Holidays/Celebration/Leisure |
| CulturalBench | first half of each country's questions | second half |
| NormAd | first half of each (country, label) | second half |
| WorldValuesBench | per country, the 40 questions whose answers diverge most (KL) from all countries' | the rest |
| CountryRC | first half of the passages | second half |

NLU sets (CommonsenseQA, QNLI, MRPC) are evaluation-only: every example is ``heldout``.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import TypeVar

IDENTIFICATION = "identification"
HELDOUT = "heldout"
TRAIN = "train"
SPLITS = (IDENTIFICATION, HELDOUT)

#: BLEnD topics of the identification part; every other topic is held out.
IDENTIFICATION_TOPICS = ("Food", "Work life", "Sport")

T = TypeVar("T")


def topic_split(topic: str) -> str:
    """BLEnD's topic split. Topic names are compared case-insensitively."""
    norm = topic.strip().lower()
    if norm in {t.lower() for t in IDENTIFICATION_TOPICS}:
        return IDENTIFICATION
    return HELDOUT


def first_half_split(keys: Sequence[Hashable]) -> dict[Hashable, str]:
    """First half (rounded up) of the distinct keys, in order of appearance, is identification."""
    distinct = list(dict.fromkeys(keys))
    cut = (len(distinct) + 1) // 2
    return {k: (IDENTIFICATION if i < cut else HELDOUT) for i, k in enumerate(distinct)}


def half_split_by(
    items: Iterable[T], stratum: Callable[[T], Hashable], key: Callable[[T], Hashable]
) -> dict[Hashable, str]:
    """Within each stratum (e.g. country, or (country, label)), split its distinct keys in half.

    Order of first appearance decides, so the split follows the file's order.
    """
    per: dict[Hashable, list[Hashable]] = defaultdict(list)
    for it in items:
        per[stratum(it)].append(key(it))
    out: dict[Hashable, str] = {}
    for keys in per.values():
        out.update(first_half_split(keys))
    return out


def kl_divergence(p: Mapping[Hashable, float], q: Mapping[Hashable, float], eps: float = 1e-6) -> float:
    """KL(p || q) over the union of supports, with ``eps`` smoothing on both sides."""
    support = sorted(set(p) | set(q), key=str)
    ps = [p.get(s, 0.0) + eps for s in support]
    qs = [q.get(s, 0.0) + eps for s in support]
    zp, zq = sum(ps), sum(qs)
    return sum((a / zp) * math.log((a / zp) / (b / zq)) for a, b in zip(ps, qs))


def distribution(counts: Counter) -> dict[Hashable, float]:
    """Normalise counts to probabilities."""
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items()} if total else {}


def kl_split(country_counts: Mapping[str, Mapping[str, Counter]], top_k: int = 40) -> dict[tuple[str, str], str]:
    """WorldValuesBench's split.

    ``country_counts[country][question]`` counts that country's answers. For each country, the
    ``top_k`` questions with the largest KL(country || all countries) are identification, the rest
    held-out. Ties go to the question that comes first.
    """
    pooled: dict[str, Counter] = defaultdict(Counter)
    for per_q in country_counts.values():
        for q, c in per_q.items():
            pooled[q].update(c)
    pooled_dist = {q: distribution(c) for q, c in pooled.items()}
    out: dict[tuple[str, str], str] = {}
    for country, per_q in country_counts.items():
        scored = [(-kl_divergence(distribution(c), pooled_dist[q]), i, q) for i, (q, c) in enumerate(per_q.items())]
        scored.sort()
        chosen = {q for _, _, q in scored[:top_k]}
        for q in per_q:
            out[(country, q)] = IDENTIFICATION if q in chosen else HELDOUT
    return out
