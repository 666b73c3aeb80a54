"""One exception family for the whole package.

Every message names the thing at fault (file and line, config key, example id, model family) and,
where one exists, the fix. The CLI prints ``str(error)`` on one line and exits non-zero.
"""

from __future__ import annotations


class CultureNeuronsError(Exception):
    """Base class of every error this package raises on purpose."""

    exit_code: int = 2


class InputError(CultureNeuronsError):
    """A user-supplied file or value is malformed (bad JSONL line, missing field, bad option)."""


class ModelLoadError(CultureNeuronsError):
    """A model or tokenizer could not be found or loaded."""


class ArchitectureError(CultureNeuronsError):
    """No adapter knows where the sites of this model live, or a site map does not fit it."""


class ScoringError(CultureNeuronsError):
    """Scoring could not produce a trustworthy table (ambiguous target, NaN gradients, ...)."""


class TableError(CultureNeuronsError):
    """A score table is unreadable or cannot be combined with another one."""
