"""Parsing helpers shared by the NeuronSet and reference-format readers: JSON files, integer
fields, and a model shape given in any of its accepted forms."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ..data.readers import read_json as read_json_document
from ..errors import InputError
from ..fileio import check_input_file

# Layers and indices are stored as int64; anything beyond is a corrupt file, not a neuron.
INT64_MAX = 2**63 - 1


def as_int(value: Any) -> int:
    """``value`` as a non-huge integer (floats with integral values allowed), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or int(value) != value:
        raise ValueError(f"not an integer: {value!r}")
    if abs(int(value)) > INT64_MAX:
        raise ValueError(f"out of range: {value!r} does not fit in 64 bits")
    return int(value)


def row_problem(row: Any, keys: Sequence[str]) -> str | None:
    """Why ``row`` is not a dict with ``keys`` whose all-but-first values are integers (None if it is)."""
    if not isinstance(row, dict):
        return f"expected an object, got {type(row).__name__}"
    missing = [k for k in keys if k not in row]
    if missing:
        return f"missing {', '.join(missing)}"
    for k in keys[1:]:
        try:
            as_int(row[k])
        except (ValueError, OverflowError) as exc:
            return f"{k}: {exc}"
    return None


def read_json(path: str | os.PathLike) -> Any:
    """Parse a neuron-set JSON file; every failure is a one-line :class:`InputError` naming the file
    (a missing path, a folder or device, bad UTF-8 with its line, an empty file, malformed JSON)."""
    return read_json_document(check_input_file(path, "neuron set"))


def shape_of(shape: Any) -> tuple[int | None, dict[str, int] | None]:
    """``(num_layers, widths)`` from a ScoreTable, a ModelAdapter, a NeuronSet or a tuple."""
    if shape is None:
        return None, None
    if hasattr(shape, "widths") and hasattr(shape, "num_layers"):
        layers, widths = shape.num_layers, shape.widths
        return (None if layers is None else int(layers)), (None if widths is None else dict(widths))
    if isinstance(shape, tuple) and len(shape) == 2:
        return int(shape[0]), {str(k): int(v) for k, v in dict(shape[1]).items()}
    raise InputError(f"shape must be a ScoreTable, a ModelAdapter or (num_layers, widths), not {type(shape).__name__}")
