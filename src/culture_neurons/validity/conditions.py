"""Evaluating intervention conditions on the culture and NLU sides, cached per condition.

Every condition (original, suppress a set, enhance by a factor, mean-ablate) is evaluated on all
held-out culture and NLU examples once; the per-example scores are saved to
``validity/evals/<label>-<hash>.parquet`` so an interrupted run resumes without re-evaluating.
The two sides pool their benchmarks' items: the culture drop is the mean change over every
cultural item, the NLU drop over every NLU item.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..data.example import Example
from ..evaluation.metrics import compare_to_random, mean_ci
from ..evaluation.scorers import EvalOptions, evaluate_examples
from ..intervention import intervene
from ..selection.neuronset import NeuronSet
from .claims import compute_once, is_claimed

log = logging.getLogger(__name__)

SIDES = ("culture", "nlu")


class Evaluator:
    """Per-example scores of each condition on the culture and NLU benchmarks, cached on disk."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        culture: Mapping[str, Sequence[Example]],
        nlu: Mapping[str, Sequence[Example]],
        options: EvalOptions,
        folder: Path,
        progress: bool = False,
    ) -> None:
        self.model, self.tokenizer, self.options = model, tokenizer, options
        self.benches = {
            "culture": {k: list(v) for k, v in culture.items()},
            "nlu": {k: list(v) for k, v in nlu.items()},
        }
        self.folder = folder
        self.progress = progress
        self.evaluations = 0  # conditions actually evaluated (not read from the cache)

    def _digest(self, ns: NeuronSet | None, op: str, factor: float) -> str:
        ids = {side: {b: [ex.id for ex in exs] for b, exs in benches.items()} for side, benches in self.benches.items()}
        # Suppression ignores the factor, so "suppress" with any factor is one condition.
        key = json.dumps(
            {
                "set": ns.content_hash() if ns is not None else None,
                "op": op,
                "factor": None if op == "suppress" else factor,
                "ids": ids,
                "options": asdict(self.options),
            },
            sort_keys=True,
        )
        return hashlib.sha256(key.encode()).hexdigest()[:12]

    def _path(self, label: str, ns: NeuronSet | None, op: str, factor: float) -> Path:
        return self.folder / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', label)}-{self._digest(ns, op, factor)}.parquet"

    def _cached(self, ns: NeuronSet | None, op: str, factor: float) -> Path | None:
        """A file of this condition under any label (one set can be, e.g., the default and a sweep point)."""
        hits = sorted(self.folder.glob(f"*-{self._digest(ns, op, factor)}.parquet"))
        return hits[0] if hits else None

    def scores(
        self,
        label: str,
        ns: NeuronSet | None = None,
        op: str = "suppress",
        factor: float = 2.0,
        means: Mapping[str, Any] | None = None,
    ) -> dict[str, np.ndarray]:
        """``{side: per-item scores}`` under one condition (items in benchmark order, then input order)."""
        path = self._path(label, ns, op, factor)

        def load() -> pd.DataFrame | None:
            found = self._cached(ns, op, factor)
            return pd.read_parquet(found) if found is not None else None

        # The claim is keyed by the condition, not the label, so two labels of one condition run once.
        claim = self.folder / self._digest(ns, op, factor)
        frame = compute_once(claim, load, lambda: self._evaluate(path, label, ns, op, factor, means))
        return {side: frame.loc[frame["side"] == side, "score"].to_numpy(np.float64) for side in SIDES}

    def many(
        self, requests: Sequence[tuple[str, NeuronSet | None, str, float, Mapping[str, Any] | None]]
    ) -> list[dict[str, np.ndarray]]:
        """:meth:`scores` of several conditions ``(label, set, op, factor, means)``; conditions another
        process is evaluating are left for last, so processes sharing the folder split the work."""
        out: dict[int, dict[str, np.ndarray]] = {}
        for i, (label, ns, op, factor, means) in enumerate(requests):
            if self._cached(ns, op, factor) is not None or not is_claimed(self.folder / self._digest(ns, op, factor)):
                out[i] = self.scores(label, ns, op, factor, means)
        for i, (label, ns, op, factor, means) in enumerate(requests):
            if i not in out:
                out[i] = self.scores(label, ns, op, factor, means)
        return [out[i] for i in range(len(requests))]

    def _evaluate(
        self, path: Path, label: str, ns: NeuronSet | None, op: str, factor: float, means: Mapping[str, Any] | None
    ) -> pd.DataFrame:
        frames = []
        for side, benches in self.benches.items():
            for bench, exs in benches.items():
                if not exs:
                    continue
                if ns is None:
                    rows = evaluate_examples(self.model, self.tokenizer, exs, self.options, self.progress)
                else:
                    with intervene(self.model, ns, op=op, factor=factor, **({"means": means} if op == "mean" else {})):
                        rows = evaluate_examples(self.model, self.tokenizer, exs, self.options, self.progress)
                frames.append(
                    pd.DataFrame(
                        {
                            "side": side,
                            "benchmark": bench,
                            "id": [r["id"] for r in rows],
                            "score": [float(r["score"]) for r in rows],
                        }
                    )
                )
        frame = pd.concat(frames, ignore_index=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        frame.to_parquet(tmp, index=False)
        tmp.replace(path)
        self.evaluations += 1
        log.info("evaluated %s", label)
        return frame

    def by_benchmark(
        self,
        label: str,
        ns: NeuronSet | None = None,
        op: str = "suppress",
        factor: float = 2.0,
        means: Mapping[str, Any] | None = None,
    ) -> dict[str, np.ndarray]:
        """``{benchmark: per-item scores}`` of a condition (evaluating it if needed)."""
        self.scores(label, ns, op, factor, means)
        frame = pd.read_parquet(self._cached(ns, op, factor))
        return {str(b): g["score"].to_numpy(np.float64) for b, g in frame.groupby("benchmark", sort=False)}


def effect_vs_random(
    base: Mapping[str, np.ndarray],
    target: Mapping[str, np.ndarray],
    randoms: Sequence[Mapping[str, np.ndarray]],
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """Per side: the targeted change, the random change and their difference (points, paired bootstrap CIs)."""
    out = {}
    for side in SIDES:
        if base[side].size == 0:
            continue
        rnd = np.stack([r[side] for r in randoms]) if randoms else np.zeros((0, base[side].size))
        out[side] = compare_to_random(base[side], target[side], rnd, n_boot=n_boot, seed=seed)
    return out


def gap(
    base: Mapping[str, np.ndarray],
    target: Mapping[str, np.ndarray],
    n_boot: int,
    seed: int,
    randoms: Sequence[Mapping[str, np.ndarray]] = (),
) -> dict[str, Any] | None:
    """The specificity gap (culture drop minus NLU drop, points) of one intervention.

    With ``randoms`` each side's drop is taken against the mean random condition (per item), so
    the gap is that of the excess drop; without, against the original model.
    """
    from ..evaluation.metrics import specificity_gap

    if base["culture"].size == 0 or base["nlu"].size == 0:
        return None
    if randoms:
        ref = {side: np.stack([r[side] for r in randoms]).mean(0) for side in SIDES}
    else:
        ref = base
    return specificity_gap(ref["culture"], target["culture"], ref["nlu"], target["nlu"], n_boot=n_boot, seed=seed)


def accuracy(scores: Mapping[str, np.ndarray], n_boot: int, seed: int) -> dict[str, Any]:
    """Mean score per side (in %), with CIs."""
    return {side: mean_ci(scores[side], n_boot, seed) for side in SIDES if scores[side].size}
