"""The run configuration: a TOML file whose sections map one-to-one onto the Python API's arguments.

| section | keys are the arguments of |
|---|---|
| ``[run]`` | the run itself: ``out`` (run directory), ``title`` |
| ``[model]`` | :func:`culture_neurons.models.loading.load_model` (``name``, ``dtype``, ``device``, ``device_map``, ``max_memory``) and the adapter's ``site_map`` |
| ``[data]`` | :func:`culture_neurons.data.build_examples` (``data_dir``, ``countries``, ``templates``, ``labels``, per-benchmark ``options``) and ``chat_template`` |
| ``[score]`` | :class:`culture_neurons.attribution.engine.ScoringOptions` and :func:`score_examples` (``checkpoint_every``), plus which benchmarks are scored |
| ``[select.general]`` | :func:`culture_neurons.selection.select_general` |
| ``[select.specific]`` | :func:`culture_neurons.selection.select_specific_many` |
| ``[select.random]`` | :func:`culture_neurons.selection.select_random` (``seeds`` draws) |
| ``[evaluate]`` | :class:`culture_neurons.evaluation.EvalOptions` and :func:`culture_neurons.evaluation.run_ablation` (``factor``, ``n_boot``, ``seed``), plus which benchmarks and experiments |
| ``[train]`` | the optional selective fine-tuning stage (``culture_neurons.training``) |
| ``[report]`` | :func:`culture_neurons.analysis.report.write_report` |

Every key is checked before any work starts: an unknown key, a value of the wrong type, a missing
``model.name``, an unknown benchmark or an option outside its range is one error naming the key.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import sys
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Union

from ..errors import CultureNeuronsError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


class ConfigError(CultureNeuronsError):
    """A run configuration is malformed; the message names the key."""


EXPERIMENTS = ("ablation", "enhancement", "cross-culture")


@dataclass
class RunSection:
    """``[run]``: where the run lives."""

    out: str | None = None  # run directory; default runs/<config file stem>
    title: str | None = None


@dataclass
class ModelSection:
    """``[model]``: arguments of ``load_model`` plus the adapter's site map."""

    name: str = ""
    dtype: str | None = None
    device: str | None = None
    device_map: str | None = None
    max_memory: str | None = None
    site_map: str | None = None


@dataclass
class DataSection:
    """``[data]``: arguments of ``build_examples`` shared by every benchmark of the run."""

    data_dir: str | None = None
    countries: str | list[str] = "targets"
    templates: str | list[str] | None = None
    labels: str | None = None
    chat_template: bool = True  # render prompts with the model's chat template (export, scoring, evaluation)
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per benchmark: {"blend": {"max_variants": 5}}


@dataclass
class ScoreSection:
    """``[score]``: ``ScoringOptions`` fields, ``checkpoint_every``, and the benchmarks to score."""

    datasets: list[str] = field(default_factory=lambda: ["blend"])
    controls: list[str] = field(default_factory=lambda: ["blend-control"])
    countryrc: str | None = "countryrc"  # "" skips the country-name filter
    split: str = "identification"
    max_per_group: int | dict[str, int] = 0  # 0 = all; N = a fixed hash-ordered N per group; or {benchmark = N}
    target: str = "label"
    aggregation: str = "max"
    reference_compat: bool = False
    batch_size: int = 8
    padding_side: str = "left"
    sites: list[str] | None = None
    checkpoint_every: int = 20


@dataclass
class GeneralSection:
    """``[select.general]``: arguments of ``select_general``."""

    enabled: bool = True
    t_mlp: float = 0.01
    t_attn: float = 0.002
    r: float = 0.01
    mlp_sites: list[str] = field(default_factory=lambda: ["mlp.gate"])
    attn_sites: list[str] = field(default_factory=lambda: ["attn.q", "attn.k", "attn.v"])


@dataclass
class SpecificSection:
    """``[select.specific]``: arguments of ``select_specific_many``."""

    enabled: bool = True
    countries: str | list[str] | None = None  # None = every country the tables share; "targets" = the paper's 8
    t: float = 0.003
    r: float = 0.01
    z: float = 0.5
    sites: list[str] = field(default_factory=lambda: ["mlp.gate", "attn.q", "attn.k", "attn.v"])


