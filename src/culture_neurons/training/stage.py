"""The pipeline's optional ``train`` stage: selective fine-tuning of the run's model, configured by ``[train]``.

:func:`run_pipeline_stage` is what :mod:`culture_neurons.pipeline.stages` calls after the evaluate
stage; :func:`check_config` (also reachable as ``run_pipeline_stage.check_config``) checks the
``[train]`` table before any work starts. The stage is one pipeline step, ``train``, that calls
:func:`~culture_neurons.training.api.run_selective_finetuning` with

- the run's culture-general set (``neurons/general.json``),
- the run's exported evaluation examples (``examples/eval-*.jsonl``) and ``[evaluate]`` scorer options,
- the run's model, site map and chat-template setting,

and writes into ``RUN_DIR/train/`` (``train/<set>/`` per module set; the layout of
:mod:`culture_neurons.training.api`). The step's recorded outputs are the small files
(``finetune.json``, ``ranking.csv``, ``modules.json``, ``eval/summary.json``, ``eval/rows.parquet``
and each set's ``training.json``), never the model weights: hashing gigabytes on every rerun
would cost more than the check is worth, and ``training.json`` is written after the weights.

Resume: a rerun with the same settings skips the step. A step that was killed runs again and
:func:`run_selective_finetuning` reuses every finished set and evaluation and resumes an
unfinished set from its last checkpoint. Changing a training setting retrains the sets it affects
(their folders are replaced); changing the model wipes ``train/`` first, since nothing trained
from another base can be reused.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .modules import DEFAULT_BUDGET, NAMED_SETS
from .train import SCHEDULERS, TrainConfig

_T = TrainConfig()
STEP = "train"
FOLDER = "train"
BASE_STAMP = "base.json"  # what the trained sets in train/ were trained from
MODULE_NAME = re.compile(r"^(mlp|attn)\.\d+$")
DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class TrainSection:
    """The ``[train]`` table. Keys map onto :func:`run_selective_finetuning` and :class:`TrainConfig`.

    ``lr`` is ``TrainConfig.learning_rate``; ``benchmarks`` (default: every ``evaluate.benchmarks``)
    and ``n_boot`` (default: ``evaluate.n_boot``) pick the evaluation; ``exclude_eval`` drops the
    training examples whose question is also an evaluation example; ``max_examples = 0`` keeps all.
    """

    modules: str | list[str] = field(default_factory=lambda: ["top", "bottom", "random"])
    budget: float = DEFAULT_BUDGET
    data: str = "demo-nlu"
    data_dir: str | None = None
    part: str | None = None
    templates: str | list[str] | None = None
    max_examples: int = 10_000
    exclude_eval: bool = True
    benchmarks: list[str] | None = None
    n_boot: int | None = None
    dtype: str = "float32"
    seed: int = 42
    epochs: float = _T.epochs
    lr: float = _T.learning_rate
    batch_size: int = _T.batch_size
    micro_batch_size: int = _T.micro_batch_size
    max_steps: int | None = None
    scheduler: str = _T.scheduler
    warmup_steps: int = _T.warmup_steps
    optimizer: str = _T.optimizer
    weight_decay: float = _T.weight_decay
    max_grad_norm: float = _T.max_grad_norm
    save_steps: int = _T.save_steps
    save_total_limit: int = _T.save_total_limit
    logging_steps: int = _T.logging_steps
    keep_checkpoints: bool = _T.keep_checkpoints
    report_to: str | list[str] = "none"
    lora: bool = _T.lora
    lora_r: int = _T.lora_r
    lora_alpha: int = _T.lora_alpha
    lora_dropout: float = _T.lora_dropout
    bf16: bool | None = None
    gradient_checkpointing: bool = _T.gradient_checkpointing
    max_length: int | None = None

    def module_sets(self) -> list[str]:
        """The set specs, one per trained model: ``top``, ``bottom``, ``random``, ``full`` or ``mlp.3,attn.5``."""
        from .api import _set_names

        return _set_names(self.modules)

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs,
            learning_rate=self.lr,
            batch_size=self.batch_size,
            micro_batch_size=self.micro_batch_size,
            max_steps=self.max_steps,
            scheduler=self.scheduler,
            warmup_steps=self.warmup_steps,
            optimizer=self.optimizer,
            weight_decay=self.weight_decay,
            max_grad_norm=self.max_grad_norm,
            seed=self.seed,
            save_steps=self.save_steps,
            save_total_limit=self.save_total_limit,
            logging_steps=self.logging_steps,
            report_to=tuple(self.report_to) if isinstance(self.report_to, list) else self.report_to,
            lora=self.lora,
            lora_r=self.lora_r,
            lora_alpha=self.lora_alpha,
            lora_dropout=self.lora_dropout,
            bf16=self.bf16,
            gradient_checkpointing=self.gradient_checkpointing,
            max_length=self.max_length,
            keep_checkpoints=self.keep_checkpoints,
        )


# ---------------------------------------------------------------------------------------------
# checking the table


# Lower bounds, checked here so that the message names the table's key (lr, not learning_rate).
_AT_LEAST = {
    "batch_size": 1,
    "micro_batch_size": 1,
    "max_steps": 1,
    "save_steps": 1,
    "save_total_limit": 1,
    "logging_steps": 1,
    "lora_r": 1,
    "warmup_steps": 0,
    "max_examples": 0,
    "n_boot": 1,
    "max_length": 2,
}


def _error(key: str, message: str) -> Exception:
    from ..pipeline.config import ConfigError

    return ConfigError(f"config key 'train.{key}'{'' if message.startswith(':') else ' '}{message}")


def _check_modules(section: TrainSection, pipeline: Any) -> None:
    specs = section.module_sets()
    if not specs:
        raise _error("modules", 'is empty; give top, bottom, random, full, or module names such as "mlp.3,attn.5"')
    labels = []
    for spec in specs:
        if spec in NAMED_SETS:
            labels.append(spec)
            continue
        bad = [name for name in spec.split(",") if name.strip() and not MODULE_NAME.match(name.strip())]
        if bad:
            raise _error(
                "modules",
                f"has {bad[0].strip()!r}, which is neither a module set (top, bottom, random, full) "
                "nor a module name such as mlp.3 or attn.5",
            )
        labels.append("custom")
    repeated = sorted({x for x in labels if labels.count(x) > 1})
    if repeated:
        raise _error(
            "modules", f"names {repeated[0]!r} twice; each set is trained once (at most one explicit module list)"
        )
    if pipeline is not None and {"top", "bottom"} & set(specs) and not pipeline.select.general.enabled:
        raise _error(
            "modules", "asks for top or bottom, which need the culture-general set: set select.general.enabled = true"
        )
    if {"top", "bottom", "random"} & set(specs) and not 0.0 < section.budget <= 1.0:
        raise _error(
            "budget",
            f"must be a fraction of the model's parameters in (0, 1], got {section.budget:g}; e.g. 0.1 for 10%",
        )


def _check_numbers(section: TrainSection) -> None:
    for key, low in _AT_LEAST.items():
        value = getattr(section, key)
        if value is not None and value < low:
            raise _error(key, f"must be at least {low}, got {value}")
    for key in ("epochs", "lr"):
        if not getattr(section, key) > 0:
            raise _error(key, f"must be positive, got {getattr(section, key)}")
    for key in ("weight_decay", "max_grad_norm"):
        if getattr(section, key) < 0:
            raise _error(key, f"must be 0 or more, got {getattr(section, key)}")
    if not 0.0 <= section.lora_dropout < 1.0:
        raise _error("lora_dropout", f"must lie in [0, 1), got {section.lora_dropout}")
    if section.batch_size % section.micro_batch_size:
        raise _error(
            "batch_size",
            f"({section.batch_size}) must be a multiple of train.micro_batch_size ({section.micro_batch_size})",
        )
    if section.scheduler not in SCHEDULERS:
        raise _error("scheduler", f"must be one of {', '.join(SCHEDULERS)}, got {section.scheduler!r}")
    if section.dtype not in DTYPES:
        raise _error("dtype", f"must be one of {', '.join(DTYPES)}, got {section.dtype!r}")


def _check_data(section: TrainSection) -> None:
    from ..data import get_benchmark, list_benchmarks
    from ..errors import CultureNeuronsError
    from .data import _looks_like_path

    if section.data_dir is not None and not Path(section.data_dir).expanduser().exists():
        raise _error("data_dir", f": {section.data_dir} does not exist")
    if Path(section.data).expanduser().is_file():
        return
    if _looks_like_path(section.data):
        raise _error("data", f": no such examples file {section.data}")
    try:
        bench = get_benchmark(section.data)
    except CultureNeuronsError:
        known = ", ".join(b.name for b in list_benchmarks() if b.kind == "nlu")
        raise _error(
            "data",
            f": unknown dataset {section.data!r}: not an examples file and not a benchmark; "
            f"use an NLU benchmark ({known}) or an examples JSONL",
        ) from None
    if section.part is not None and section.part not in bench.parts:
        has = f"has the parts {', '.join(bench.parts)}" if bench.parts else "has no parts"
        raise _error("part", f": {bench.name} {has}, not {section.part!r}")


def _check_benchmarks(section: TrainSection, pipeline: Any) -> None:
    if pipeline is None or section.benchmarks is None:
        return
    known = pipeline.evaluate.benchmarks
    for i, name in enumerate(section.benchmarks):
        if name not in known:
            raise _error(
                f"benchmarks[{i}]",
                f": {name} is not among evaluate.benchmarks ({', '.join(known) or 'none'}); "
                "the stage evaluates on the run's exported evaluation examples",
            )


def parse_section(table: dict[str, Any], pipeline: Any = None) -> TrainSection:
    """The checked :class:`TrainSection` of a ``[train]`` table; ``pipeline`` (a PipelineConfig) fills the defaults
    that come from other sections and enables the checks across sections.

    Raises :class:`~culture_neurons.pipeline.config.ConfigError` naming the key: an unknown key, a
    value of the wrong type, an empty module set, a budget outside (0, 1], an unknown dataset, ...
    """
    from ..pipeline.config import _build  # the config's own type checker, so [train] reads like every other section

    section = _build(TrainSection, table, "train")
    _check_modules(section, pipeline)
    _check_numbers(section)
    _check_data(section)
    _check_benchmarks(section, pipeline)
    if section.lora:
        from .train import lora_available

        if not lora_available():
            raise _error("lora", "needs the 'peft' package: pip install 'culture-neurons[lora]' (or pip install peft)")
    try:
        section.train_config().validate()
    except Exception as exc:  # a rule TrainConfig knows and the checks above do not
        from ..pipeline.config import ConfigError

        raise ConfigError(f"config section [train]: {exc}") from None
    if pipeline is not None:
        if section.benchmarks is None:
            section.benchmarks = list(pipeline.evaluate.benchmarks)
        if section.n_boot is None:
            section.n_boot = pipeline.evaluate.n_boot
    return section


def check_config(table: dict[str, Any], pipeline: Any = None) -> None:
    """Check a ``[train]`` table before any work starts (see :func:`parse_section`)."""
    parse_section(table, pipeline)


# ---------------------------------------------------------------------------------------------
# the stage


def _eval_files(r: Any, benchmarks: list[str]) -> dict[str, dict[str, str]]:
    """``{benchmark: {"key", "rel"}}`` of the run's exported evaluation examples (the export steps of role ``eval``)."""
    from ..pipeline.run import slug

    out = {}
    for bench in benchmarks:
        name = f"eval-{slug(bench)}"
        out[bench] = {"key": f"export:{name}", "rel": f"examples/{name}.jsonl"}
    return out


