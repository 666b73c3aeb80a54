"""The config-driven run: export → score → select → evaluate → [train] → report, with resume.

:func:`run_pipeline` is the Python API; ``culture-neurons run CONFIG.toml`` and
``culture-neurons demo`` are thin layers over it. See ``docs/pipeline.md``.

Each stage is made of *steps* (one exported file, one score table, the selection, one evaluated
condition, one experiment summary, the report). A step's inputs are hashed (its config slice, the
hashes of the files it reads, the model's identity and the package version); a step whose inputs
and outputs are unchanged since it last finished is skipped. Everything is written atomically, and
only by rank 0 under ``torchrun``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..fileio import sha256_file, sha256_json
from .config import PipelineConfig, cap_for, eval_options, load_config, scoring_options, to_toml
from .manifest import Manifest, library_versions

log = logging.getLogger("culture_neurons.pipeline")

STAGES = ("export", "score", "select", "evaluate", "train", "report")


# ---------------------------------------------------------------------------------------------
# small helpers


def slug(text: str) -> str:
    """A file-name-safe form of a benchmark, country or condition name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _subsample_key(ex: Any) -> str:
    # A control example is keyed like the question it was made from, so both keep the same items.
    base = ex.meta.get("control_of") or ex.id.split("#", 1)[0]
    return hashlib.sha256(str(base).encode("utf-8")).hexdigest()


def cap_per_group(examples: Sequence[Any], n: int) -> list[Any]:
    """At most ``n`` examples per group: a fixed hash-ordered choice, kept in input order (``n=0``: all)."""
    if n <= 0:
        return list(examples)
    keep: set[int] = set()
    taken: dict[str, int] = {}
    for i in sorted(range(len(examples)), key=lambda i: (_subsample_key(examples[i]), i)):
        group = examples[i].group
        if taken.get(group, 0) < n:
            taken[group] = taken.get(group, 0) + 1
            keep.add(i)
    return [ex for i, ex in enumerate(examples) if i in keep]


def chance_level(examples: Sequence[Any]) -> float | None:
    """Expected accuracy (%) of uniform guessing over each example's options; None without options."""
    sizes = [len(ex.options or ex.labels or ()) for ex in examples]
    if not sizes or not all(sizes):
        return None
    return 100.0 * sum(1.0 / s for s in sizes) / len(sizes)


def _data_files(path: Path) -> list[Path]:
    return [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())


def _data_signature(path: Path | None) -> list[Any]:
    """Cheap identity of local data files (relative path, size, mtime): a change re-exports."""
    if path is None:
        return ["built-in or hub"]
    return [
        [p.relative_to(path).as_posix() if p != path else p.name, p.stat().st_size, p.stat().st_mtime_ns]
        for p in _data_files(path)
    ]


def _file_hashes(path: Path | None, limit: int = 200) -> dict[str, str]:
    if path is None:
        return {}
    return {str(p): sha256_file(p) for p in _data_files(path)[:limit]}


def data_dir_for(benchmark: Any, data_dir: str | None) -> str | None:
    """The data folder a benchmark reads: ``data_dir``, except that a benchmark with built-in data
    keeps it when ``data_dir`` holds nothing of its own (so ``--data-dir ../shared/data`` swaps in the
    real BLEnD files and keeps the built-in CountryRC passages)."""
    if data_dir is None or not benchmark.builtin:
        return data_dir
    root = Path(data_dir).expanduser()
    if (
        root.is_file()
        or any((root / m).exists() for m in benchmark.markers)
        or (benchmark.folder and (root / benchmark.folder).exists())
    ):
        return data_dir
    return None


def _model_fingerprint(config: PipelineConfig) -> dict[str, Any]:
    m = asdict(config.model)
    path = Path(m["name"]).expanduser()
    if path.exists():
        m["local_files"] = _data_signature(path)
    return m


# ---------------------------------------------------------------------------------------------
# the plan