@dataclass
class RandomSection:
    """``[select.random]``: ``seeds`` draws of ``select_random(general, seed, layer_matched=...)``."""

    seeds: int = 10
    layer_matched: bool = False


@dataclass
class SelectSection:
    general: GeneralSection = field(default_factory=GeneralSection)
    specific: SpecificSection = field(default_factory=SpecificSection)
    random: RandomSection = field(default_factory=RandomSection)


@dataclass
class EvaluateSection:
    """``[evaluate]``: ``EvalOptions`` fields, ``run_ablation`` arguments, benchmarks and experiments."""

    benchmarks: list[str] = field(default_factory=lambda: ["blend", "commonsenseqa"])
    split: str = "heldout"
    max_per_group: int | dict[str, int] = 0  # as in [score]; a group is a country, or the whole set for NLU benchmarks
    experiments: list[str] = field(default_factory=lambda: list(EXPERIMENTS))
    scorer: str = "generate"
    batch_size: int = 8
    max_new_tokens: int = 1
    scale_max_new_tokens: int = 4
    saq_max_new_tokens: int = 24
    factor: float = 2.0
    n_boot: int = 1000
    seed: int = 0


@dataclass
class ReportSection:
    """``[report]``: what the HTML report shows."""

    enabled: bool = True
    top_neurons: int = 25