def _data_fingerprint(section: TrainSection, pipeline: Any) -> Any:
    """Cheap identity of the training data: the file's hash, or the benchmark's local files (size, mtime)."""
    from ..fileio import sha256_file

    path = Path(section.data).expanduser()
    if path.is_file():
        return {"file": sha256_file(path)}
    from ..data import get_benchmark
    from ..data.registry import locate_data
    from ..pipeline.run import _data_signature

    data_dir = _data_dir(section, pipeline)
    located = locate_data(get_benchmark(section.data), data_dir) if data_dir else None
    return {"benchmark": section.data, "data_dir": data_dir, "files": _data_signature(located)}


def _data_dir(section: TrainSection, pipeline: Any) -> str | None:
    from ..data import get_benchmark
    from ..pipeline.run import data_dir_for

    if Path(section.data).expanduser().is_file():
        return None
    return section.data_dir or data_dir_for(get_benchmark(section.data), pipeline.data.data_dir)


def _training_examples(section: TrainSection, pipeline: Any, held_out: dict[str, list[Any]]) -> tuple[list[Any], int]:
    """The training examples, without those whose question is an evaluation example (``exclude_eval``).

    Ids differ by template (``demo-nlu/cs01#nlu1`` vs ``#cloze``), so a question is its id before ``#``.
    Returns the examples and how many were dropped.
    """
    from .data import training_examples

    examples = training_examples(
        section.data,
        data_dir=_data_dir(section, pipeline),
        part=section.part,
        max_examples=None,
        seed=section.seed,
        templates=section.templates,
    )
    dropped = 0
    if section.exclude_eval:
        seen = {ex.id.split("#", 1)[0] for exs in held_out.values() for ex in exs}
        kept = [ex for ex in examples if ex.id.split("#", 1)[0] not in seen]
        dropped = len(examples) - len(kept)
        if not kept:
            from ..errors import InputError

            raise InputError(
                f"config key 'train.data': every {section.data} example is also an evaluation example; "
                "train on another dataset or part, or set train.exclude_eval = false"
            )
        examples = kept
    cap = section.max_examples or None
    return training_examples(examples, max_examples=cap, seed=section.seed), dropped


