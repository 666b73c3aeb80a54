"""The ``[evaluate]`` keys of the random-set comparisons: the cross-culture experiment's relatedness table and
random sets per country, and how many of the ablation's random sets the NLU benchmarks see (their own module:
:mod:`.sections` is near its size limit).

``related``: groups of related countries (``[["UK", "USA"], ["Spain", "Mexico"]]``); left out, the
default table :data:`~culture_neurons.evaluation.related.DEFAULT_RELATED`; ``[]`` relates no
country (the related-culture claim is then not tested). ``cross_culture_random``: how many
layer-matched random sets of each country's size cross-culture also suppresses (0: none), each on its
country's questions only. ``nlu_random``: the ablation's (and enhancement's) first ``nlu_random`` random sets
are evaluated on every benchmark, the others on the non-NLU ones only (None: every set on every benchmark); the
replication preset ranks the cultural drop among 100 random sets and gives the NLU side's interval from 20.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

from ..errors import ConfigError, CultureNeuronsError
from ..evaluation.country_random import DEFAULT_PER_COUNTRY
from ..evaluation.related import check_groups

#: ``(name, type, field)`` of each key, as :func:`~.sections.options_section` takes a section's own keys.
CROSS_CULTURE_KEYS: list[tuple[str, Any, Any]] = [
    ("related", list[list[str]] | None, field(default=None)),
    ("cross_culture_random", int, field(default=DEFAULT_PER_COUNTRY)),
    ("nlu_random", int | None, field(default=None)),
]


def related_groups(section: Any) -> tuple[tuple[str, ...], ...]:
    """The relatedness table of an ``[evaluate]`` section, every name resolved (the default when left out)."""
    try:
        return check_groups(section.related, "evaluate.related")
    except CultureNeuronsError as exc:
        raise ConfigError(f"config key {exc}") from None


def check_cross_culture(section: Any) -> None:
    """Value checks of the keys; raises :class:`ConfigError` naming the key."""
    related_groups(section)
    if section.nlu_random is not None and section.nlu_random < 0:
        raise ConfigError(f"config key 'evaluate.nlu_random' must be 0 or more, got {section.nlu_random}")
    if section.cross_culture_random < 0:
        raise ConfigError(
            f"config key 'evaluate.cross_culture_random' must be 0 or more, got {section.cross_culture_random}"
        )
