"""Each country's culture-specific set against random sets of its size, on its own country's questions.

"Suppressing Korea's neurons hurts Korea most" says little until it is compared with what any set of
that size does to Korea. For each suppressed country ``c`` the cross-culture experiment also
suppresses ``m`` random sets drawn like ``c``'s set (same per-pool size, and with
``layer_matched`` the same per-layer counts: :func:`~culture_neurons.selection.randomsets.select_random`),
and compares them on ``c``'s own questions with :func:`~.metrics.compare_to_random`: the excess
(set minus the mean random set, points), its rank among the random sets with the Monte-Carlo p, the
two-level CI over items and random sets, and the detectable excess.

The pooled row averages the countries: the excess is the mean of the countries' excesses; its
standard error combines theirs (the countries' questions are disjoint, so independent); its rank
compares the mean of the countries' set changes with ``m`` pooled random replicates, replicate
``s`` being the mean over countries of each one's ``s``-th random set's change (the countries'
random sets are drawn independently, so each replicate is one draw of "random sets of these sizes").

A country's ``s``-th random set is drawn with seed :func:`country_random_seed` ``(c, s)``, a hash of
the country and ``s``: two countries whose sets have the same layer profile still get different
draws, and adding or dropping a country never changes another's sets.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from ..selection.neuronset import NeuronSet
from ..selection.randomsets import select_random
from .metrics import compare_to_random, rank_among_random
from .power import z_factor

DEFAULT_PER_COUNTRY = 3  # the API's default: a first look; 20 or more for a rank p that can reach 0.05
Z95 = 1.959963984540054


def country_random_seed(country: str, index: int) -> int:
    """The seed of ``country``'s ``index``-th random set: the first 4 bytes (big-endian) of the SHA-256 of
    ``cross-culture:<country>:<index>``."""
    digest = hashlib.sha256(f"cross-culture:{country}:{int(index)}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def country_random_set(country: str, like: NeuronSet, index: int, layer_matched: bool = True) -> NeuronSet:
    """``country``'s ``index``-th random set, the size of its set ``like`` (and with its per-layer counts)."""
    if like.num_layers is None or like.widths is None:
        raise InputError(
            f"the culture-specific set of {country} does not record its model's shape, so no random set of its size "
            "can be drawn; pass random_sets=0 (cross-culture without random sets)"
        )
    return select_random(like, country_random_seed(country, index), layer_matched=layer_matched)


def country_random_sets(country: str, like: NeuronSet, count: int, layer_matched: bool = True) -> list[NeuronSet]:
    """``count`` random sets the size of ``country``'s set ``like`` (index ``0 .. count - 1``)."""
    if count < 0:
        raise InputError(f"random sets per country must be 0 or more, got {count}")
    return [country_random_set(country, like, i, layer_matched) for i in range(count)]


def own_country_blocks(
    original: Mapping[str, np.ndarray],
    target: Mapping[str, np.ndarray],
    randoms: Mapping[str, np.ndarray],
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """``{country: compare_to_random block}`` on each country's own items, and the ``pooled`` row.

    Args:
        original, target: per-item scores on each country's own items, without and with its set suppressed.
        randoms: per-item scores under each of its random sets, ``[m, n]``.
    """
    per = {c: compare_to_random(original[c], target[c], randoms[c], n_boot, seed) for c in randoms}
    per = {c: b for c, b in per.items() if b.get("n")}
    return {"per_country": per, "pooled": pooled(per)}


def pooled(blocks: Mapping[str, Mapping[str, Any]]) -> dict[str, Any] | None:
    """The mean over countries of each one's excess vs its random sets (points), with a normal CI from the
    countries' two-level standard errors, the rank among pooled random replicates, and the MDE."""
    usable = {c: b for c, b in blocks.items() if b.get("excess_ci_two_level")}
    if not usable:
        return None
    excess = [b["excess_ci_two_level"]["value"] for b in usable.values()]
    ses = [b["excess_ci_two_level"].get("se") for b in usable.values()]
    k = len(usable)
    value = float(np.mean(excess))
    se = math.sqrt(sum(s * s for s in ses)) / k if all(s is not None for s in ses) else None
    m = min(len(b["random_changes"]) for b in usable.values())
    target = float(np.mean([b["change"]["value"] for b in usable.values()]))
    replicates = [float(np.mean([b["random_changes"][s] for b in usable.values()])) for s in range(m)]
    return {
        "value": value,
        "ci_low": None if se is None else value - Z95 * se,
        "ci_high": None if se is None else value + Z95 * se,
        "se": se,
        "change": target,
        "random_changes": replicates,
        **rank_among_random(target, replicates),
        "mde": z_factor() * se if se else None,
        "countries": k,
        "n": int(sum(int(b["n"]) for b in usable.values())),
    }


def labels_by_country(
    labels: Sequence[str], label_of: Callable[[str, int], str], countries: Sequence[str]
) -> dict[str, list[str]]:
    """``{country: its random-set labels, index 0, 1, ...}`` among ``labels``, where ``label_of(country, index)``
    is the label of a country's random set (the indices found are those from 0 up to the first missing one)."""
    present = set(labels)
    out: dict[str, list[str]] = {}
    for c in countries:
        found, i = [], 0
        while label_of(c, i) in present:
            found.append(label_of(c, i))
            i += 1
        if found:
            out[c] = found
    return out