@dataclass
class PipelineConfig:
    """A whole run. ``train`` is the free-form ``[train]`` table (None when the stage is off)."""

    model: ModelSection = field(default_factory=ModelSection)
    run: RunSection = field(default_factory=RunSection)
    data: DataSection = field(default_factory=DataSection)
    score: ScoreSection = field(default_factory=ScoreSection)
    select: SelectSection = field(default_factory=SelectSection)
    evaluate: EvaluateSection = field(default_factory=EvaluateSection)
    train: dict[str, Any] | None = None
    report: ReportSection = field(default_factory=ReportSection)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML-ready dict (None values kept)."""
        return dataclasses.asdict(self)

    def section(self, name: str) -> dict[str, Any]:
        value = getattr(self, name)
        return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value

    def run_dir(self, default_name: str = "run") -> Path:
        return Path(self.run.out) if self.run.out else Path("runs") / default_name


# ---------------------------------------------------------------------------------------------
# parsing and checking


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}s"
    if origin is dict:
        return "a table"
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true/false",
        type(None): "absent",
        Any: "any value",
    }.get(tp, getattr(tp, "__name__", str(tp)))


def _matches(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin in (Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if origin is list:
        return isinstance(value, list) and all(_matches(v, typing.get_args(tp)[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, tp)


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"config key {where!r} must be a table ([{where}]), got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, list(fields), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(fields)}"
        raise ConfigError(f"unknown config key '{where + '.' if where else ''}{key}'{hint}")
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        key = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, key)
            continue
        if isinstance(value, dict) and not _matches(value, tp):
            raise ConfigError(f"config key '{key}' must be {_type_name(tp)}, got a table")
        if not _matches(value, tp):
            raise ConfigError(f"config key '{key}' must be {_type_name(tp)}, got {value!r}")
        if float in typing.get_args(tp) + (tp,) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        kwargs[name] = value
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any], where: str = "config") -> PipelineConfig:
    """Build and fully check a :class:`PipelineConfig` from a dict (the parsed TOML)."""
    data = dict(data)
    train = data.pop("train", None)
    if train is not None and not isinstance(train, dict):
        raise ConfigError(f"config key 'train' must be a table ([train]), got {train!r}")
    config = _build(PipelineConfig, data, "")
    config.train = train
    validate(config)
    return config


def load_config(
    source: str | os.PathLike | dict | PipelineConfig, overrides: dict[str, Any] | None = None
) -> PipelineConfig:
    """A checked config from a TOML path, a dict or a :class:`PipelineConfig`.

    ``overrides`` maps dotted keys to values (``{"select.general.t_mlp": 0.02}``) and is applied
    before checking.
    """
    if isinstance(source, PipelineConfig):
        data = source.to_dict()
        if data.get("train") is None:
            data.pop("train", None)
    elif isinstance(source, dict):
        data = source
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text") from exc
    data = _drop_none(copy.deepcopy(data))
    for key, value in (overrides or {}).items():
        _set(data, key, value)
    return config_from_dict(data)


def builtin_config(name: str) -> Path:
    """Path of a config shipped with the package (``demo``, ``paper``)."""
    path = Path(str(resources.files("culture_neurons") / "configs" / f"{name}.toml"))
    if not path.is_file():
        raise ConfigError(f"no built-in config {name!r}; built-in: demo, paper")
    return path


def _drop_none(obj: Any) -> Any:
    # TOML has no null: a PipelineConfig turned into a dict drops its Nones so it round-trips.
    if isinstance(obj, dict):
        return {k: _drop_none(v) for k, v in obj.items() if v is not None}
    return obj


def _set(data: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"config key {dotted!r}: {part!r} is not a table")
    if value is None:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value


def _fraction(key: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"config key '{key}' is a fraction and must lie in [0, 1], got {value}")


def _benchmark(key: str, name: str, kinds: tuple[str, ...] | None = None) -> None:
    from ..data import get_benchmark

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


def cap_for(value: int | dict[str, int], benchmark: str) -> int:
    """The per-group cap of one benchmark (0 = no cap)."""
    return int(value.get(benchmark, 0)) if isinstance(value, dict) else int(value)


def validate(config: PipelineConfig) -> None:
    """Check values (not only types): required keys, names, ranges. Raises :class:`ConfigError`."""
    from ..data.registry import SPLIT_CHOICES
    from ..data.templates import LABEL_STYLES

    if not config.model.name.strip():
        raise ConfigError(
            "config key 'model.name' is required (a hub id, a local folder, a .gguf file or an alias such as smollm2-135m-instruct)"
        )
    if config.model.dtype not in (None, "float32", "bfloat16", "float16"):
        raise ConfigError(f"config key 'model.dtype' must be float32, bfloat16 or float16, got {config.model.dtype!r}")
    if config.data.labels is not None and config.data.labels not in LABEL_STYLES:
        raise ConfigError(
            f"config key 'data.labels' must be one of {', '.join(LABEL_STYLES)}, got {config.data.labels!r}"
        )
    if config.data.data_dir is not None and not Path(config.data.data_dir).expanduser().exists():
        raise ConfigError(f"config key 'data.data_dir': {config.data.data_dir} does not exist")
    for bench, opts in config.data.options.items():
        _benchmark(f"data.options.{bench}", bench)
        if not isinstance(opts, dict):
            raise ConfigError(f"config key 'data.options.{bench}' must be a table of benchmark options")
    s = config.score
    if not s.datasets:
        raise ConfigError("config key 'score.datasets' must name at least one benchmark")
    for i, name in enumerate(s.datasets):
        _benchmark(f"score.datasets[{i}]", name, ("culture",))
    for i, name in enumerate(s.controls):
        _benchmark(f"score.controls[{i}]", name, ("control",))
    if len(s.controls) not in (1, len(s.datasets)):
        raise ConfigError(
            f"config key 'score.controls' must hold one control benchmark, or one per dataset ({len(s.datasets)}); got {len(s.controls)}"
        )
    if s.countryrc:
        _benchmark("score.countryrc", s.countryrc, ("countryrc",))
    if s.split not in SPLIT_CHOICES:
        raise ConfigError(f"config key 'score.split' must be one of {', '.join(SPLIT_CHOICES)}, got {s.split!r}")
    _caps("score.max_per_group", s.max_per_group, [*s.datasets, *s.controls, *([s.countryrc] if s.countryrc else [])])
    if s.checkpoint_every < 0:
        raise ConfigError(f"config key 'score.checkpoint_every' must be 0 or more, got {s.checkpoint_every}")
    try:
        scoring_options(config).validate()
    except CultureNeuronsError as exc:
        raise ConfigError(f"config section [score]: {exc}") from None
    g, sp, rnd = config.select.general, config.select.specific, config.select.random
    for key in ("t_mlp", "t_attn", "r"):
        _fraction(f"select.general.{key}", getattr(g, key))
    for key in ("t", "r"):
        _fraction(f"select.specific.{key}", getattr(sp, key))
    if rnd.seeds < 0:
        raise ConfigError(f"config key 'select.random.seeds' must be 0 or more, got {rnd.seeds}")
    e = config.evaluate
    for i, name in enumerate(e.benchmarks):
        _benchmark(f"evaluate.benchmarks[{i}]", name)
    if e.split not in SPLIT_CHOICES:
        raise ConfigError(f"config key 'evaluate.split' must be one of {', '.join(SPLIT_CHOICES)}, got {e.split!r}")
    bad = [x for x in e.experiments if x not in EXPERIMENTS]
    if bad:
        raise ConfigError(
            f"config key 'evaluate.experiments': unknown experiment {bad[0]!r}; choose from {', '.join(EXPERIMENTS)}"
        )
    if e.experiments and not e.benchmarks:
        raise ConfigError("config key 'evaluate.benchmarks' is empty but experiments are requested")
    if {"ablation", "enhancement"} & set(e.experiments) and not g.enabled:
        raise ConfigError(
            "config key 'evaluate.experiments': ablation and enhancement need select.general.enabled = true"
        )
    if "cross-culture" in e.experiments and not sp.enabled:
        raise ConfigError("config key 'evaluate.experiments': cross-culture needs select.specific.enabled = true")
    _caps("evaluate.max_per_group", e.max_per_group, e.benchmarks)
    if e.n_boot < 1:
        raise ConfigError(f"config key 'evaluate.n_boot' must be at least 1, got {e.n_boot}")
    try:
        eval_options(config).validate()
    except CultureNeuronsError as exc:
        raise ConfigError(f"config section [evaluate]: {exc}") from None
    if config.report.top_neurons < 0:
        raise ConfigError(f"config key 'report.top_neurons' must be 0 or more, got {config.report.top_neurons}")
    if config.train is not None:
        from .stages import check_train_config

        check_train_config(config)


def scoring_options(config: PipelineConfig, control: bool = False) -> Any:
    from ..attribution.engine import ScoringOptions

    s = config.score
    return ScoringOptions(
        target=s.target,
        aggregation=s.aggregation,
        control=control,
        reference_compat=s.reference_compat,
        batch_size=s.batch_size,
        padding_side=s.padding_side,
        chat_template=config.data.chat_template,
        sites=tuple(s.sites) if s.sites else None,
    )


def eval_options(config: PipelineConfig) -> Any:
    from ..evaluation.scorers import EvalOptions

    e = config.evaluate
    return EvalOptions(
        scorer=e.scorer,
        batch_size=e.batch_size,
        chat_template=config.data.chat_template,
        max_new_tokens=e.max_new_tokens,
        scale_max_new_tokens=e.scale_max_new_tokens,
        saq_max_new_tokens=e.saq_max_new_tokens,
    )


def to_toml(config: PipelineConfig) -> str:
    """The config as TOML text (for the manifest, the report and ``--dry-run``)."""
    data = _drop_none(config.to_dict())
    lines: list[str] = []

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f'"{k}" = {scalar(x)}' for k, x in v.items()) + " }"
        raise TypeError(type(v))

    def table(prefix: str, node: dict) -> None:
        plain = {k: v for k, v in node.items() if not isinstance(v, dict) or (prefix == "data" and k == "options")}
        nested = {k: v for k, v in node.items() if k not in plain}
        if plain or not nested:
            lines.append(f"[{prefix}]")
            lines.extend(f"{k} = {scalar(v)}" for k, v in plain.items())
            lines.append("")
        for k, v in nested.items():
            table(f"{prefix}.{k}", v)

    for name, node in data.items():
        table(name, node)
    return "\n".join(lines)