@dataclass
class StepResult:
    key: str
    stage: str
    label: str
    status: str  # ran | skipped | would run | up to date | failed | not run
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunResult:
    """What :func:`run_pipeline` did: the run directory, each step's outcome, and the headline numbers."""

    run_dir: Path
    steps: list[StepResult]
    seconds: float
    dry_run: bool = False
    report: Path | None = None
    headline: list[dict[str, Any]] = field(default_factory=list)
    baseline: list[dict[str, Any]] = field(default_factory=list)

    def stage_table(self) -> str:
        rows = []
        for stage in STAGES:
            steps = [s for s in self.steps if s.stage == stage]
            if not steps:
                continue
            statuses: dict[str, int] = {}
            for s in steps:
                statuses[s.status] = statuses.get(s.status, 0) + 1
            what = ", ".join(f"{n} {k}" for k, n in statuses.items())
            rows.append([stage, str(len(steps)), what, f"{sum(s.seconds for s in steps):.1f}"])
        return format_table(["stage", "steps", "status", "seconds"], rows)

    def results_table(self) -> str:
        rows = []
        for h in self.headline:
            rows.append(
                [
                    h["experiment"],
                    h["benchmark"],
                    h["split"],
                    str(h["n"]),
                    _pct(h.get("chance")),
                    _pct(h["original"]),
                    _pct(h["target"]),
                    _pct(h["random"]),
                    _signed(h["difference"]),
                    _p(h.get("p")),
                ]
            )
        return format_table(
            ["experiment", "benchmark", "split", "n", "chance", "original", "intervened", "random", "Δ vs random", "p"],
            rows,
        )


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _signed(v: float | None) -> str:
    return "-" if v is None else f"{v:+.1f}"


def _p(v: float | None) -> str:
    return "-" if v is None else (f"{v:.3f}" if v >= 0.001 else "<0.001")


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain aligned text table (first column left-aligned, the rest right-aligned)."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)] if rows else [len(h) for h in header]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


# ---------------------------------------------------------------------------------------------
# the runner


