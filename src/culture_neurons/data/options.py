"""Typed benchmark options: each benchmark declares what it takes, and every value is checked once.

A :class:`BenchmarkOption` is the one source of truth for an option: its name, type, default, the
values or range it accepts and a line of help. :func:`resolve_options` turns what a user gave (strings
from ``--option KEY=VALUE``, typed values from a config's ``[data] options``) into typed values, with
the defaults filled in, before any work starts; a loader then reads ``request.options[name]`` as is.
Every failure is one :class:`~culture_neurons.errors.InputError` naming the benchmark, the option and
what it accepts.
"""

from __future__ import annotations

import math
import re
import reprlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InputError

OPTION_TYPES = (int, float, bool, str)
# ASCII digits only: int() and float() also take other scripts' digits and "1_000", which no one
# types on purpose and which would make a config mean different things to different readers.
_INT = re.compile(r"[+-]?[0-9]+", re.ASCII)
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", re.ASCII)
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")

_shown = reprlib.Repr()
_shown.maxstring = 60
_shown.maxother = 60


def shown(value: Any) -> str:
    """``repr(value)``, shortened, for an error message (escapes keep it on one line)."""
    return _shown.repr(value)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclass(frozen=True)
class BenchmarkOption:
    """One option a benchmark takes (``--option NAME=VALUE``, or ``[data] options`` in a config).

    Attributes:
        name: the key (a Python identifier).
        type: ``int``, ``float``, ``bool`` or ``str``.
        default: the value used when the option is not given (of ``type``, and accepted).
        help: one line saying what the option does.
        choices: for a ``str`` option, the values it accepts (empty: any non-empty string).
        min: for a number, the smallest value accepted (inclusive; ``None``: no bound).
        max: for a number, the largest value accepted (inclusive; ``None``: no bound).
    """

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None

    def __post_init__(self) -> None:
        # A bad declaration is a bug in the benchmark module: fail at import, not on a user's run.
        if not self.name.isidentifier():
            raise ValueError(f"option name {self.name!r} must be an identifier")
        if self.type not in OPTION_TYPES:
            raise ValueError(f"option {self.name}: type must be one of int, float, bool, str")
        if self.choices and self.type is not str:
            raise ValueError(f"option {self.name}: only str options take choices")
        if (self.min is not None or self.max is not None) and self.type not in (int, float):
            raise ValueError(f"option {self.name}: only number options take a range")
        if not self.help.strip() or "\n" in self.help:
            raise ValueError(f"option {self.name}: help must be one non-empty line")
        try:
            ok = self.convert(self.default, "declaration") == self.default
        except InputError:
            ok = False
        if not ok:
            raise ValueError(f"option {self.name}: default {self.default!r} is not {self.accepts()}")

    def accepts(self) -> str:
        """What the option accepts, in words (``an integer >= 1``, ``one of all, country``)."""
        if self.type is bool:
            return "true or false"
        if self.type is str:
            return f"one of {', '.join(self.choices)}" if self.choices else "a non-empty string"
        noun = "an integer" if self.type is int else "a number"
        if self.min is not None and self.max is not None:
            return f"{noun} from {_number(self.min)} to {_number(self.max)}"
        if self.min is not None:
            return f"{noun} >= {_number(self.min)}"
        if self.max is not None:
            return f"{noun} <= {_number(self.max)}"
        return noun if self.type is int else "a finite number"

    def describe(self) -> str:
        """``name=default (accepts): help``, one line, for ``data list`` and ``data info``."""
        default = str(self.default).lower() if self.type is bool else self.default
        return f"{self.name}={default} ({self.accepts()}): {self.help}"

    def convert(self, raw: Any, benchmark: str) -> Any:
        """``raw`` (a string from the command line, or a typed value from a config) as this option's type.

        Raises:
            InputError: ``raw`` is not of the type, not among the choices, or out of range; the message
                names ``benchmark``, the option and what it accepts.
        """
        value = self._typed(raw)
        if value is None or not self._in_range(value):
            raise InputError(f"{benchmark}: option {self.name} must be {self.accepts()}, got {shown(raw)}")
        return value

    def _typed(self, raw: Any) -> Any:
        """The value as ``self.type``, or ``None`` when it is not one."""
        text = raw.strip() if isinstance(raw, str) else None
        if self.type is bool:
            if isinstance(raw, bool):
                return raw
            low = text.lower() if text is not None else None
            return True if low in _TRUE else False if low in _FALSE else None
        if self.type is str:
            if text is None or not text:
                return None
            return text if not self.choices or text in self.choices else None
        if isinstance(raw, bool):  # a bool is an int to Python, never a number to a user
            return None
        if self.type is int:
            if isinstance(raw, int):
                return raw
            if text is None or not _INT.fullmatch(text):
                return None
            try:
                return int(text)
            except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
                return None
        if not isinstance(raw, (int, float)) and (text is None or not _FLOAT.fullmatch(text)):
            return None
        try:
            number = float(raw if text is None else text)
        except OverflowError:  # an integer beyond float's range
            return None
        return number if math.isfinite(number) else None

    def _in_range(self, value: Any) -> bool:
        if self.min is not None and value < self.min:
            return False
        return self.max is None or value <= self.max


def summary(options: Sequence[BenchmarkOption]) -> str:
    """The options of a benchmark on one line: ``max_variants (an integer >= 1; default 5), ...``."""
    return ", ".join(f"{o.name} ({o.accepts()}; default {o.default})" for o in options)


def resolve_options(benchmark: str, declared: Sequence[BenchmarkOption], given: Mapping[str, Any]) -> dict[str, Any]:
    """Every declared option of ``benchmark`` as a typed value: the ones in ``given`` converted and
    checked, the others at their defaults. An unknown key is an :class:`InputError` listing the known ones."""
    known = {o.name: o for o in declared}
    for key in given:
        if key not in known:
            takes = f"its options: {summary(declared)}" if declared else "it takes no options"
            raise InputError(f"{benchmark}: unknown option {shown(key)}; {takes}")
    return {name: o.convert(given[name], benchmark) if name in given else o.default for name, o in known.items()}


def parse_pairs(pairs: Iterable[str], flag: str = "--option") -> dict[str, str]:
    """``("max_variants=5", ...)`` from the command line as ``{"max_variants": "5"}`` (values still text).

    Dashes in a key become underscores (``max-variants`` = ``max_variants``). A pair without ``=`` or
    with an empty key, and a key given twice, are errors naming ``flag``.
    """
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise InputError(f"{flag} {shown(pair)} must look like KEY=VALUE, e.g. max_variants=5")
        if key in out:
            raise InputError(f"{flag} {key} is given twice ({shown(out[key])} and {shown(value.strip())})")
        out[key] = value.strip()
    return out


__all__ = ["OPTION_TYPES", "BenchmarkOption", "parse_pairs", "resolve_options", "shown", "summary"]
