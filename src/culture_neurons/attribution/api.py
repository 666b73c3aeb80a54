"""File-level scoring: read examples, load the model, score, write the table (what the CLI calls)."""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..chance import chance_level
from ..data.example import Example, read_examples
from ..data.sampling import Caps
from ..errors import Interrupted, ScoringError
from ..fileio import (
    check_input_file,
    ensure_writable_parent,
    refuse_overwriting_inputs,
    remove_stale_temps,
)
from ..models.adapters import text_config
from ..models.load_options import LoadOptions
from .engine import ScoringOptions, score_examples
from .scoretable import ScoreTable

log = logging.getLogger(__name__)
# Targets whose p is the probability of one option among several, so 1/#options is chance.
CHANCE_TARGETS = ("label", "choice")


def check_context_length(model: Any, tokenizer: Any, examples: Sequence[Example], options: ScoringOptions) -> None:
    """Refuse, before any scoring, an example whose prompt and answer do not fit the model's context.

    Scoring past the context would either crash halfway through a long run or, with some position
    encodings, silently score garbage; the error names the first example that does not fit.
    """
    from .batching import target_rows

    limit = getattr(text_config(getattr(model, "config", None)), "max_position_embeddings", None)
    if not isinstance(limit, int) or limit <= 0:
        return
    rows = target_rows(tokenizer, examples, options.target, options.chat_template)
    for ex, ex_rows in zip(examples, rows):
        longest = max((len(r.input_ids) for r in ex_rows), default=0)
        if longest > limit:
            raise ScoringError(
                f"example {ex.id!r}: prompt and answer are {longest} tokens, "
                f"longer than the model's context of {limit} tokens; "
                "shorten or drop it (nothing was scored)"
            )


def _inputs(
    model: str | os.PathLike, examples: str | os.PathLike, site_map: str | os.PathLike | None
) -> dict[str, Any]:
    local_model = Path(model) if Path(model).exists() else None
    return {"--examples": examples, "--model": local_model, "--site-map": site_map}


def score_file(
    model: str | os.PathLike,
    examples: str | os.PathLike,
    out: str | os.PathLike,
    *,
    load: LoadOptions | None = None,
    site_map: str | os.PathLike | None = None,
    progress: bool = True,
    checkpoint_every: int = 20,
    caps: Caps | None = None,
    means: Mapping[str, Any] | None = None,
    **options: Any,
) -> ScoreTable:
    """Score an examples JSONL file with a model and write the ScoreTable to ``out`` atomically.

    Inputs are checked (output folder writable and not one of the inputs, device known, every JSONL
    line valid, every prompt within the model's context) before any scoring, so mistakes surface in
    seconds. ``load`` places the model (dtype, device, device_map, max_memory, revision); ``caps``
    (max_per_group, limit, seed) cap the examples as the config's keys do. ``options`` are
    :class:`ScoringOptions` fields (``method`` among them: docs/methods.md); ``means`` is the mean
    baseline of ``atp-mean`` and ``ig_baseline="mean"`` (default: computed on the examples).
    Progress is checkpointed to ``<out>.ckpt`` every ``checkpoint_every`` batches (0 disables it)
    and when SIGTERM/SIGINT arrives; rerunning the same
    command after a crash or preemption resumes from there. Under ``torchrun`` each rank scores its
    shard and rank 0 writes the table. For ``label``/``choice`` targets the examples' chance level is
    recorded in the table's metadata (``chance_level``).
    """
    from ..distributed import init_from_env, is_main, local_device
    from ..models.loading import describe_loaded, load_model, validate_device

    out = ensure_writable_parent(out)
    checkpoint = Path(f"{out}.ckpt") if checkpoint_every > 0 else None
    refuse_overwriting_inputs({"--out": out, "the checkpoint": checkpoint}, _inputs(model, examples, site_map))
    opts = ScoringOptions(**options)
    opts.validate()
    load = load or LoadOptions()
    if load.device_map is None:
        validate_device(load.device)
    check_input_file(examples, "examples file")
    exs = (caps or Caps()).apply(read_examples(examples))
    for stale in [out] + ([checkpoint] if checkpoint else []):
        remove_stale_temps(stale)
    resume = (
        f"rerun the same command to resume from {checkpoint}" if checkpoint else "rerun the same command to start over"
    )
    try:
        init_from_env(load.device)
        start = time.perf_counter()
        loaded, tokenizer = load_model(
            model, **{**load.kwargs(), "device": local_device(load.device)}, progress=progress
        )
        log.info("%s (in %.1f s)", describe_loaded(loaded), time.perf_counter() - start)
        check_context_length(loaded, tokenizer, exs, opts)
        table = score_examples(
            loaded,
            tokenizer,
            exs,
            opts,
            site_map=site_map,
            progress=progress,
            checkpoint=checkpoint,
            checkpoint_every=max(checkpoint_every, 1),
            means=means,
        )
    except Interrupted as exc:
        raise exc.with_kept(resume if exc.kept else f"nothing was scored yet; {resume}") from None
    chance = chance_level(exs) if opts.target in CHANCE_TARGETS else float("nan")
    if math.isfinite(chance):
        table.meta["chance_level"] = chance
    if is_main():
        table.save(Path(out))
    return table
