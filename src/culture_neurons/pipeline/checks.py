"""Every value check of a run configuration, done before any work starts (types are checked while
parsing, in :func:`.config.build_section`). Each failure is one :class:`ConfigError` naming the key."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..data import get_benchmark, list_benchmarks
from ..data.countries import resolve_country
from ..data.registry import SPLIT_CHOICES
from ..data.templates import LABEL_STYLES
from ..errors import ConfigError, CultureNeuronsError
from ..training.data import looks_like_path
from ..training.modules import NAMED_SETS
from ..training.train import SCHEDULERS, lora_available
from .cross_culture_keys import check_cross_culture
from .logging_sinks import SINKS, sink_missing
from .sections import EXPERIMENTS, PipelineConfig, TrainSection, build_section, eval_options, scoring_options

MODULE_NAME = re.compile(r"^(mlp|attn)\.\d+$")
DTYPES = ("float32", "bfloat16", "float16")


def _fraction(key: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"config key '{key}' is a fraction and must lie in [0, 1], got {value}")


def _benchmark(key: str, name: str, kinds: tuple[str, ...] | None = None) -> None:
    try:
        bench = get_benchmark(name)
    except CultureNeuronsError as exc:
        raise ConfigError(f"config key '{key}': {exc}") from None
    if kinds is not None and bench.kind not in kinds:
        raise ConfigError(
            f"config key '{key}': {name} is a {bench.kind} benchmark; expected one of the kinds {', '.join(kinds)}"
        )


def _caps(key: str, value: int | dict[str, int], benchmarks: list[str]) -> None:
    items = value.items() if isinstance(value, dict) else [("", value)]
    for bench, n in items:
        where = f"{key}.{bench}" if bench else key
        if bench and bench not in benchmarks:
            raise ConfigError(
                f"config key '{where}': {bench} is not among this stage's benchmarks ({', '.join(benchmarks)})"
            )
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ConfigError(f"config key '{where}' must be an integer, 0 or more (0 = every example), got {n!r}")


def _countries(key: str, value: str | list[str] | None) -> None:
    """Each named country must be known (``targets`` and ``blend`` name lists)."""
    if value is None:
        return
    entries = [value] if isinstance(value, str) else value
    for i, entry in enumerate(entries):
        where = key if isinstance(value, str) else f"{key}[{i}]"
        for part in str(entry).split(","):
            part = part.strip()
            if not part:
                raise ConfigError(f"config key '{where}' holds an empty country name")
            if part.lower() in ("targets", "blend"):
                continue
            try:
                resolve_country(part)
            except CultureNeuronsError as exc:
                raise ConfigError(f"config key '{where}': {exc}") from None


def _check_model_and_data(config: PipelineConfig) -> None:
    if not config.model.name.strip():
        raise ConfigError(
            "config key 'model.name' is required "
            "(a hub id, a local folder, a .gguf file or an alias such as smollm2-135m-instruct)"
        )
    if config.model.dtype not in (None, "float32", "bfloat16", "float16", "auto"):
        raise ConfigError(
            f"config key 'model.dtype' must be float32, bfloat16, float16 or auto, got {config.model.dtype!r}"
        )
    if config.model.revision is not None and not config.model.revision.strip():
        raise ConfigError("config key 'model.revision' is empty; give a branch, tag or commit hash, or leave it out")
    if config.run.report_to is not None:
        if config.run.report_to not in SINKS:
            raise ConfigError(
                f"config key 'run.report_to' must be one of {', '.join(SINKS)}, got {config.run.report_to!r}"
            )
        hint = sink_missing(config.run.report_to)
        if hint:
            raise ConfigError(
                f"config key 'run.report_to': {config.run.report_to} is not installed; {hint}, or leave the key out"
            )
    if config.data.labels is not None and config.data.labels not in LABEL_STYLES:
        raise ConfigError(
            f"config key 'data.labels' must be one of {', '.join(LABEL_STYLES)}, got {config.data.labels!r}"
        )
    if config.data.data_dir is not None and not Path(config.data.data_dir).expanduser().exists():
        raise ConfigError(f"config key 'data.data_dir': {config.data.data_dir} does not exist")
    _countries("data.countries", config.data.countries)
    for bench, opts in config.data.options.items():
        _benchmark(f"data.options.{bench}", bench)
        if not isinstance(opts, dict):
            raise ConfigError(f"config key 'data.options.{bench}' must be a table of benchmark options")
        declared = get_benchmark(bench)
        if declared.name != bench:  # the export stage looks options up by the exact name
            raise ConfigError(f"config key 'data.options.{bench}': write the benchmark's name as {declared.name}")
        for key, value in opts.items():  # one key at a time, so the error names the exact key
            try:
                declared.resolve_options({key: value})
            except CultureNeuronsError as exc:
                raise ConfigError(f"config key 'data.options.{bench}.{key}': {exc}") from None


def _check_score(config: PipelineConfig) -> None:
    s = config.score
    if not s.datasets:
        raise ConfigError("config key 'score.datasets' must name at least one benchmark")
    for i, name in enumerate(s.datasets):
        _benchmark(f"score.datasets[{i}]", name, ("culture",))
    for i, name in enumerate(s.controls):
        _benchmark(f"score.controls[{i}]", name, ("control",))
    if len(s.controls) not in (1, len(s.datasets)):
        raise ConfigError(
            f"config key 'score.controls' must hold one control benchmark, or one per dataset ({len(s.datasets)}); "
            f"got {len(s.controls)}"
        )
    if s.countryrc:
        _benchmark("score.countryrc", s.countryrc, ("countryrc",))
    if s.split not in SPLIT_CHOICES:
        raise ConfigError(f"config key 'score.split' must be one of {', '.join(SPLIT_CHOICES)}, got {s.split!r}")
    excluded = [b for b, _ in config.select.exclusions()]
    _caps(
        "score.max_per_group",
        s.max_per_group,
        [*s.datasets, *s.controls, *([s.countryrc] if s.countryrc else []), *excluded],
    )
    if s.checkpoint_every < 0:
        raise ConfigError(f"config key 'score.checkpoint_every' must be 0 or more, got {s.checkpoint_every}")
    try:
        scoring_options(config).validate()
    except CultureNeuronsError as exc:
        raise ConfigError(f"config section [score]: {exc}") from None


def _check_select(config: PipelineConfig) -> None:
    g, sp, rnd = config.select.general, config.select.specific, config.select.random
    for key in ("t_mlp", "t_attn", "r"):
        _fraction(f"select.general.{key}", getattr(g, key))
    for key in ("t", "r"):
        _fraction(f"select.specific.{key}", getattr(sp, key))
    if isinstance(sp.countries, list) or (isinstance(sp.countries, str) and sp.countries != "targets"):
        _countries("select.specific.countries", sp.countries)
    for rule, section in (("general", g), ("specific", sp)):
        try:
            if section.stability is not None:
                section.stability.check()
        except CultureNeuronsError as exc:
            raise ConfigError(f"config key 'select.{rule}.stability': {exc}") from None
    if rnd.seeds < 0:
        raise ConfigError(f"config key 'select.random.seeds' must be 0 or more, got {rnd.seeds}")
    for i, spec in enumerate(config.select.exclude):
        try:
            bench, r = config.select.exclusions()[i]
        except ValueError:
            raise ConfigError(
                f"config key 'select.exclude[{i}]' must be BENCHMARK or BENCHMARK:r (r a fraction), got {spec!r}"
            ) from None
        _benchmark(f"select.exclude[{i}]", bench, ("nlu", "culture"))
        if r is not None:
            _fraction(f"select.exclude[{i}]", r)
    if len({b for b, _ in config.select.exclusions()}) != len(config.select.exclude):
        raise ConfigError("config key 'select.exclude' names a benchmark twice")


def _check_evaluate(config: PipelineConfig) -> None:
    e, g, sp = config.evaluate, config.select.general, config.select.specific
    for i, name in enumerate(e.benchmarks):
        _benchmark(f"evaluate.benchmarks[{i}]", name)
    if e.split not in SPLIT_CHOICES:
        raise ConfigError(f"config key 'evaluate.split' must be one of {', '.join(SPLIT_CHOICES)}, got {e.split!r}")
    bad = [x for x in e.experiments if x not in EXPERIMENTS]
    if bad:
        raise ConfigError(
            f"config key 'evaluate.experiments': unknown experiment {bad[0]!r}; choose from {', '.join(EXPERIMENTS)}"
        )
    experiments = set(e.experiments) if e.enabled else set()  # with enabled = false they are ignored
    if experiments and not e.benchmarks:
        raise ConfigError("config key 'evaluate.benchmarks' is empty but experiments are requested")
    if {"ablation", "enhancement"} & experiments and not g.enabled:
        raise ConfigError(
            "config key 'evaluate.experiments': ablation and enhancement need select.general.enabled = true"
        )
    if "cross-culture" in experiments and not sp.enabled:
        raise ConfigError("config key 'evaluate.experiments': cross-culture needs select.specific.enabled = true")
    _caps("evaluate.max_per_group", e.max_per_group, e.benchmarks)
    check_cross_culture(e)
    if e.n_boot < 1:
        raise ConfigError(f"config key 'evaluate.n_boot' must be at least 1, got {e.n_boot}")
    if e.factor < 0:
        raise ConfigError(f"config key 'evaluate.factor' must be 0 or more (2 doubles the neurons), got {e.factor}")
    try:
        eval_options(config).validate()
    except CultureNeuronsError as exc:
        raise ConfigError(f"config section [evaluate]: {exc}") from None


def validate(config: PipelineConfig) -> None:
    """Check values (not only types): required keys, names, ranges. Raises :class:`ConfigError`."""
    _check_model_and_data(config)
    _check_score(config)
    _check_select(config)
    _check_evaluate(config)
    if config.report.top_neurons < 0:
        raise ConfigError(f"config key 'report.top_neurons' must be 0 or more, got {config.report.top_neurons}")
    try:
        config.cards.check("config key 'cards.{}'")
    except CultureNeuronsError as exc:
        raise ConfigError(str(exc)) from None
    if config.runs("validate"):
        _check_validate(config)
    if config.runs("train"):
        parse_train(config.train, config)
    elif config.train is not None:  # switched off: its keys and types are still checked, its values are not
        build_section(TrainSection, _train_keys(config.train), "train")


def _check_validate(config: PipelineConfig) -> None:
    v = config.validate
    if v.nlu_identification is not None:
        _benchmark("validate.nlu_identification", v.nlu_identification, ("nlu",))
    for key in ("nlu_identification_limit", "identification_per_group", "max_per_group", "nlu_limit"):
        if getattr(v, key) is not None and getattr(v, key) < 1:
            raise ConfigError(f"config key 'validate.{key}' must be at least 1, got {getattr(v, key)}")
    try:
        v.options().validate()
    except CultureNeuronsError as exc:
        raise ConfigError(f"config section [validate]: {exc}") from None


# ---------------------------------------------------------------------------------------------
# [train]

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


def _train_keys(table: dict[str, Any]) -> dict[str, Any]:
    """The ``[train]`` table without its ``enabled`` switch, which is the pipeline's and not ``TrainConfig``'s
    (so the step's inputs are the same whether or not the table says ``enabled = true``)."""
    keys = dict(table)
    enabled = keys.pop("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"config key 'train.enabled' must be true/false, got {enabled!r}")
    return keys


def _train_error(key: str, message: str) -> ConfigError:
    return ConfigError(f"config key 'train.{key}'{'' if message.startswith(':') else ' '}{message}")


def _check_modules(section: Any, pipeline: PipelineConfig | None) -> None:
    specs = section.module_sets()
    if not specs:
        raise _train_error(
            "modules", 'is empty; give top, bottom, random, full, or module names such as "mlp.3,attn.5"'
        )
    labels = []
    for spec in specs:
        if spec in NAMED_SETS:
            labels.append(spec)
            continue
        bad = [name for name in spec.split(",") if name.strip() and not MODULE_NAME.match(name.strip())]
        if bad:
            raise _train_error(
                "modules",
                f"has {bad[0].strip()!r}, which is neither a module set (top, bottom, random, full) "
                "nor a module name such as mlp.3 or attn.5",
            )
        labels.append("custom")
    repeated = sorted({x for x in labels if labels.count(x) > 1})
    if repeated:
        raise _train_error(
            "modules", f"names {repeated[0]!r} twice; each set is trained once (at most one explicit module list)"
        )
    if pipeline is not None and {"top", "bottom"} & set(specs) and not pipeline.select.general.enabled:
        raise _train_error(
            "modules", "asks for top or bottom, which need the culture-general set: set select.general.enabled = true"
        )
    if {"top", "bottom", "random"} & set(specs) and not 0.0 < section.budget <= 1.0:
        raise _train_error(
            "budget",
            f"must be a fraction of the model's parameters in (0, 1], got {section.budget:g}; e.g. 0.1 for 10%",
        )


def _check_numbers(section: Any) -> None:
    for key, low in _AT_LEAST.items():
        value = getattr(section, key)
        if value is not None and value < low:
            raise _train_error(key, f"must be at least {low}, got {value}")
    for key in ("epochs", "lr"):
        if not getattr(section, key) > 0:
            raise _train_error(key, f"must be positive, got {getattr(section, key)}")
    for key in ("weight_decay", "max_grad_norm"):
        if getattr(section, key) < 0:
            raise _train_error(key, f"must be 0 or more, got {getattr(section, key)}")
    if not 0.0 <= section.lora_dropout < 1.0:
        raise _train_error("lora_dropout", f"must lie in [0, 1), got {section.lora_dropout}")
    if section.batch_size % section.micro_batch_size:
        raise _train_error(
            "batch_size",
            f"({section.batch_size}) must be a multiple of train.micro_batch_size ({section.micro_batch_size})",
        )
    if section.scheduler not in SCHEDULERS:
        raise _train_error("scheduler", f"must be one of {', '.join(SCHEDULERS)}, got {section.scheduler!r}")
    if section.dtype not in DTYPES:
        raise _train_error("dtype", f"must be one of {', '.join(DTYPES)}, got {section.dtype!r}")


def _check_data(section: Any) -> None:
    if section.data_dir is not None and not Path(section.data_dir).expanduser().exists():
        raise _train_error("data_dir", f": {section.data_dir} does not exist")
    if Path(section.data).expanduser().is_file():
        return
    if looks_like_path(section.data):
        raise _train_error("data", f": no such examples file {section.data}")
    try:
        bench = get_benchmark(section.data)
    except CultureNeuronsError:
        known = ", ".join(b.name for b in list_benchmarks() if b.kind == "nlu")
        raise _train_error(
            "data",
            f": unknown dataset {section.data!r}: not an examples file and not a benchmark; "
            f"use an NLU benchmark ({known}) or an examples JSONL",
        ) from None
    if section.part is not None and section.part not in bench.parts:
        has = f"has the parts {', '.join(bench.parts)}" if bench.parts else "has no parts"
        raise _train_error("part", f": {bench.name} {has}, not {section.part!r}")


def _check_benchmarks(section: Any, pipeline: PipelineConfig | None) -> None:
    if pipeline is None or section.benchmarks is None:
        return
    known = pipeline.evaluate.benchmarks
    for i, name in enumerate(section.benchmarks):
        if name not in known:
            raise _train_error(
                f"benchmarks[{i}]",
                f": {name} is not among evaluate.benchmarks ({', '.join(known) or 'none'}); "
                "the stage evaluates on the run's exported evaluation examples",
            )


def parse_train(table: dict[str, Any], pipeline: PipelineConfig | None = None) -> Any:
    """The checked :class:`~.sections.TrainSection` of a ``[train]`` table; ``pipeline`` fills the
    defaults that come from other sections and enables the checks across sections.

    Raises :class:`ConfigError` naming the key: an unknown key, a value of the wrong type, an empty
    module set, a budget outside (0, 1], an unknown dataset, ...
    """
    section = build_section(TrainSection, _train_keys(table), "train")
    _check_modules(section, pipeline)
    _check_numbers(section)
    _check_data(section)
    _check_benchmarks(section, pipeline)
    if section.lora and not lora_available():
        raise _train_error(
            "lora", "needs the 'peft' package: pip install 'culture-neurons[lora]' (or pip install peft)"
        )
    try:
        section.options().validate()
    except CultureNeuronsError as exc:  # a rule TrainConfig knows and the checks above do not
        raise ConfigError(f"config section [train]: {exc}") from None
    if pipeline is not None:
        if section.benchmarks is None:
            section.benchmarks = list(pipeline.evaluate.benchmarks)
        if section.n_boot is None:
            section.n_boot = pipeline.evaluate.n_boot
    return section
