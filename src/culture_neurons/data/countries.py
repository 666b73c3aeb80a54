"""One canonical list of country (and region) names, with the spellings each benchmark uses.

Every benchmark row names its country in its own way: BLEnD writes ``US`` and ``South_Korea``,
CulturalBench ``United States``, NormAd ``united_states_of_america``, WorldValuesBench ``Great
Britain``. :func:`resolve_country` maps all of them onto one canonical key, which becomes the
example's ``group``. A name that matches nothing is an error, never a new group: a typo must not
silently split a country in two.
"""

from __future__ import annotations

import difflib
import re

from ..errors import InputError
from .country_table import BENCHMARK_ALIASES, BLEND_COUNTRIES, COUNTRIES, TARGET_COUNTRIES, Country

__all__ = [
    "BENCHMARK_ALIASES",
    "BLEND_COUNTRIES",
    "COUNTRIES",
    "TARGET_COUNTRIES",
    "Country",
    "all_countries",
    "country_name",
    "display_name",
    "get_country",
    "normalize_name",
    "resolve_countries",
    "resolve_country",
]

_BY_KEY: dict[str, Country] = {c.key: c for c in COUNTRIES}


def normalize_name(name: str) -> str:
    """Lower-case, ``_``/``-`` to spaces, dots and a leading ``the`` dropped, spaces collapsed."""
    s = str(name).strip().lower().replace("_", " ").replace("-", " ").replace(".", "")
    s = re.sub(r"\s+", " ", s).strip()
    if s.startswith("the "):
        s = s[4:]
    return s


def _build_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for c in COUNTRIES:
        for spelling in (c.key, c.name, c.option, *c.aliases):
            norm = normalize_name(spelling)
            if norm in table and table[norm] != c.key:  # pragma: no cover - guarded by a test
                raise AssertionError(f"country spelling {spelling!r} is ambiguous")
            table[norm] = c.key
    return table


_TABLE = _build_table()


def all_countries() -> tuple[Country, ...]:
    """Every known country and region."""
    return COUNTRIES


def get_country(key: str) -> Country:
    """The :class:`Country` of a canonical key (or any spelling of it)."""
    return _BY_KEY[resolve_country(key)]


def resolve_country(name: str, benchmark: str | None = None, where: str | None = None) -> str:
    """Map any known spelling of a country to its canonical key.

    ``benchmark`` selects that benchmark's own aliases first. ``where`` (a file and row) is put in
    front of the error message. An unknown name raises :class:`InputError` with close matches.
    """
    raw = "" if name is None else str(name)
    if benchmark and raw.strip() in BENCHMARK_ALIASES.get(benchmark, {}):
        return BENCHMARK_ALIASES[benchmark][raw.strip()]
    norm = normalize_name(raw)
    if norm in _TABLE:
        return _TABLE[norm]
    if benchmark:
        by_norm = {normalize_name(k): v for k, v in BENCHMARK_ALIASES.get(benchmark, {}).items()}
        if norm in by_norm:
            return by_norm[norm]
    close = difflib.get_close_matches(norm, list(_TABLE), n=3, cutoff=0.75)
    hint = f"; did you mean {', '.join(repr(_TABLE[c]) for c in close)}?" if close else ""
    prefix = f"{where}: " if where else ""
    raise InputError(
        f"{prefix}unknown country {raw!r}{hint} (countries are never created from data; "
        "use a name from `culture-neurons data countries`)"
    )


def resolve_countries(names: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...] | None:
    """Resolve a user's country filter (a list, or one comma-separated string); ``None`` stays ``None``.

    The special names ``targets`` (the paper's 8) and ``blend`` (BLEnD's 16) expand to their lists.
    """
    if names is None:
        return None
    if isinstance(names, str):
        names = [names]
    out: list[str] = []
    for entry in names:
        for part in str(entry).split(","):
            part = part.strip()
            if not part:
                continue
            if part.lower() == "targets":
                out.extend(TARGET_COUNTRIES)
            elif part.lower() == "blend":
                out.extend(BLEND_COUNTRIES)
            else:
                out.append(resolve_country(part, where="--countries"))
    return tuple(dict.fromkeys(out))


def country_name(key: str) -> str:
    """How a country reads inside a sentence (``"the United Kingdom"``)."""
    return _BY_KEY[key].name


def display_name(group: str) -> str:
    """A group as it reads in a sentence: the country's running-text name, or the group itself."""
    country = _BY_KEY.get(group)
    return country.name if country else group
