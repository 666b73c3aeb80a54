"""Examples, benchmark loaders, splits, and the built-in demo data."""

from .countries import BLEND_COUNTRIES, TARGET_COUNTRIES, resolve_country
from .example import Example, group_names, read_examples, write_examples
from .labels import assert_labels_ok, label_problems
from .registry import (
    Benchmark,
    ExportSummary,
    LoadRequest,
    build_examples,
    export_examples,
    get_benchmark,
    list_benchmarks,
    load_items,
    metric_of,
    register,
)
from .templates import Item, Template

__all__ = [
    "BLEND_COUNTRIES",
    "TARGET_COUNTRIES",
    "Benchmark",
    "Example",
    "ExportSummary",
    "Item",
    "LoadRequest",
    "Template",
    "assert_labels_ok",
    "build_examples",
    "export_examples",
    "get_benchmark",
    "group_names",
    "label_problems",
    "list_benchmarks",
    "load_items",
    "metric_of",
    "read_examples",
    "register",
    "resolve_country",
    "write_examples",
]
