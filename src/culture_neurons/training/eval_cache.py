"""Cached evaluation rows per condition (``base`` and every trained module set) under ``out/eval``."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..data.example import Example
from ..evaluation.api import evaluate as run_eval
from ..evaluation.api import read_rows, write_rows
from ..evaluation.scorers import EvalOptions
from ..fileio import sha256_json, write_json_atomic
from ..models.loading import model_identity


class ConditionEvaluations:
    """Each condition's rows (``base`` and every trained set), cached in ``out/eval/<condition>.parquet``.

    Cached rows are reused only for the same benchmarks, evaluation options and base model.
    """

    def __init__(
        self,
        out: Path,
        model: str | os.PathLike,
        loaded: Any,
        benches: dict[str, list[Example]] | None,
        opts: EvalOptions,
        conditions: Sequence[str],
        *,
        progress: bool,
        chat_template: bool,
        dtype: str | None,
        resume: bool,
    ) -> None:
        """Stamp ``out/eval/conditions.json``; drop cached rows it no longer matches (or all when not ``resume``)."""
        self.folder = out / "eval"
        self.benches, self.opts, self.progress = benches, opts, progress
        self.cached = {c: self.folder / f"{c}.parquet" for c in conditions}
        self.frames: dict[str, pd.DataFrame] = {}
        if not benches:
            return
        stamp = {
            "options": opts.to_dict(),
            "benchmarks": sha256_json({k: [ex.id for ex in v] for k, v in benches.items()}),
            "chat_template": chat_template,
            "model": str(model),
            "dtype": dtype,
            "model_config_sha256": model_identity(loaded)["config_sha256"],
        }
        stamp_path = self.folder / "conditions.json"
        try:
            fresh = json.loads(stamp_path.read_text(encoding="utf-8")) != json.loads(json.dumps(stamp))
        except (OSError, ValueError):
            fresh = True
        if fresh or not resume:
            for path in self.cached.values():
                path.unlink(missing_ok=True)
            write_json_atomic(stamp_path, stamp)

    def has(self, condition: str) -> bool:
        """True when ``condition`` needs no evaluation (cached, or no benchmarks)."""
        return not self.benches or self.cached[condition].is_file()

    def forget(self, condition: str) -> None:
        """Drop ``condition``'s cached rows (its model is about to change)."""
        self.cached[condition].unlink(missing_ok=True)

    def run(self, condition: str, model: Any, tokenizer: Any, use_cache: bool) -> None:
        """Evaluate ``model`` as ``condition`` (or read its cached rows) and keep the frame."""
        if not self.benches:
            return
        if use_cache and self.cached[condition].is_file():
            self.frames[condition] = read_rows(self.cached[condition])
            return
        frame = run_eval(
            model, tokenizer, self.benches, options=self.opts, n_boot=0, progress=self.progress
        ).rows.copy()
        frame["condition"] = condition
        write_rows(frame, self.cached[condition])
        self.frames[condition] = frame
