"""Statistics for the report: where the neurons are, how the sets overlap, and the experiments' numbers.

Everything here reads the files of a run directory (NeuronSets, experiment summaries) and returns
plain numpy/pandas objects; :mod:`.plots` draws them and :mod:`.report` lays them out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..data.registry import get_benchmark
from ..errors import InputError
from ..evaluation.metrics import format_p as format_p  # the one p format: defined by evaluation, re-exported
from ..evaluation.summary import read_summary as read_summary_file
from ..rundir import benchmark_of_export, parse_export_key
from ..selection.neuronset import Neuron, NeuronSet, ordered_sites

# The experiments whose summaries give the headline table, in the order they are shown.
HEADLINE_EXPERIMENTS = ("ablation", "enhancement")


def load_sets(run_dir: str | Path) -> dict[str, NeuronSet]:
    """The run's NeuronSets by file stem (``general``, ``specific-Iran``, ``random-0``, ...)."""
    folder = Path(run_dir) / "neurons"
    if not folder.is_dir():
        return {}
    return {p.stem: NeuronSet.load(p) for p in sorted(folder.glob("*.json"))}


def specific_sets(sets: Mapping[str, NeuronSet]) -> dict[str, NeuronSet]:
    """``{country: set}`` for the culture-specific sets."""
    return {ns.kind.split(":", 1)[1]: ns for name, ns in sets.items() if ns.kind.startswith("specific:")}


def layer_counts(ns: NeuronSet, num_layers: int | None = None) -> pd.DataFrame:
    """Neurons per layer (rows) and site (columns)."""
    n = num_layers or ns.num_layers or (int(ns.layers.max()) + 1 if len(ns) else 0)
    data = {}
    for site in ordered_sites(ns.site_names):
        counts = ns.layer_counts(site).numpy()
        full = np.zeros(n, dtype=np.int64)
        full[: min(n, counts.size)] = counts[:n]
        data[site] = full
    return pd.DataFrame(data, index=pd.RangeIndex(n, name="layer"))


def site_totals(sets: Mapping[str, NeuronSet]) -> pd.DataFrame:
    """Neurons per site (columns) for each set (rows), with the share of the pool when the widths are known."""
    rows = {}
    for name, ns in sets.items():
        rows[name] = {site: ns.site_counts().get(site, 0) for site in ordered_sites(ns.site_names)}
    return pd.DataFrame(rows).T.fillna(0).astype(int)


def _keyset(ns: NeuronSet) -> set[tuple[str, int, int]]:
    names = [ns.site_names[i] for i in ns.site_ids.tolist()]
    return set(zip(names, ns.layers.tolist(), ns.indices.tolist()))


def jaccard(sets: Mapping[str, NeuronSet]) -> pd.DataFrame:
    """Jaccard index |A ∩ B| / |A ∪ B| between every pair of sets (1 on the diagonal, 0 for two empty sets)."""
    keys = {name: _keyset(ns) for name, ns in sets.items()}
    names = list(keys)
    out = pd.DataFrame(0.0, index=names, columns=names)
    for a in names:
        for b in names:
            union = len(keys[a] | keys[b])
            out.loc[a, b] = len(keys[a] & keys[b]) / union if union else (1.0 if a == b else 0.0)
    return out


def top_neurons(ns: NeuronSet, n: int = 25) -> list[Neuron]:
    """The ``n`` neurons with the highest selection score (ties by site, layer, index)."""
    ranked = [x for x in ns.neurons if x.score is not None]
    ranked.sort(key=lambda x: -x.score)
    return ranked[:n]


def read_json(path: str | Path) -> dict[str, Any] | None:
    """A run file's JSON object, None when the file is absent; a corrupt file is a one-line error naming it."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason}); rerun the step that wrote it") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); rerun the step that wrote it") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object, got {type(data).__name__}; rerun the step that wrote it")
    return data


def read_summary(run_dir: str | Path, experiment: str) -> dict[str, Any] | None:
    """``eval/<experiment>/summary.json`` of a run in the current summary form, or None when absent.

    Any summary version is read (older files are upgraded); a corrupt one is a one-line error naming it.
    """
    path = Path(run_dir) / "eval" / experiment / "summary.json"
    return read_summary_file(path) if path.is_file() else None


def read_matrix(run_dir: str | Path) -> pd.DataFrame | None:
    """The cross-culture matrix (suppressed set x evaluated country, points), or None."""
    path = Path(run_dir) / "eval" / "cross-culture" / "matrix.csv"
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(path, index_col=0)
        frame.astype(float)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(
            f"{path}: not a numeric CSV matrix ({str(exc).splitlines()[0]}); rerun the cross-culture step"
        ) from None
    return frame


def experiment_bars(summary: Mapping[str, Any], split: str = "heldout") -> pd.DataFrame:
    """One row per benchmark: original, intervened and random-mean values with 95% CIs, and the p-values.

    ``split`` picks the held-out part where a benchmark has one (else all examples). The original
    and intervened CIs are bootstrap CIs of the accuracy; the random bar's CI is the paired
    bootstrap CI of the random change, placed at the random mean. The random sets as a sample:
    ``rank``/``p_mc`` (from the largest drop), ``rank_rise``/``p_mc_rise`` (from the largest rise),
    ``m_random``, the two-level CI of the difference ``excess_lo``/``excess_hi`` and ``mde``
    (points; None in summaries written before these numbers).
    """
    rows = []
    for bench, entry in summary["results"].items():
        part = split if split in entry else "all"
        block = entry[part]
        rnd = block.get("random_mean")
        rc = block.get("random_change") or {}
        diff = block.get("difference") or {}
        rows.append(
            {
                "benchmark": bench,
                "split": part,
                "n": block["original"]["n"],
                "metric": entry.get("metric", "accuracy"),
                "original": block["original"]["value"],
                "original_lo": block["original"]["ci_low"],
                "original_hi": block["original"]["ci_high"],
                "target": block["target"]["value"],
                "target_lo": block["target"]["ci_low"],
                "target_hi": block["target"]["ci_high"],
                "random": rnd,
                "random_lo": None if rnd is None or rc.get("ci_low") is None else rnd + rc["ci_low"] - rc["value"],
                "random_hi": None if rnd is None or rc.get("ci_high") is None else rnd + rc["ci_high"] - rc["value"],
                "random_seeds": list((block.get("random") or {}).values()),
                "difference": diff.get("value"),
                "p_one_sided": diff.get("p_one_sided"),
                "p_two_sided": diff.get("p_two_sided"),
                **random_sample_numbers(block),
            }
        )
    return pd.DataFrame(rows)


def random_sample_numbers(block: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers of a set-vs-random block that treat the random sets as a sample (see
    :func:`culture_neurons.evaluation.metrics.compare_to_random`); None where the summary predates them."""
    two = block.get("excess_ci_two_level") or {}
    return {
        "m_random": block.get("m_random"),
        "rank": block.get("rank"),
        "p_mc": block.get("p_mc"),
        "rank_rise": block.get("rank_rise"),
        "p_mc_rise": block.get("p_mc_rise"),
        "excess_lo": two.get("ci_low"),
        "excess_hi": two.get("ci_high"),
        "mde": block.get("mde"),
    }


