"""Examples, benchmark loaders, splits, and the built-in demo data."""

from .example import Example, group_names, read_examples, write_examples

__all__ = ["Example", "group_names", "read_examples", "write_examples"]
