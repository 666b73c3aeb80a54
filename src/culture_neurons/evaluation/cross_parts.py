"""The two blocks the cross-culture summary adds to its matrix (related cultures, and each country against
random sets of its size), and the checked ``{country: set}`` of :func:`~.experiments.run_cross_culture`.

The blocks read the condition table of :func:`~.experiments.condition_table` (one row per (benchmark, id),
one column per condition) and each row's country, so that :func:`~.experiments.cross_culture_summary`
stays a list of what the summary holds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from ..selection.neuronset import NeuronSet
from . import plan as planner
from .country_random import labels_by_country, own_country_blocks
from .related import check_groups, related_effect, related_to


def specific_by_country(specific_sets: Mapping[str, NeuronSet] | Sequence[NeuronSet], op: str) -> dict[str, NeuronSet]:
    """``{country: set}`` of :func:`~.experiments.run_cross_culture`'s sets (a list names each country in its kind,
    ``specific:<country>``); raises :class:`InputError` for no sets, a set that is not culture-specific, or an empty
    one."""
    if isinstance(specific_sets, Mapping):
        sets = {str(k): v for k, v in specific_sets.items()}
    else:
        sets = {}
        for ns in specific_sets:
            if not ns.kind.startswith("specific:"):
                raise InputError(f"NeuronSet {ns.kind!r} is not a culture-specific set; pass {{country: set}} instead")
            sets[ns.kind.split(":", 1)[1]] = ns
    if not sets:
        raise InputError("no culture-specific sets given")
    empty = [c for c, ns in sets.items() if len(ns) == 0]
    if empty:
        raise InputError(f"the specific set(s) of {', '.join(empty)} are empty; there is nothing to {op}")
    return sets


def random_labels(
    labels: Sequence[str], op: str, countries: Sequence[str], given: Mapping[str, Sequence[str]] | None = None
) -> dict[str, list[str]]:
    """``{country: its random-set condition labels}``: ``given`` where the caller names them, else those of
    ``labels`` that follow the planner's ``<op>:random:<country>:<k>`` rule (k = 0, 1, ... without a gap)."""
    if given is not None:
        return {c: list(v) for c, v in given.items() if c in countries and v}
    return labels_by_country(
        labels, lambda c, k: planner.condition_label(op, planner.country_random_kind(c, k)), countries
    )


def own_country_scores(
    rows: pd.DataFrame, index: pd.Index, country_of: np.ndarray, drawn: Mapping[str, Sequence[str]]
) -> pd.DataFrame:
    """The scores of each country's random-set conditions on ``index`` (one column per label), NaN where a
    condition was not evaluated; raises :class:`InputError` when one lacks an example of its own country
    (the planner evaluates them on their country's questions only, so that is all the summary may read)."""
    labels = [x for c in drawn for x in drawn[c]]
    picked = rows[rows["condition"].isin(labels)]
    table = picked.pivot_table(index=["benchmark", "id"], columns="condition", values="score", sort=False)
    table = table.reindex(index=index, columns=labels)
    for c, group in drawn.items():
        mask = country_of == c
        short = [lab for lab in group if np.isnan(table[lab].to_numpy()[mask]).any()]
        if short:
            raise InputError(f"the random set(s) {', '.join(short)} were not evaluated on every question of {c}")
    return table


def related_block(
    scores: pd.DataFrame,
    country_of: np.ndarray,
    sets: Sequence[str],
    evals: Sequence[str],
    op: str,
    related: Sequence[Sequence[str]] | None,
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """The related-culture statistic (:func:`~.related.related_effect`) with the table it used."""
    groups = check_groups(related)
    drops = {}
    for e in evals:
        mask = country_of == e
        base = scores["original"].to_numpy()[mask]
        drops[e] = np.stack([base - scores[f"{op}:{c}"].to_numpy()[mask] for c in sets])
    return {"table": [list(g) for g in groups], **related_effect(drops, sets, related_to(groups), n_boot, seed)}


def random_block(
    scores: pd.DataFrame,
    country_of: np.ndarray,
    sets: Sequence[str],
    op: str,
    randoms: Mapping[str, Sequence[str]],
    n_boot: int,
    seed: int,
) -> dict[str, Any] | None:
    """Each country's set against its random sets on its own questions, and the pooled row (None without
    random sets)."""
    wanted = [c for c in sets if randoms.get(c) and (country_of == c).any()]
    if not wanted:
        return None
    original, target, drawn = {}, {}, {}
    for c in wanted:
        mask = country_of == c
        original[c] = scores["original"].to_numpy()[mask]
        target[c] = scores[f"{op}:{c}"].to_numpy()[mask]
        drawn[c] = np.stack([scores[label].to_numpy()[mask] for label in randoms[c]])
    blocks = own_country_blocks(original, target, drawn, n_boot, seed)
    blocks["labels"] = {c: list(randoms[c]) for c in wanted}
    return blocks
