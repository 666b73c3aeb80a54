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
    max_memory: str | dict | None = None,
    site_map: str | os.PathLike | None = None,
    progress: bool = True,
    checkpoint_every: int = 20,
    **options: Any,
) -> ScoreTable:
    """Score an examples JSONL file with a model and write the ScoreTable to ``out`` atomically.

    Inputs are checked (output folder writable, every JSONL line valid) before the model loads, so
    mistakes surface in seconds. ``options`` are :class:`ScoringOptions` fields. Progress is
    checkpointed to ``<out>.ckpt`` every ``checkpoint_every`` batches (0 disables it); rerunning the
    same command after a crash or preemption resumes from there. Under ``torchrun`` each rank scores
    its shard and rank 0 writes the table.
    """
    from ..distributed import init_from_env, is_main, local_device
    from ..models.loading import load_model

    out = ensure_writable_parent(out)
    exs = read_examples(examples)
    opts = ScoringOptions(**options)
    opts.validate()
    init_from_env(device)
    device = local_device(device)
    start = time.perf_counter()
    loaded, tokenizer = load_model(
        model, dtype=dtype, device=device, device_map=device_map, max_memory=max_memory, progress=progress
    )
    log.info("loaded %s in %.1f s", model, time.perf_counter() - start)
    checkpoint = Path(f"{out}.ckpt") if checkpoint_every > 0 else None
    table = score_examples(
        loaded,
        tokenizer,
        exs,
        opts,
        site_map=site_map,
        progress=progress,
        checkpoint=checkpoint,
        checkpoint_every=max(checkpoint_every, 1),
    )
    if is_main():
        table.save(Path(out))
    return table