def stars(p: float | None) -> str:
    """Significance marks: * p<0.05, ** p<0.01, *** p<0.001, n.s. otherwise."""
    if p is None or (isinstance(p, float) and np.isnan(p)):
        return ""
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else "n.s."


def format_ci(value: float | None, low: float | None, high: float | None, signed: bool = True) -> str:
    """``+1.2 [-0.3, +2.5]`` (points), or ``-`` when the value is unknown; the bracket is left out without a CI."""
    if value is None:
        return "-"
    fmt = "{:+.1f}" if signed else "{:.1f}"
    if low is None or high is None:
        return fmt.format(value)
    return f"{fmt.format(value)} [{fmt.format(low)}, {fmt.format(high)}]"


def chance_by_benchmark(manifest: Mapping[str, Any]) -> dict[str, float | None]:
    """Chance accuracy (%) of each evaluation benchmark, as its export step recorded it.

    The export step key holds the benchmark's slug; the config's benchmark names map it back (with
    either slug rule, so run directories made before :func:`culture_neurons.rundir.slug` still do).
    """
    benches = list(manifest.get("config", {}).get("evaluate", {}).get("benchmarks", []))
    out: dict[str, float | None] = {}
    for key, rec in manifest.get("steps", {}).items():
        parsed = parse_export_key(key)
        if parsed is not None and parsed[0] == "eval":
            out[benchmark_of_export(key, benches) or parsed[1]] = rec.get("info", {}).get("chance")
    return out


def condition_of(key: str) -> tuple[str, str] | None:
    """``(benchmark, condition label)`` of an ``evaluate:<benchmark>:<label>`` step key, else None."""
    if not key.startswith("evaluate:"):
        return None
    bench, sep, label = key.removeprefix("evaluate:").partition(":")
    return (bench, label) if sep else None


def headline_rows(run_dir: str | Path, manifest: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The numbers of the ablation and enhancement summaries, one row per (experiment, benchmark, split).

    Each row has ``experiment, benchmark, split, n, chance, original, target, random, difference,
    ci_low, ci_high, p``: accuracies in %, ``difference`` is intervened minus the random mean (points)
    with its paired-bootstrap CI, ``p`` is one-sided for ablation and two-sided for enhancement. The
    ``all`` part is left out where a benchmark has splits. Then the random sets as a sample
    (:func:`random_sample_numbers`), with ``rank``/``p_mc`` in the experiment's direction (from the
    largest drop for ablation, the largest rise for enhancement).
    """
    rows = []
    chance = chance_by_benchmark(manifest or {})
    for name in HEADLINE_EXPERIMENTS:
        data = read_summary(run_dir, name)
        if data is None:
            continue
        for bench, entry in data["results"].items():
            parts = [p for p in entry if p not in ("metric", "all")] or ["all"]
            for part in parts:
                block = entry[part]
                if not isinstance(block, dict) or "original" not in block:
                    continue
                diff = block.get("difference") or {}
                rows.append(
                    {
                        "experiment": name,
                        "benchmark": bench,
                        "split": part,
                        "n": block["original"]["n"],
                        "chance": chance.get(bench),
                        "original": block["original"]["value"],
                        "target": block["target"]["value"],
                        "random": block.get("random_mean"),
                        "difference": diff.get("value"),
                        "ci_low": diff.get("ci_low"),
                        "ci_high": diff.get("ci_high"),
                        "p": diff.get("p_one_sided") if name == "ablation" else diff.get("p_two_sided"),
                        **_directed(random_sample_numbers(block), rises=name != "ablation"),
                    }
                )
    return rows


def _directed(numbers: dict[str, Any], rises: bool) -> dict[str, Any]:
    """``rank`` and ``p_mc`` counted in the experiment's direction (the rise for enhancement)."""
    if rises:
        numbers = {**numbers, "rank": numbers["rank_rise"], "p_mc": numbers["p_mc_rise"]}
    return numbers


def benchmark_kinds(names: Sequence[str]) -> dict[str, str]:
    """``{benchmark: kind}`` from the registry (culture, control, countryrc, generation, scale, nlu); unknown names
    are left out."""
    out = {}
    for name in names:
        try:
            out[name] = get_benchmark(name).kind
        except InputError:
            continue  # a benchmark registered by a plugin that is not installed now: no claim rests on it
    return out
