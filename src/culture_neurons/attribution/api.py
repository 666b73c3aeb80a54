"""File-level scoring: read examples, load the model, score, write the table (what the CLI calls)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from ..data.example import read_examples
from ..fileio import ensure_writable_parent
from .engine import ScoringOptions, score_examples
from .scoretable import ScoreTable

log = logging.getLogger(__name__)


def score_file(
    model: str | os.PathLike,
    examples: str | os.PathLike,
    out: str | os.PathLike,
    *,
    dtype: str | None = None,
    device: str | None = None,
    device_map: str | None = None,
    site_map: str | os.PathLike | None = None,
    progress: bool = True,
    **options: Any,
) -> ScoreTable:
    """Score an examples JSONL file with a model and write the ScoreTable to ``out`` atomically.

    Inputs are checked (output folder writable, every JSONL line valid) before the model loads, so
    mistakes surface in seconds. ``options`` are :class:`ScoringOptions` fields.
    """
    from ..models.loading import load_model

    out = ensure_writable_parent(out)
    exs = read_examples(examples)
    opts = ScoringOptions(**options)
    opts.validate()
    start = time.perf_counter()
    loaded, tokenizer = load_model(model, dtype=dtype, device=device, device_map=device_map)
    log.info("loaded %s in %.1f s", model, time.perf_counter() - start)
    table = score_examples(loaded, tokenizer, exs, opts, site_map=site_map, progress=progress)
    table.save(Path(out))
    return table
