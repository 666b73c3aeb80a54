"""Scoring checkpoints: the accumulators after N batches, so a killed run resumes where it stopped.

A checkpoint is a safetensors file written atomically. Its metadata holds a fingerprint of
everything that decides the numbers (model, options, examples, groups, sites, rank and world size)
and the number of finished batches. Resuming replays nothing: it restores the float32 sums exactly
and continues with the next batch in the same order, so the final table is bit-identical to an
uninterrupted run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import torch

from .. import signals
from ..errors import ScoringError
from ..fileio import atomic_path, remove_stale_temps, sha256_json

_KEY = "culture_neurons_checkpoint"


class ScoringCheckpoint:
    """One rank's checkpoint file for one scoring run."""

    def __init__(self, path: str | os.PathLike, fingerprint: dict[str, Any]) -> None:
        self.path = Path(path)
        self.fingerprint = sha256_json(fingerprint)
        remove_stale_temps(self.path)  # a write killed by SIGKILL left its temporary file behind

    def load(self) -> tuple[int, dict[str, torch.Tensor], torch.Tensor, torch.Tensor] | None:
        """``(batches_done, {site: [L, G, C]}, counts, prob_sums)``, or None when there is no checkpoint."""
        from safetensors import safe_open

        if not self.path.is_file():
            return None
        if self.path.stat().st_size == 0:
            raise ScoringError(f"checkpoint {self.path} is empty; delete it to start over")
        try:
            with safe_open(str(self.path), framework="pt") as fh:
                meta = json.loads((fh.metadata() or {})[_KEY])
                tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - safe_open handles are not dicts
        except Exception as exc:
            raise ScoringError(f"checkpoint {self.path} is unreadable ({exc}); delete it to start over") from exc
        if meta.get("fingerprint") != self.fingerprint:
            raise ScoringError(
                f"checkpoint {self.path} belongs to a different scoring run "
                "(model, options, examples or world size changed); "
                "delete it or choose another output path"
            )
        sums = {k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith("sums/")}
        return int(meta["batches_done"]), sums, tensors["counts"], tensors["prob_sums"]

    def save(
        self, batches_done: int, sums: dict[str, torch.Tensor], counts: torch.Tensor, prob_sums: torch.Tensor
    ) -> None:
        from safetensors.torch import save_file

        tensors = {f"sums/{k}": v.contiguous() for k, v in sums.items()}
        tensors["counts"] = counts
        tensors["prob_sums"] = prob_sums
        meta = {_KEY: json.dumps({"fingerprint": self.fingerprint, "batches_done": batches_done})}
        with atomic_path(self.path, suffix=".safetensors") as tmp:
            save_file(tensors, str(tmp), metadata=meta)

    def remove(self) -> None:
        with suppress(FileNotFoundError):
            self.path.unlink()


def after_batch(
    saver: ScoringCheckpoint | None,
    number: int,
    total: int,
    every: int,
    state: Callable[[], tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]],
) -> None:
    """The engine's step after batch ``number`` of ``total``: checkpoint, and stop cleanly on a signal.

    Saves every ``every`` batches (not after the last one: the table follows). When SIGTERM or
    SIGINT arrived during the batch (see :func:`culture_neurons.signals.deferred`), saves now,
    whatever ``number``, and raises :class:`~culture_neurons.errors.Interrupted` saying what was kept.
    ``state`` returns ``(sums, counts, prob_sums)``; it is only called when saving.
    """
    stop = signals.pending() is not None
    if saver is not None and (stop or (number % every == 0 and number < total)):
        saver.save(number, *state())
    if stop:
        kept = (
            f"{number} of {total} batches saved to {saver.path}"
            if saver is not None
            else f"{number} of {total} batches were scored but not saved (checkpoints are off)"
        )
        signals.check(kept)
