"""``culture-neurons data``: list benchmarks and export examples (filled in by the data issue)."""

from __future__ import annotations

import click


@click.group()
def data() -> None:
    """Benchmarks: list them and export examples for scoring."""