def _release_runner_model(r: Any) -> None:
    # Training loads its own float32 copy of the base for every set; the evaluate stage's copy is
    # not needed again in this run (the report reads files), so it should not hold memory meanwhile.
    if getattr(r, "_model", None) is not None:
        from ..models.loading import release_memory

        r._model = None
        release_memory()


def _reset_if_base_changed(folder: Path, stamp: dict[str, Any]) -> None:
    """Remove ``train/`` when it holds sets trained from another base model (or dtype)."""
    from ..fileio import write_json_atomic

    path = folder / BASE_STAMP
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        previous = None
    except (OSError, ValueError):
        previous = {}
    if previous is not None and previous != json.loads(json.dumps(stamp)):
        shutil.rmtree(folder)
    write_json_atomic(path, stamp)


def _summary_info(run: Any) -> dict[str, Any]:
    """What the manifest keeps about the step: the sets and each benchmark's change from base (all examples)."""
    sets = {}
    for name, module_set in run.sets.items():
        result = run.results.get(name)
        sets[name] = {
            "modules": list(module_set.names),
            "params": module_set.params,
            "fraction": module_set.fraction,
            "neurons": sum(m.neurons for m in module_set.modules),
            "steps": None if result is None else result.steps,
            "train_loss": None if result is None else result.train_loss,
        }
    changes = {}
    for bench, entry in (run.summary or {}).items():
        part = entry.get("all", {})
        changes[bench] = {
            "base": part.get("base", {}).get("value"),
            **{name: part[name]["change"]["value"] for name in run.sets if name in part},
        }
    return {"sets": sets, "changes": changes}