class _Runner:
    def __init__(
        self, config: PipelineConfig, run_dir: Path, *, dry_run: bool, progress: bool, echo: Callable[[str], None]
    ) -> None:
        from ..distributed import broadcast_object, init_from_env, is_main

        # Join the process group first: which rank is the writer must be known before the first step.
        init_from_env(config.model.device)
        self.config = config
        self.run_dir = Path(run_dir)
        self.dry_run = dry_run
        self.progress = progress
        self.echo = echo if is_main() else (lambda _msg: None)
        self.main = is_main()
        # Rank 0 reads the manifest and every rank works from its copy, so all take the same decisions.
        data = broadcast_object(Manifest.open(self.run_dir).data if self.main else None)
        self.manifest = Manifest(self.run_dir, data, writer=self.main and not dry_run)
        self.results: list[StepResult] = []
        self.pending: set[str] = set()  # steps that ran or would run in this invocation (their outputs change)
        self._model: tuple[Any, Any] | None = None
        self._tokenizer: Any = None
        self.examples: dict[str, list[Any]] = {}  # rel path -> examples (cache)
        self.resuming = False  # whether the step now running continues an interrupted attempt
        self.baseline: list[dict[str, Any]] = []

    # -- model, lazily --------------------------------------------------------------------------

    def model(self) -> tuple[Any, Any]:
        if self._model is None:
            from ..distributed import init_from_env, local_device
            from ..models.loading import load_model, model_identity

            m = self.config.model
            init_from_env(m.device)
            start = time.perf_counter()
            model, tokenizer = load_model(
                m.name,
                dtype=m.dtype,
                device=local_device(m.device),
                device_map=m.device_map,
                max_memory=m.max_memory,
                progress=self.progress,
            )
            self._model = (model, tokenizer)
            self.manifest.set(model={"config": asdict(m), "identity": model_identity(model)})
            self.echo(f"[model] loaded {m.name} in {time.perf_counter() - start:.1f} s")
        return self._model

    def tokenizer(self) -> Any:
        if self._model is not None:
            return self._model[1]
        if self._tokenizer is None:
            from ..models.loading import load_tokenizer

            self._tokenizer = load_tokenizer(self.config.model.name)
        return self._tokenizer

    # -- one step -------------------------------------------------------------------------------

    def upstream(self, keys: Sequence[str]) -> dict[str, Any]:
        """The recorded output hashes of the steps ``keys`` (part of a downstream step's inputs)."""
        return {k: self.manifest.output_hashes(k) for k in keys}

    def step(
        self,
        key: str,
        stage: str,
        label: str,
        inputs: dict[str, Any],
        fn: Callable[[], tuple[list[Path], dict[str, Any]]],
        depends: Sequence[str] = (),
        all_ranks: bool = False,
        unknown_inputs: bool = False,
    ) -> StepResult:
        """Run ``fn`` unless the step is fresh. ``fn`` returns (outputs, info).

        ``depends`` are upstream steps whose output hashes are part of the inputs; ``unknown_inputs``
        marks a dry-run step whose inputs an upstream step that would run has not produced yet.
        """
        from ..distributed import broadcast_object

        digest = sha256_json({"inputs": inputs, "upstream": self.upstream(depends), "version": __version__})
        upstream_changes = unknown_inputs or any(d in self.pending for d in depends)
        prev = self.manifest.steps.get(key, {})
        # Only rank 0 can check the files, so its verdict is everyone's (they must enter the same collectives).
        fresh = broadcast_object(not upstream_changes and self.manifest.is_fresh(key, digest) if self.main else None)
        if self.dry_run or fresh:
            if not fresh:
                self.pending.add(key)
            status = "skipped" if not self.dry_run else "up to date" if fresh else "would run"
            result = StepResult(key, stage, label, status, info=dict(prev.get("info", {})))
            self.results.append(result)
            return result
        self.pending.add(key)
        # Only an interrupted attempt with the same inputs may leave partial work (checkpoints) to reuse.
        self.resuming = prev.get("status") in ("running", "failed") and prev.get("inputs_sha256") == digest
        self.manifest.start(key, stage, digest)
        start = time.perf_counter()
        try:
            if all_ranks or self.main:
                outputs, info = fn()
            else:
                outputs, info = [], {}
            _barrier()
            if not self.main:
                outputs = []
        except BaseException as exc:
            self.manifest.fail(key, f"{type(exc).__name__}: {exc}")
            raise
        seconds = time.perf_counter() - start
        self.manifest.finish(key, outputs, seconds, info)
        self.manifest.steps[key] = broadcast_object(self.manifest.steps[key])  # rank 0's output hashes for every rank
        result = StepResult(key, stage, label, "ran", seconds, dict(self.manifest.steps[key].get("info", info)))
        self.results.append(result)
        return result

    def log_stage(self, stage: str, detail: str = "") -> None:
        steps = [s for s in self.results if s.stage == stage]
        ran = [s for s in steps if s.status == "ran"]
        secs = sum(s.seconds for s in steps)
        if self.dry_run:
            would = sum(s.status == "would run" for s in steps)
            self.echo(f"[{stage}] {would} of {len(steps)} step(s) would run{'; ' + detail if detail else ''}")
        else:
            self.echo(
                f"[{stage}] {len(ran)} of {len(steps)} step(s) ran, {len(steps) - len(ran)} up to date, {secs:.1f} s"
                + (f"; {detail}" if detail else "")
            )

    def bar(self, total: int, desc: str, unit: str = "ex") -> Any:
        from tqdm.auto import tqdm

        return tqdm(
            total=total,
            desc=desc,
            unit=unit,
            disable=not self.progress or not self.main or self.dry_run,
            leave=False,
            dynamic_ncols=True,
        )

    # -- helpers for files ----------------------------------------------------------------------

    def read(self, rel: str) -> list[Any]:
        from ..data.example import read_examples

        if rel not in self.examples:
            self.examples[rel] = read_examples(self.run_dir / rel)
        return self.examples[rel]


# ---------------------------------------------------------------------------------------------
# stages


