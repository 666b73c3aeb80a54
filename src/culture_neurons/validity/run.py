"""``run_validity``: the five analyses on one model and data, written to ``<out>/summary.json``.

Layout of ``<out>`` (``validity/`` inside a run directory):

- ``summary.json``: sections ``sensitivity, stability, specificity, faithfulness, variants, chance``;
  each analysis section has a ``headline`` (``what, value, ci_low, ci_high``) and a ``reading``;
- ``faithfulness.csv`` (``site, layer, index, score, effect, stratum``), ``stability.csv``
  (``site, layer, index, frequency, in_full``), ``dose_response.csv``;
- ``stable.json`` and ``stable-<country slug>.json``: the stability-selected general and specific sets
  (neurons chosen in at least ``stable_pi`` of the fold x template cells), ``stable.csv`` their frequencies;
- ``folds/``: the cell tables (``fold<k>-<template>.safetensors``), control tables, fold and
  template NeuronSets; ``evals/``: cached per-condition scores (resume).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..fileio import write_json_atomic
from ..models.loading import model_identity
from ..version import __version__
from .faithfulness import write_csv
from .methods import faithfulness_with_methods
from .overlap import layer_distribution
from .readings import READERS
from .sensitivity import sensitivity
from .specificity import specificity
from .stability import stability
from .study import Study
from .variants import variants

log = logging.getLogger(__name__)

SCHEMA = "culture-neurons/validity"
SCHEMA_VERSION = 1
ANALYSES = {
    "sensitivity": sensitivity,
    "stability": stability,
    "specificity": specificity,
    "faithfulness": faithfulness_with_methods,
    "variants": variants,
}


def _pick(eff: dict | None, side: str = "culture") -> dict[str, Any]:
    d = ((eff or {}).get(side) or {}).get("difference") or {}
    return {"value": d.get("value"), "ci_low": d.get("ci_low"), "ci_high": d.get("ci_high"), "p": d.get("p_one_sided")}


def headline(name: str, section: dict[str, Any]) -> dict[str, Any]:
    """The one number (with CI) that summarises a section."""
    if name == "sensitivity":
        default = next((r for r in section["general"] if r.get("default")), {})
        return {
            "what": "culture excess drop vs random at the default threshold (points)",
            **_pick(default.get("effect")),
            "nlu": _pick(default.get("effect"), "nlu"),
            "sizes": [r["size"] for r in section["general"]],
            "jaccard_default": [r["overlap_default"]["jaccard"] for r in section["general"]],
        }
    if name == "stability":
        s = section["folds"]["summary"]
        out = {
            "what": "mean Jaccard between folds (range over fold pairs as the interval)",
            "value": s["jaccard"],
            "ci_low": (s["range"] or [None, None])[0],
            "ci_high": (s["range"] or [None, None])[1],
            "random_expected": s["random_expected"],
            "random_ci_low": (s["random_ci"] or [None, None])[0],
            "random_ci_high": (s["random_ci"] or [None, None])[1],
        }
        stable = (section.get("stable") or {}).get("general")
        if stable:
            out.update(
                stable_size=stable["size"], stable_bound=stable["bound"], stable_jaccard=stable.get("jaccard_plain")
            )
        if section.get("templates"):
            t = section["templates"]["summary"]
            out.update(
                template_jaccard=t["jaccard"], template_range=t["range"], template_random_expected=t["random_expected"]
            )
        return out
    if name == "specificity":
        rows = section["interventions"]
        g = rows[0]["gap_vs_random"] or {}
        out = {
            "what": "specificity gap of the default set: culture minus NLU excess drop vs random (points)",
            "value": g.get("gap"),
            "ci_low": g.get("ci_low"),
            "ci_high": g.get("ci_high"),
            "p": g.get("p_value"),
            "raw": rows[0]["gap"],
        }
        if len(rows) > 1 and rows[1]["gap_vs_random"]:
            e = rows[1]["gap_vs_random"]
            out["excluded"] = {
                "value": e.get("gap"),
                "ci_low": e.get("ci_low"),
                "ci_high": e.get("ci_high"),
                "p": e.get("p_value"),
                "size": rows[1]["size"],
            }
        return out
    if name == "faithfulness":
        s = section["spearman"]
        return {
            "what": "Spearman correlation of attribution score and single-neuron effect",
            "value": s["rho"],
            "ci_low": s["ci_low"],
            "ci_high": s["ci_high"],
            "n": s["n"],
        }
    if name == "variants":
        m = section.get("mean_ablation")
        return {
            "what": "culture excess drop vs random under mean ablation (points)",
            **(_pick(m["mean"]["effect"]) if m else {}),
        }
    return {}


def _write_tables(out: Path, sections: dict[str, Any]) -> None:
    if "stability" in sections:
        write_csv(sections["stability"].pop("frequency"), out / "stability.csv")
    if "sensitivity" in sections and sections["sensitivity"]["dose_response"]:
        write_csv(sections["sensitivity"]["dose_response"], out / "dose_response.csv")


def run_validity(study: Study) -> dict[str, Any]:
    """Run the analyses named in ``study.options.analyses``, write ``summary.json`` and return it.

    Each analysis reuses the study's cached tables and evaluations, so running several costs less
    than the sum of running each alone; a killed run resumes from the saved cells and conditions.
    """
    started = time.time()
    sections: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    for name in study.options.analyses:
        log.info("validity: %s", name)
        section = ANALYSES[name](study)
        _write_tables(study.out, {name: section})
        section["headline"] = headline(name, section)
        section["reading"] = READERS[name](section)
        sections[name] = section
        # Written after every analysis, so a run stopped half way leaves the finished ones readable.
        summary = _summary(study, sections, started, complete=len(sections) == len(study.options.analyses))
    return summary or _summary(study, sections, started, complete=True)


def _summary(study: Study, sections: dict[str, Any], started: float, complete: bool) -> dict[str, Any]:
    spec = sections.get("specificity")
    chance = spec["baselines"] if spec else None
    ns = study.default_set
    summary = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "package_version": __version__,
        "model": model_identity(study.model),
        "scoring": asdict(study.scoring),
        "evaluation": asdict(study.evaluation),
        "settings": asdict(study.settings),
        "options": asdict(study.options),
        "data": {
            "identification": len(study.data.identification),
            "culture": {k: len(v) for k, v in study.data.culture.items()},
            "nlu": {k: len(v) for k, v in study.data.nlu.items()},
            "nlu_identification": len(study.data.nlu_identification or []),
        },
        "default_set": {
            "size": len(ns),
            "sites": ns.site_counts(),
            "layers": layer_distribution(ns),
            "source": "given" if study.data.default_set is not None else "selected",
        },
        "chance": chance,
        **sections,
        "readings": {name: s["reading"] for name, s in sections.items()},
        "evaluations": study.evaluator.evaluations,
        "seconds": round(time.time() - started, 1),
        "complete": complete,
    }
    if study.data.reference_set is not None:
        from .overlap import overlap

        summary["default_set"]["reference_overlap"] = overlap(ns, study.data.reference_set)
    study.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(study.out / "summary.json", summary)
    return summary
