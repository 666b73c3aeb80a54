"""What a run directory tells a card: its examples, neuron sets, score tables and validity files.

Everything here only reads. The examples are the run's exports: identification (role ``score``),
control (role ``control``) and NLU (exports of an NLU benchmark: the ``exclude`` tables' data and the
evaluated NLU benchmarks). Files are found through the manifest's step records, so a run directory
named by an older slug rule is read the same way the pipeline resumes it.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import rundir
from ..attribution.scoretable import ScoreTable
from ..data.example import Example, read_examples
from ..data.registry import get_benchmark
from ..data.sampling import cap_examples
from ..errors import CultureNeuronsError, InputError
from ..selection.neuronset import NeuronSet
from .card import Membership
from .neurons import NeuronRef

RUN_FORMAT = "culture-neurons/run"
POOLS = (("MLP", "mlp."), ("attention", "attn."))  # the general set is ranked within each pool
ROLE_SOURCE = {"score": "identification", "control": "control"}


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    """``RUN_DIR/manifest.json`` (a one-line error when it is missing or not a run manifest)."""
    path = Path(run_dir) / rundir.MANIFEST
    if not Path(run_dir).is_dir():
        raise InputError(f"run directory {run_dir} does not exist")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        made = "is it a run directory made by `culture-neurons run`?"
        raise InputError(f"{run_dir} has no manifest.json; {made}") from None
    except ValueError as exc:
        raise InputError(f"{path} is not JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != RUN_FORMAT:
        raise InputError(f"{path} is not a culture-neurons run manifest")
    return manifest


def _benchmarks(config: Mapping[str, Any]) -> list[str]:
    """Every benchmark name a config mentions (to tell an export's benchmark from its file-name slug)."""
    score = config.get("score") or {}
    names = [*score.get("datasets", []), *score.get("controls", []), score.get("countryrc") or ""]
    exclude = (config.get("select") or {}).get("exclude", [])
    names += [str(e).rpartition(":")[0] if ":" in str(e) else str(e) for e in exclude]
    names += list((config.get("evaluate") or {}).get("benchmarks", []))
    names.append(((config.get("validate") or {}).get("nlu_identification")) or "")
    return [n for n in dict.fromkeys(names) if n]


def _kind(name: str) -> str | None:
    try:
        return get_benchmark(name).kind
    except CultureNeuronsError:
        return None


def exported_files(manifest: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """``(source, benchmark, path relative to the run)`` of every finished export a card reads, in step-key order."""
    steps = manifest.get("steps") or {}
    names = _benchmarks(manifest.get("config") or {})
    out = []
    for key in sorted(steps):
        parsed = rundir.parse_export_key(key)
        if parsed is None or (steps[key] or {}).get("status") != "done":
            continue
        role = parsed[0]
        bench = rundir.benchmark_of_export(key, names) or parsed[1]
        source = ROLE_SOURCE.get(role) or ("nlu" if role in ("exclude", "eval") and _kind(bench) == "nlu" else None)
        if source is not None:
            out.append((source, bench, rundir.recorded_output(steps, key, rundir.examples_rel(role, bench))))
    return out


def run_examples(
    run_dir: str | Path, manifest: Mapping[str, Any], max_per_group: int = 0, nlu_limit: int = 0
) -> tuple[list[Example], list[str]]:
    """The run's identification, control and NLU examples (capped: ``max_per_group`` per country for the first
    two, ``nlu_limit`` in all for NLU; 0 keeps all) and the source of each."""
    chosen: dict[str, list[Example]] = {"identification": [], "control": [], "nlu": []}
    for source, _bench, rel in exported_files(manifest):
        path = Path(run_dir) / rel
        if path.is_file():
            chosen[source] += read_examples(path)
    examples, sources = [], []
    for source, found in chosen.items():
        if source == "nlu":
            kept = cap_examples(found, limit=nlu_limit or None)
        else:
            kept = cap_examples(found, max_per_group=max_per_group or None)
        examples += kept
        sources += [source] * len(kept)
    if not any(s == "identification" for s in sources):
        raise InputError(f"{run_dir} has no exported identification examples; run the pipeline's export stage")
    return examples, sources


def run_sets(run_dir: str | Path) -> dict[str, NeuronSet]:
    """The run's general and culture-specific sets, ``general`` first, then ``specific:<country>`` by name
    (from the file names, so a stability-selected ``stable:general`` set is the run's general set too);
    random sets are left out."""
    folder = Path(run_dir) / rundir.NEURONS_DIR
    sets = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        if path.stem == rundir.GENERAL_STEM:
            sets["general"] = NeuronSet.load(path)
        elif rundir.is_specific(path.stem):
            ns = NeuronSet.load(path)
            sets[ns.kind if ns.kind.startswith("specific:") else f"specific:{ns.kind}"] = ns
    return dict(sorted(sets.items(), key=lambda kv: (kv[0] != "general", kv[0])))


def _pools(name: str, ns: NeuronSet) -> list[tuple[str, list[NeuronRef]]]:
    """The set's ranked pools, best first: a specific set's one pool over all its sites, else (the general set)
    its MLP and attention pools, each ranked on its own as the selection ranks them."""
    ordered = sorted(ns.neurons, key=lambda n: -_score(n.score))  # stable: equal scores keep the file's order
    refs = [NeuronRef(n.site, n.layer, n.index) for n in ordered]
    if name.startswith("specific:"):
        return [("all sites", refs)]
    return [(pool, [r for r in refs if r.site.startswith(prefix)]) for pool, prefix in POOLS]


def _score(score: float | None) -> float:
    return -math.inf if score is None or math.isnan(score) else float(score)


def memberships(sets: Mapping[str, NeuronSet]) -> dict[NeuronRef, list[Membership]]:
    """Each neuron's rank and score in every set that holds it."""
    out: dict[NeuronRef, list[Membership]] = {}
    for name, ns in sets.items():
        scores = {NeuronRef(n.site, n.layer, n.index): n.score for n in ns.neurons}
        for pool, refs in _pools(name, ns):
            for rank, ref in enumerate(refs, start=1):
                score = scores[ref]
                value = None if score is None or math.isnan(score) else float(score)
                out.setdefault(ref, []).append(Membership(name, rank, len(refs), value, pool))
    return out


def top_refs(sets: Mapping[str, NeuronSet], top: int) -> list[NeuronRef]:
    """The ``top`` best neurons of every set (of each pool of the general set), without repeats, in set order."""
    out: dict[NeuronRef, None] = {}
    for name, ns in sets.items():
        for _pool, refs in _pools(name, ns):
            for ref in refs[:top]:
                out.setdefault(ref, None)
    return list(out)


def find_set(sets: Mapping[str, NeuronSet], name: str) -> NeuronSet:
    """A set by kind (``general``, ``specific:Japan``), country (``Japan``) or file stem (``specific-japan``)."""
    wanted = name.strip()
    for kind, ns in sets.items():
        country = kind.partition(":")[2]
        if wanted in (kind, country) or wanted == rundir.specific_stem(country) or wanted.lower() == kind.lower():
            return ns
    raise InputError(f"no neuron set {name!r} in this run; it has {', '.join(sets) or 'none (run the select stage)'}")


@dataclass
class ValidityFacts:
    """What the validity stage measured per neuron: how many of its fold and template sets hold it (``counts``
    per split, ``sizes``: the number of sets of each split found) and the faithfulness analysis's effects."""

    counts: dict[str, dict[NeuronRef, int]] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    effects: dict[NeuronRef, tuple[float, str | None]] = field(default_factory=dict)

    def frequency(self, ref: NeuronRef) -> dict[str, float]:
        """``{split: fraction of its sets that hold the neuron}`` (0 for a split whose sets all leave it out)."""
        return {split: self.counts[split].get(ref, 0) / n for split, n in self.sizes.items()}


def validity_facts(run_dir: str | Path) -> ValidityFacts:
    """The frequencies and effects of ``RUN_DIR/validity`` (``folds/fold*.json``, ``folds/template-*.json``,
    ``faithfulness.csv``); empty when the stage has not run."""
    folder = Path(run_dir) / "validity"
    facts = ValidityFacts()
    for split, pattern in (("folds", "fold[0-9]*.json"), ("templates", "template-*.json")):
        paths = sorted((folder / "folds").glob(pattern)) if (folder / "folds").is_dir() else []
        if not paths:
            continue
        counts: dict[NeuronRef, int] = {}
        for path in paths:
            for n in NeuronSet.load(path).neurons:
                ref = NeuronRef(n.site, n.layer, n.index)
                counts[ref] = counts.get(ref, 0) + 1
        facts.counts[split], facts.sizes[split] = counts, len(paths)
    path = folder / "faithfulness.csv"
    if path.is_file():
        with open(path, encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                try:
                    ref = NeuronRef(row["site"], int(row["layer"]), int(row["index"]))
                    facts.effects[ref] = (float(row["effect"]), row.get("stratum") or None)
                except (KeyError, TypeError, ValueError) as exc:
                    raise InputError(f"{path}: a row is not site, layer, index, effect ({exc})") from None
    return facts


def _tables(run_dir: Path, manifest: Mapping[str, Any], role: str) -> list[ScoreTable]:
    steps = manifest.get("steps") or {}
    names = _benchmarks(manifest.get("config") or {})
    out = []
    for key in sorted(steps):
        if not key.startswith(f"score:{role}-") or (steps[key] or {}).get("status") != "done":
            continue
        export = "export:" + key.removeprefix("score:")
        bench = rundir.benchmark_of_export(export, names) or ""
        path = run_dir / rundir.recorded_output(steps, key, rundir.scores_rel(role, bench))
        if path.is_file():
            out.append(ScoreTable.load(path))
    return out


def attributions(
    run_dir: str | Path, manifest: Mapping[str, Any], refs: Sequence[NeuronRef]
) -> dict[NeuronRef, dict[str, float]]:
    """The country score s_c of each neuron for each country, as the culture-specific selection computes it:
    ``sum over datasets d of (X_d[c] / N_d - C_d[c] / N_c(d))`` (one control for all, or one per dataset)."""
    run_dir = Path(run_dir)
    datasets, controls = _tables(run_dir, manifest, "score"), _tables(run_dir, manifest, "control")
    if not datasets or len(controls) not in (1, len(datasets)):
        return {}
    pairs = list(zip(datasets, controls * len(datasets) if len(controls) == 1 else controls))
    countries = [g for g in datasets[0].groups if all(g in t.groups for pair in pairs for t in pair)]
    out: dict[NeuronRef, dict[str, float]] = {}
    for ref in refs:
        if not all(ref.site in t.scores for pair in pairs for t in pair):
            continue
        values = dict.fromkeys(countries, 0.0)
        for d, c in pairs:
            mine = d.scores[ref.site][ref.layer, ref.index].double()
            control = c.scores[ref.site][ref.layer, ref.index].double()
            for g in countries:
                values[g] += float(mine[d.group_index(g)]) / max(d.num_examples, 1)
                values[g] -= float(control[c.group_index(g)]) / max(c.num_examples, 1)
        out[ref] = values
    return out