def _export(r: _Runner) -> dict[str, dict[str, Any]]:
    """One examples file per (role, benchmark). Returns {name: {"key", "rel", "bench", "role"}}."""
    from ..data import build_examples, get_benchmark, write_examples
    from ..data.registry import count_by_group_split, locate_data

    c = r.config
    jobs: list[tuple[str, str, str, int]] = []  # (role, bench, split, cap)
    for b in c.score.datasets:
        jobs.append(("score", b, c.score.split, cap_for(c.score.max_per_group, b)))
    for b in c.score.controls:
        jobs.append(("control", b, c.score.split, cap_for(c.score.max_per_group, b)))
    if c.score.countryrc:
        jobs.append(("countryrc", c.score.countryrc, c.score.split, cap_for(c.score.max_per_group, c.score.countryrc)))
    if c.evaluate.experiments or c.train is not None:
        for b in c.evaluate.benchmarks:
            jobs.append(("eval", b, c.evaluate.split, cap_for(c.evaluate.max_per_group, b)))
    files: dict[str, dict[str, Any]] = {}
    bar = r.bar(len(jobs), "export", unit="file")
    for role, bench, split, cap in jobs:
        benchmark = get_benchmark(bench)
        name = f"{role}-{slug(bench)}"
        rel = f"examples/{name}.jsonl"
        data_dir = data_dir_for(benchmark, c.data.data_dir)
        located = locate_data(benchmark, data_dir) if data_dir else None
        options = c.data.options.get(bench, {})
        inputs = {
            "bench": bench,
            "role": role,
            "split": split,
            "cap": cap,
            "countries": c.data.countries,
            "templates": c.data.templates,
            "labels": c.data.labels,
            "options": options,
            "chat_template": c.data.chat_template,
            "tokenizer": c.model.name if c.data.chat_template else None,
            "data": _data_signature(located),
        }
        key = f"export:{name}"

        def make(
            bench=bench, split=split, cap=cap, rel=rel, located=located, options=options, role=role, data_dir=data_dir
        ) -> tuple[list[Path], dict[str, Any]]:
            tok = r.tokenizer() if c.data.chat_template else None
            examples = build_examples(
                bench,
                split=split,
                countries=c.data.countries,
                data_dir=data_dir,
                tokenizer=tok,
                templates=c.data.templates,
                labels=c.data.labels,
                **options,
            )
            examples = cap_per_group(examples, cap)
            if tok is not None and c.score.target == "label" and role != "eval" and any(ex.labels for ex in examples):
                from ..data.labels import assert_labels_ok

                assert_labels_ok(examples, tok, benchmark=bench)
            write_examples(r.run_dir / rel, examples)
            return [r.run_dir / rel], {
                "n": len(examples),
                "counts": count_by_group_split(examples),
                "chance": chance_level(examples),
                "input_files": _file_hashes(located),
            }

        if r.dry_run and not r.manifest.steps.get(key):
            # Count what would be exported (no model or tokenizer needed for counting).
            exs = cap_per_group(
                build_examples(
                    bench,
                    split=split,
                    countries=c.data.countries,
                    data_dir=data_dir,
                    templates=c.data.templates,
                    labels=c.data.labels,
                    **options,
                ),
                cap,
            )
            res = r.step(key, "export", f"{bench} ({split})", inputs, make)
            res.info.update(n=len(exs), chance=chance_level(exs))
        else:
            r.step(key, "export", f"{bench} ({split})", inputs, make)
        files[name] = {"key": key, "rel": rel, "bench": bench, "role": role}
        bar.update(1)
    bar.close()
    r.log_stage(
        "export",
        ", ".join(f"{n}: {s.info.get('n', '?')}" for n, s in zip(files, [x for x in r.results if x.stage == "export"])),
    )
    return files