def run_pipeline_stage(r: Any) -> None:
    """The ``train`` stage of a pipeline run: one resumable step that fine-tunes and evaluates each module set.

    ``r`` is the pipeline's runner (config, run directory, manifest, step/echo/read helpers).
    """
    from ..distributed import local_device, world
    from ..pipeline.config import ConfigError, eval_options
    from ..pipeline.run import _model_fingerprint

    c = r.config
    section = parse_section(dict(c.train or {}), c)
    if world()[1] > 1:
        # Raised on every rank before the step, so no rank waits at a barrier for the others.
        raise ConfigError(
            "config section [train]: the fine-tuning stage runs in one process; run the pipeline without "
            "torchrun to train (the other stages resume from this run directory)"
        )
    specs = section.module_sets()
    evals = _eval_files(r, section.benchmarks or [])
    opts = eval_options(c)
    planned = r.dry_run and "select" in r.pending
    neurons_sha = r.manifest.output_hashes("select").get("neurons/general.json")
    base = {"model": _model_fingerprint(c), "dtype": section.dtype}
    inputs = {
        "train": asdict(section),
        "base": base,
        "chat_template": c.data.chat_template,
        "eval_options": opts.to_dict(),
        "neurons_sha256": neurons_sha,
        "data": _data_fingerprint(section, c),
    }
    folder = r.run_dir / FOLDER

    def make() -> tuple[list[Path], dict[str, Any]]:
        from .api import format_comparison, run_selective_finetuning

        general = r.run_dir / "neurons" / "general.json"
        needs_neurons = bool({"top", "bottom"} & set(specs))
        if needs_neurons and not general.is_file():
            raise ConfigError(
                "config key 'train.modules': top and bottom need neurons/general.json, which the select stage "
                "did not write; enable select.general"
            )
        _release_runner_model(r)
        _reset_if_base_changed(folder, base)
        benches = {b: r.read(f["rel"]) for b, f in evals.items()}
        examples, dropped = _training_examples(section, c, benches)
        r.echo(
            f"[train] {len(examples)} training examples from {section.data}"
            + (f" ({dropped} left out: their questions are evaluation examples)" if dropped else "")
        )
        run = run_selective_finetuning(
            c.model.name,
            general if general.is_file() else None,
            examples,
            folder,
            module_sets=specs,
            budget=section.budget,
            seed=section.seed,
            config=section.train_config(),
            eval_benchmarks=benches or None,
            eval_options=opts,
            max_examples=None,
            chat_template=c.data.chat_template,
            dtype=section.dtype,
            device=local_device(c.model.device),
            site_map=c.model.site_map,
            resume=True,
            n_boot=section.n_boot or 1000,
            progress=r.progress,
            echo=r.echo,
            subfolders=True,
            replace_stale=True,
            data_name=section.data,
        )
        for name, result in run.results.items():
            state = "finished earlier" if result.skipped else f"{result.steps} steps in {result.seconds:.1f} s"
            r.echo(f"[train] {name}: {result.trainable_params:,} trained parameters, {state}")
        if run.summary:
            r.echo(
                format_comparison(
                    {b: {k: v for k, v in e.items() if k in ("metric", "all")} for b, e in run.summary.items()}
                )
            )
        outputs = [p for k, p in run.paths.items()] + [m / "training.json" for m in run.models.values()]
        return outputs, _summary_info(run)

    r.step(
        STEP,
        "train",
        "selective fine-tuning",
        inputs,
        make,
        depends=[f["key"] for f in evals.values()],
        unknown_inputs=planned,
    )


run_pipeline_stage.check_config = check_config  # type: ignore[attr-defined]
