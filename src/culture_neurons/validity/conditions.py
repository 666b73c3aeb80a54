"""Evaluating intervention conditions on the culture and NLU sides, cached per condition.

Every condition (original, suppress a set, enhance by a factor, mean-ablate) is evaluated on all
held-out culture and NLU examples once; the per-example scores are saved to
``validity/evals/<label>-<hash>.parquet`` so an interrupted run resumes without re-evaluating.
The two sides pool their benchmarks' items: the culture drop is the mean change over every
cultural item, the NLU drop over every NLU item. A benchmark on which the original model is within
noise of chance cannot show a drop, so with ``drop_at_chance`` it is left out of its side's pool
(and reported as left out), as long as the side keeps at least one benchmark above chance.
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
from ..models.loading import model_identity
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
        drop_at_chance: bool = True,
        bootstrap: tuple[int, int] = (1000, 0),
    ) -> None:
        self.model, self.tokenizer, self.options = model, tokenizer, options
        self.benches = {
            "culture": {k: list(v) for k, v in culture.items()},
            "nlu": {k: list(v) for k, v in nlu.items()},
        }
        self.folder = folder
        self.progress = progress
        self.evaluations = 0  # conditions actually evaluated (not read from the cache)
        self.drop_at_chance = drop_at_chance
        self.bootstrap = bootstrap  # (n_boot, seed) of the baselines' CIs
        self._baselines: dict[str, Any] | None = None
        # In the cache key: another model's scores in the same folder are never taken for this one's.
        identity = model_identity(model) if getattr(model, "config", None) is not None else {}
        self.model_key = {k: identity.get(k) for k in ("name_or_path", "config_sha256", "num_parameters")}

    def baselines(self) -> dict[str, Any]:
        """The original model's accuracy per benchmark against its chance level, and which benchmarks the
        sides pool (computed once, before any pooled scores, so every condition pools the same items)."""
        if self._baselines is None:
            original = self._frame("original", None, "suppress", 2.0, None)
            self._baselines = chance_report(self.benches, original, *self.bootstrap, self.drop_at_chance)
        return self._baselines

    def _frame(
        self, label: str, ns: NeuronSet | None, op: str, factor: float, means: Mapping[str, Any] | None
    ) -> pd.DataFrame:
        path = self._path(label, ns, op, factor)

        def load() -> pd.DataFrame | None:
            found = self._cached(ns, op, factor)
            return pd.read_parquet(found) if found is not None else None

        # The claim is keyed by the condition, not the label, so two labels of one condition run once.
        claim = self.folder / self._digest(ns, op, factor)
        return compute_once(claim, load, lambda: self._evaluate(path, label, ns, op, factor, means))

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
                "model": self.model_key,
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
        """``{side: per-item scores}`` under one condition (items in benchmark order, then input order), over
        the benchmarks each side pools (see :meth:`baselines`)."""
        pooled = self.baselines()["pooled"]
        frame = self._frame(label, ns, op, factor, means)
        return {
            side: frame.loc[(frame["side"] == side) & frame["benchmark"].isin(pooled[side]), "score"].to_numpy(
                np.float64
            )
            for side in SIDES
        }

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
        """``{benchmark: per-item scores}`` of a condition (evaluating it if needed), every benchmark."""
        frame = self._frame(label, ns, op, factor, means)
        return {str(b): g["score"].to_numpy(np.float64) for b, g in frame.groupby("benchmark", sort=False)}


def chance_report(
    benches: Mapping[str, Mapping[str, Sequence[Example]]],
    original: pd.DataFrame,
    n_boot: int,
    seed: int,
    drop_at_chance: bool = True,
) -> dict[str, Any]:
    """Per benchmark: the original accuracy (CI), its chance level and whether it is within noise of chance;
    per side: the benchmarks pooled and whether the side is informative (some pooled benchmark above chance)."""
    from ..chance import chance_level, chance_warning

    out: dict[str, Any] = {"benchmarks": {}, "sides": {}, "warnings": [], "pooled": {}}
    for side in SIDES:
        above, present = [], []
        for bench, exs in benches[side].items():
            if not exs:
                continue
            present.append(bench)
            scores = original.loc[original["benchmark"] == bench, "score"].to_numpy(np.float64)
            acc = mean_ci(scores, n_boot, seed)
            chance = chance_level(exs) * 100.0
            warn = chance_warning(
                f"{bench} baseline accuracy",
                acc["value"] / 100.0,
                chance / 100.0,
                acc["n"],
                fix=f"the {side} side says nothing about this benchmark; "
                "pick or cap benchmarks on which the model is above chance",
            )
            out["benchmarks"][bench] = {"side": side, "accuracy": acc, "chance": chance, "at_chance": warn is not None}
            if warn:
                out["warnings"].append(warn)
            else:
                above.append(bench)
        pooled = above if drop_at_chance and above else present
        for bench in present:
            out["benchmarks"][bench]["pooled"] = bench in pooled
        out["pooled"][side] = pooled
        out["sides"][side] = {
            "informative": bool(above) and (len(above) == len(pooled)),
            "pooled": pooled,
            "left_out": [b for b in present if b not in pooled],
        }
    return out


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