def _score(r: _Runner, files: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    from ..attribution.engine import score_examples

    c = r.config
    tables: dict[str, dict[str, Any]] = {}
    for name, f in files.items():
        if f["role"] == "eval":
            continue
        control = f["role"] == "control"
        opts = scoring_options(c, control=control)
        rel = f"scores/{name}.safetensors"
        key = f"score:{name}"
        inputs = {"options": asdict(opts), "model": _model_fingerprint(c), "checkpoint_every": None}

        def make(f=f, rel=rel, opts=opts, name=name) -> tuple[list[Path], dict[str, Any]]:
            model, tokenizer = r.model()
            examples = r.read(f["rel"])
            out = r.run_dir / rel
            ckpt = Path(f"{out}.ckpt") if c.score.checkpoint_every > 0 else None
            if not r.resuming:
                if r.main:
                    for stale in out.parent.glob(f"{out.name}.ckpt*"):
                        r.echo(f"[score] {name}: removing {stale.name}, a checkpoint of earlier inputs")
                        stale.unlink(missing_ok=True)
                _barrier()
            start = time.perf_counter()
            table = score_examples(
                model,
                tokenizer,
                examples,
                opts,
                site_map=c.model.site_map,
                progress=r.progress,
                checkpoint=ckpt,
                checkpoint_every=max(c.score.checkpoint_every, 1),
            )
            seconds = time.perf_counter() - start
            if r.main:
                table.save(out)
            probs = table.mean_prob()
            mean_p = float(table.prob_sums.sum() / max(table.num_examples, 1))
            r.echo(
                f"[score] {name}: {table.num_examples} examples, mean p {mean_p:.3f}, {seconds:.1f} s "
                f"({table.num_examples / max(seconds, 1e-9):.2f} ex/s)"
            )
            return [out], {
                "n": table.num_examples,
                "mean_p": mean_p,
                "mean_p_by_group": probs,
                "examples_per_s": table.num_examples / max(seconds, 1e-9),
            }

        res = r.step(key, "score", name, inputs, make, depends=[f["key"]], all_ranks=True)
        if r.dry_run and "n" not in res.info:
            prev = next((x for x in r.results if x.key == f["key"]), None)
            res.info["n"] = prev.info.get("n") if prev else None
        tables[name] = {"key": key, "rel": rel, "role": f["role"], "bench": f["bench"]}
    n = sum((s.info.get("n") or 0) for s in r.results if s.stage == "score")
    r.log_stage("score", f"{n} examples")
    return tables


def _select(r: _Runner, tables: dict[str, dict[str, Any]]) -> None:
    from ..attribution.scoretable import ScoreTable
    from ..data import TARGET_COUNTRIES
    from ..selection import select_general, select_random, select_specific_many

    c = r.config
    sel = c.select
    key = "select"
    inputs = {"select": asdict(sel)}
    depends = [t["key"] for t in tables.values()]

    def make() -> tuple[list[Path], dict[str, Any]]:
        load = lambda role: [ScoreTable.load(r.run_dir / t["rel"]) for t in tables.values() if t["role"] == role]  # noqa: E731
        datasets, controls = load("score"), load("control")
        crc = (load("countryrc") or [None])[0]
        folder = r.run_dir / "neurons"
        outputs: list[Path] = []
        info: dict[str, Any] = {}
        if sel.general.enabled:
            g = sel.general
            general = select_general(
                datasets,
                controls,
                crc,
                t_mlp=g.t_mlp,
                t_attn=g.t_attn,
                r=g.r,
                mlp_sites=g.mlp_sites,
                attn_sites=g.attn_sites,
            )
            outputs.append(general.save(folder / "general.json"))
            info["general"] = {"count": len(general), "by_site": general.site_counts()}
            for seed in range(sel.random.seeds):
                if len(general) == 0:
                    break
                rnd = select_random(general, seed, layer_matched=sel.random.layer_matched)
                outputs.append(rnd.save(folder / f"random-{seed}.json"))
        if sel.specific.enabled:
            sp = sel.specific
            countries = list(TARGET_COUNTRIES) if sp.countries == "targets" else sp.countries
            sets = select_specific_many(datasets, controls, crc, countries, t=sp.t, r=sp.r, z=sp.z, sites=sp.sites)
            info["specific"] = {}
            for country, ns in sets.items():
                outputs.append(ns.save(folder / f"specific-{slug(country)}.json"))
                info["specific"][country] = len(ns)
        r.echo(
            "[select] general: "
            + (str(info["general"]["count"]) if "general" in info else "off")
            + "; specific: "
            + (", ".join(f"{k} {v}" for k, v in info.get("specific", {}).items()) or "off")
        )
        return outputs, info

    r.step(key, "select", "neuron sets", inputs, make, depends=depends)
    r.log_stage("select")


def _neuron_files(r: _Runner) -> dict[str, Path]:
    rec = r.manifest.steps.get("select", {})
    return {Path(rel).stem: r.run_dir / rel for rel in rec.get("outputs", {})}


def _evaluate(r: _Runner, files: dict[str, dict[str, Any]]) -> list[str]:
    """Evaluate every needed condition once (cached per benchmark), then summarise each experiment."""
    from ..data import get_benchmark
    from ..evaluation.api import evaluate_rows, read_rows, write_rows
    from ..selection import NeuronSet

    c = r.config
    e = c.evaluate
    if not e.experiments:
        return []
    evals = {f["bench"]: f for f in files.values() if f["role"] == "eval"}
    culture = [
        b for b in evals if get_benchmark(b).by_country and get_benchmark(b).kind not in ("countryrc", "control")
    ]
    planned = r.dry_run and "select" in r.pending
    if planned and not r.manifest.steps.get("select", {}).get("outputs"):
        # The neuron sets do not exist yet: plan with the configured names.
        sets = (["general"] + [f"random-{s}" for s in range(c.select.random.seeds)]) if c.select.general.enabled else []
        sets += [
            f"specific-{slug(x)}"
            for x in (c.select.specific.countries if isinstance(c.select.specific.countries, list) else [])
        ]
        neuron_paths = {n: None for n in sets}
    else:
        neuron_paths = _neuron_files(r)
    randoms = sorted((n for n in neuron_paths if n.startswith("random-")), key=lambda n: int(n.split("-")[1]))
    specifics = sorted(n for n in neuron_paths if n.startswith("specific-"))
    # (condition label, neuron file stem or None, op, benchmarks)
    conditions: list[tuple[str, str | None, str, list[str]]] = [("original", None, "suppress", list(evals))]
    experiments: list[tuple[str, str, list[str], list[str]]] = []
    if "ablation" in e.experiments and "general" in neuron_paths:
        conditions += [("suppress:general", "general", "suppress", list(evals))]
        conditions += [(f"suppress:random:{n.split('-')[1]}", n, "suppress", list(evals)) for n in randoms]
        experiments.append(
            ("ablation", "suppress:general", [f"suppress:random:{n.split('-')[1]}" for n in randoms], list(evals))
        )
    if "enhancement" in e.experiments and "general" in neuron_paths:
        conditions += [("enhance:general", "general", "enhance", list(evals))]
        conditions += [(f"enhance:random:{n.split('-')[1]}", n, "enhance", list(evals)) for n in randoms]
        experiments.append(
            ("enhancement", "enhance:general", [f"enhance:random:{n.split('-')[1]}" for n in randoms], list(evals))
        )
    skipped_sets: list[str] = []
    if "cross-culture" in e.experiments and culture and specifics:
        country_of = {}  # file stem -> country, for the non-empty sets
        for n in specifics:
            if neuron_paths[n] is None:  # planned in a dry run
                country_of[n] = n
                continue
            ns = NeuronSet.load(neuron_paths[n])
            if len(ns) == 0:
                skipped_sets.append(n.removeprefix("specific-"))
            else:
                country_of[n] = ns.kind.split(":", 1)[1]
        usable = list(country_of)
        conditions += [(f"suppress:{country_of[n]}", n, "suppress", culture) for n in usable]
        if usable:
            experiments.append(("cross-culture", "", [f"suppress:{country_of[n]}" for n in usable], culture))
    if skipped_sets:
        r.echo(
            f"[evaluate] cross-culture leaves out {', '.join(skipped_sets)}: no culture-specific neurons were selected"
        )

    opts = eval_options(c)
    total = sum(
        len(r.read(evals[b]["rel"])) if not r.dry_run or (r.run_dir / evals[b]["rel"]).exists() else 0
        for _, _, _, benches in conditions
        for b in benches
    )
    bar = r.bar(total, "evaluate")
    cond_keys: dict[tuple[str, str], str] = {}
    cond_rel: dict[tuple[str, str], str] = {}
    for label, stem, op, benches in conditions:
        for bench in benches:
            f = evals[bench]
            rel = f"eval/conditions/{slug(bench)}/{slug(label)}.parquet"
            key = f"evaluate:{bench}:{label}"
            # A condition depends on its own neuron file's hash, not on the whole selection: changing the
            # general threshold leaves the culture-specific conditions untouched.
            inputs = {
                "label": label,
                "op": op,
                "factor": e.factor if op == "enhance" else None,
                "options": opts.to_dict(),
                "neurons": stem,
                "neurons_sha256": (r.manifest.output_hashes("select").get(f"neurons/{stem}.json") if stem else None),
                "model": _model_fingerprint(c),
            }

            def make(bench=bench, f=f, rel=rel, stem=stem, op=op, label=label) -> tuple[list[Path], dict[str, Any]]:
                model, tokenizer = r.model()
                examples = r.read(f["rel"])
                ns = NeuronSet.load(neuron_paths[stem]) if stem else None
                rows = evaluate_rows(
                    model,
                    tokenizer,
                    {bench: examples},
                    ns,
                    op,
                    e.factor,
                    condition=label,
                    options=opts,
                    site_map=c.model.site_map,
                )
                if r.main:
                    write_rows(rows, r.run_dir / rel)
                acc = float(rows["score"].mean()) * 100
                bar.update(len(examples))
                return [r.run_dir / rel], {"n": len(examples), "value": acc}

            res = r.step(
                key,
                "evaluate",
                f"{bench} · {label}",
                inputs,
                make,
                depends=[f["key"]],
                all_ranks=True,
                unknown_inputs=planned and stem is not None,
            )
            if res.status != "ran":
                bar.update(len(r.read(f["rel"])) if (r.run_dir / f["rel"]).exists() else 0)
            if label == "original":
                r.baseline.append(
                    {
                        "benchmark": bench,
                        "n": res.info.get("n"),
                        "accuracy": res.info.get("value"),
                        "chance": next((s.info.get("chance") for s in r.results if s.key == f["key"]), None),
                    }
                )
            cond_keys[(bench, label)] = key
            cond_rel[(bench, label)] = rel
    bar.close()

    # Experiment summaries from the cached condition rows.
    from ..evaluation.experiments import ExperimentResult, ablation_summary, cross_culture_summary

    import pandas as pd

    done: list[str] = []
    for name, target, random_labels, benches in experiments:
        labels = (["original", target] if target else ["original"]) + random_labels
        keys = [cond_keys[(b, lab)] for b in benches for lab in labels]
        folder = r.run_dir / "eval" / name

        def make(
            name=name, target=target, random_labels=random_labels, benches=benches, labels=labels, folder=folder
        ) -> tuple[list[Path], dict[str, Any]]:
            rows = pd.concat(
                [read_rows(r.run_dir / cond_rel[(b, lab)]) for lab in labels for b in benches], ignore_index=True
            )
            config = {
                "experiment": name,
                "options": opts.to_dict(),
                "n_boot": e.n_boot,
                "seed": e.seed,
                "benchmarks": benches,
                "factor": e.factor if name == "enhancement" else None,
                "conditions": labels,
            }
            if name == "cross-culture":
                countries = [lab.split(":", 1)[1] for lab in random_labels]
                summary, matrix = cross_culture_summary(rows, countries, "suppress", e.n_boot, e.seed)
                result = ExperimentResult(rows, summary, config, matrix)
            else:
                summary = ablation_summary(rows, benches, target, random_labels, e.n_boot, e.seed)
                result = ExperimentResult(rows, summary, config)
            paths = result.save(folder)
            extra = [folder / "matrix.csv"] if result.matrix is not None else []
            return [*paths, *extra], {"experiment": name}

        r.step(f"experiment:{name}", "evaluate", name, {"n_boot": e.n_boot, "seed": e.seed}, make, depends=keys)
        done.append(name)
    r.log_stage("evaluate")
    return done


def _train(r: _Runner) -> None:
    from .stages import run_train_stage

    if r.config.train is None:
        return
    run_train_stage(r)
    r.log_stage("train")


def _report(r: _Runner) -> Path | None:
    if not r.config.report.enabled:
        return None
    depends = [k for k in r.manifest.steps if k != "report"]
    out = r.run_dir / "report.html"

    def make() -> tuple[list[Path], dict[str, Any]]:
        from ..analysis.report import write_report

        path = write_report(r.run_dir, top_neurons=r.config.report.top_neurons, manifest=r.manifest.data)
        return [path], {}

    r.step("report", "report", "report.html", {"report": asdict(r.config.report)}, make, depends=sorted(depends))
    r.log_stage("report")
    return out


# ---------------------------------------------------------------------------------------------
# the API


def chance_by_benchmark(manifest: dict[str, Any]) -> dict[str, float | None]:
    """Chance accuracy (%) of each evaluation benchmark, as its export step recorded it."""
    by_slug = {slug(b): b for b in manifest.get("config", {}).get("evaluate", {}).get("benchmarks", [])}
    out = {}
    for key, rec in manifest.get("steps", {}).items():
        if key.startswith("export:eval-"):
            name = key.removeprefix("export:eval-")
            out[by_slug.get(name, name)] = rec.get("info", {}).get("chance")
    return out


def headline_rows(run_dir: Path, manifest: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The held-out numbers of the ablation and enhancement summaries (what the summary table prints)."""
    from ..analysis.stats import read_summary

    rows = []
    chance = chance_by_benchmark(manifest or {})
    for name in ("ablation", "enhancement"):
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
                        "p": diff.get("p_one_sided") if name == "ablation" else diff.get("p_two_sided"),
                    }
                )
    return rows


def run_pipeline(
    config: str | os.PathLike | dict | PipelineConfig,
    out: str | os.PathLike | None = None,
    *,
    dry_run: bool = False,
    progress: bool = True,
    overrides: dict[str, Any] | None = None,
    echo: Callable[[str], None] | None = None,
) -> RunResult:
    """Run (or resume) the whole pipeline described by ``config`` into the run directory ``out``.

    Args:
        config: a TOML path, a dict of the same shape, or a :class:`PipelineConfig`.
        out: the run directory (default: ``[run] out``, else ``runs/<config file stem>``).
        dry_run: only report which steps would run and the example counts; nothing is written
            and no model is loaded.
        progress: show progress bars.
        overrides: dotted config keys to override (``{"select.general.t_mlp": 0.02}``).
        echo: where the per-stage log lines go (default: the ``culture_neurons.pipeline`` logger).

    Returns:
        A :class:`RunResult`; ``result.stage_table()`` and ``result.results_table()`` are the
        summary the CLI prints.
    """
    cfg = load_config(config, overrides)
    default_name = Path(config).stem if isinstance(config, (str, os.PathLike)) else "run"
    run_dir = Path(out) if out is not None else cfg.run_dir(default_name)
    if not dry_run:
        from ..fileio import ensure_writable_parent

        ensure_writable_parent(run_dir / "manifest.json")
    runner = _Runner(cfg, run_dir, dry_run=dry_run, progress=progress, echo=echo or log.info)
    start = time.perf_counter()
    m = runner.manifest
    previous = m.data.get("config")
    m.set(
        config=cfg.to_dict(),
        config_toml=to_toml(cfg),
        config_sha256=sha256_json(cfg.to_dict()),
        versions=library_versions(),
        package_version=__version__,
    )
    if previous is not None and previous != cfg.to_dict():
        m.data.setdefault("history", []).append(
            {"config_sha256": sha256_json(previous), "replaced": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        )
    m.save()
    files = _export(runner)
    tables = _score(runner, files)
    _select(runner, tables)
    _evaluate(runner, files)
    _train(runner)
    report = _report(runner)
    runner.manifest.save()
    result = RunResult(
        run_dir,
        runner.results,
        time.perf_counter() - start,
        dry_run,
        report if report and report.exists() else None,
        [] if dry_run else headline_rows(run_dir, runner.manifest.data),
        runner.baseline,
    )
    return result
