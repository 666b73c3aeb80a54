"""The sections of a run configuration. Where a section configures an API call, its keys *are* that
call's option dataclass: :func:`options_section` builds the section from the dataclass's own fields
and defaults, so ``[score]`` cannot drift from :class:`ScoringOptions`, ``[evaluate]`` from
:class:`EvalOptions`, or ``[train]`` from :class:`TrainConfig`. A section adds only the keys of its
stage (which benchmarks, caps, checkpoints).

The one renamed key is ``[train] lr`` for ``TrainConfig.learning_rate`` (the TOML key predates the
dataclass; :data:`TRAIN_RENAMES` is where the two names meet). Which stages run: :meth:`PipelineConfig.runs`.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from ..attribution.engine import ScoringOptions
from ..errors import ConfigError
from ..evaluation.scorers import EvalOptions
from ..selection.options import GeneralOptions, SpecificOptions
from ..training.api import set_names
from ..training.modules import DEFAULT_BUDGET
from ..training.train import TrainConfig
from ..validity.options import ValidityOptions
from .cards_section import CardsSection
from .cross_culture_keys import CROSS_CULTURE_KEYS

EXPERIMENTS = ("ablation", "enhancement", "cross-culture")
TRAIN_RENAMES = {"learning_rate": "lr"}  # API field -> [train] key


def _toml_type(tp: Any) -> Any:
    # TOML has arrays, not tuples: a ``tuple[str, ...]`` option is a list of strings in the file.
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = tuple(_toml_type(a) for a in typing.get_args(tp))
        return Union[args]  # noqa: UP007 - built at run time from a tuple of types
    if origin is tuple:
        return list[typing.get_args(tp)[0]]
    return tp


def _copy_default(f: dataclasses.Field) -> dataclasses.Field:
    if f.default_factory is not dataclasses.MISSING:
        return field(default_factory=f.default_factory)
    if isinstance(f.default, tuple):  # a TOML array reads back as a list, so the default is one too
        value = list(f.default)
        return field(default_factory=lambda: list(value))
    return field(default=f.default)


def options_section(
    name: str,
    doc: str,
    api: type,
    own: list[tuple[str, Any, dataclasses.Field]],
    *,
    exclude: tuple[str, ...] = (),
    rename: dict[str, str] | None = None,
    methods: dict[str, Any] | None = None,
) -> type:
    """A section dataclass: the stage's ``own`` fields, then every field of ``api`` except ``exclude``
    (renamed by ``rename``), with the API's defaults. ``section.options(**fixed)`` builds the API object."""
    rename = dict(rename or {})
    hints = typing.get_type_hints(api)
    api_fields = [f for f in dataclasses.fields(api) if f.name not in exclude and not f.name.startswith("_")]
    specs = list(own) + [(rename.get(f.name, f.name), _toml_type(hints[f.name]), _copy_default(f)) for f in api_fields]

    def options(self: Any, **fixed: Any) -> Any:
        values = {f.name: getattr(self, rename.get(f.name, f.name)) for f in api_fields}
        values = {
            k: tuple(v) if isinstance(v, list) and typing.get_origin(hints[k]) is not list else v
            for k, v in values.items()
        }
        return api(**{**values, **fixed})

    namespace = {"__doc__": doc, "options": options, "API": api, "RENAMES": rename, **(methods or {})}
    return dataclasses.make_dataclass(name, specs, namespace=namespace)


@dataclass
class RunSection:
    """``[run]``: where the run lives, and where its headline tables are logged."""

    out: str | None = None  # run directory; default runs/<config file stem>
    title: str | None = None
    report_to: str | None = None  # "tensorboard" or "wandb" (offline unless WANDB_MODE says otherwise)


@dataclass
class ModelSection:
    """``[model]``: arguments of ``load_model`` plus the adapter's site map."""

    name: str = ""
    revision: str | None = None  # a hub branch, tag or commit hash (hub ids only)
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
    revisions: dict[str, str] = field(default_factory=dict)  # per benchmark: hub dataset revision (branch, tag, commit)


ScoreSection = options_section(
    "ScoreSection",
    "``[score]``: the benchmarks to score, their caps and checkpoints, and every ``ScoringOptions`` field "
    "(``control`` is set per table, ``chat_template`` comes from ``[data]``).",
    ScoringOptions,
    [
        ("datasets", list[str], field(default_factory=lambda: ["blend"])),
        ("controls", list[str], field(default_factory=lambda: ["blend-control"])),
        ("countryrc", str | None, field(default="countryrc")),  # "" skips the country-name filter
        ("split", str, field(default="identification")),
        ("max_per_group", int | dict[str, int], field(default=0)),  # 0 = all; N per group; or {benchmark = N}
        ("checkpoint_every", int, field(default=20)),
    ],
    exclude=("control", "chat_template"),
)


@dataclass
class GeneralSection(GeneralOptions):
    """``[select.general]``: the ``GeneralOptions`` of ``select_general``, and whether the set is selected."""

    enabled: bool = True


@dataclass
class SpecificSection(SpecificOptions):
    """``[select.specific]``: the ``SpecificOptions`` of ``select_specific_many`` (``countries``: None = every
    country the tables share; ``"targets"`` = the paper's 8), and whether the sets are selected."""

    enabled: bool = True


@dataclass
class RandomSection:
    """``[select.random]``: ``seeds`` draws of ``select_random(general, seed, layer_matched=...)``."""

    seeds: int = 10
    layer_matched: bool = False


@dataclass
class SelectSection:
    """``[select]``: the three selections, and ``exclude``: benchmarks (``"demo-nlu-id"`` or
    ``"demo-nlu-id:0.05"``) that are exported and scored like the culture set, whose top r fraction of
    neurons (per pool; r defaults to each rule's own ``r``) neither selection may keep."""

    general: GeneralSection = field(default_factory=GeneralSection)
    specific: SpecificSection = field(default_factory=SpecificSection)
    random: RandomSection = field(default_factory=RandomSection)
    exclude: list[str] = field(default_factory=list)

    def exclusions(self) -> list[tuple[str, float | None]]:
        """``(benchmark, r or None)`` of each ``exclude`` entry."""
        out = []
        for spec in self.exclude:
            bench, sep, r = spec.rpartition(":") if ":" in spec else (spec, "", "")
            out.append((bench, float(r)) if sep else (spec, None))
        return out


EvaluateSection = options_section(
    "EvaluateSection",
    "``[evaluate]``: benchmarks, caps and experiments, the ``run_ablation`` arguments (``factor``, ``n_boot``, "
    "``seed``) and every ``EvalOptions`` field (``chat_template`` comes from ``[data]``); ``enabled = false`` "
    "runs no experiment.",
    EvalOptions,
    [
        ("enabled", bool, field(default=True)),
        ("benchmarks", list[str], field(default_factory=lambda: ["blend", "commonsenseqa"])),
        ("split", str, field(default="heldout")),
        ("max_per_group", int | dict[str, int], field(default=0)),
        ("experiments", list[str], field(default_factory=lambda: list(EXPERIMENTS))),
        ("factor", float, field(default=2.0)),
        ("n_boot", int, field(default=1000)),
        ("seed", int, field(default=0)),
        *CROSS_CULTURE_KEYS,  # related, cross_culture_random
    ],
    exclude=("chat_template",),
)


def _module_sets(self: Any) -> list[str]:
    """The set specs, one per trained model: ``top``, ``bottom``, ``random``, ``full`` or ``mlp.3,attn.5``."""
    return set_names(self.modules)


TrainSection = options_section(
    "TrainSection",
    "``[train]``: the stage's keys (module sets, budget, data, evaluation) and every ``TrainConfig`` field "
    "(``lr`` is ``learning_rate``; ``seed`` also draws the bottom/random sets and the data subsample).",
    TrainConfig,
    [
        ("modules", str | list[str], field(default_factory=lambda: ["top", "bottom", "random"])),
        ("budget", float, field(default=DEFAULT_BUDGET)),
        ("data", str, field(default="demo-nlu")),
        ("data_dir", str | None, field(default=None)),
        ("part", str | None, field(default=None)),
        ("templates", str | list[str, None], field(default=None)),
        ("max_examples", int, field(default=10_000)),
        ("exclude_eval", bool, field(default=True)),
        ("benchmarks", list[str, None], field(default=None)),  # default: every evaluate.benchmarks
        ("n_boot", int | None, field(default=None)),  # default: evaluate.n_boot
        ("dtype", str, field(default="float32")),
    ],
    rename=TRAIN_RENAMES,
    methods={"module_sets": _module_sets},
)


ValidateSection = options_section(
    "ValidateSection",
    "``[validate]``: the validity stage (runs when the section is written, unless ``enabled = false``): every "
    "``ValidityOptions`` field, the NLU identification benchmark scored for the exclusion analysis, and caps on "
    "its evaluation items.",
    ValidityOptions,
    [
        ("enabled", bool, field(default=True)),
        ("nlu_identification", str | None, field(default=None)),
        ("nlu_identification_limit", int | None, field(default=None)),
        ("max_per_group", int | None, field(default=None)),
        ("nlu_limit", int | None, field(default=None)),
        ("identification_per_group", int | None, field(default=None)),
    ],
)


@dataclass
class ReportSection:
    """``[report]``: what the HTML report shows."""

    enabled: bool = True
    top_neurons: int = 25


@dataclass
class PipelineConfig:
    """A whole run. ``train`` is the ``[train]`` table as written and ``validate`` the ``[validate]``
    section (None when the section is not written); the train stage checks its table into a
    :class:`~.sections.TrainSection`. :meth:`runs` says which stages run."""

    model: ModelSection = field(default_factory=ModelSection)
    run: RunSection = field(default_factory=RunSection)
    data: DataSection = field(default_factory=DataSection)
    score: ScoreSection = field(default_factory=ScoreSection)  # type: ignore[valid-type]
    select: SelectSection = field(default_factory=SelectSection)
    evaluate: EvaluateSection = field(default_factory=EvaluateSection)  # type: ignore[valid-type]
    train: dict[str, Any] | None = None
    validate: ValidateSection | None = None  # type: ignore[valid-type]
    cards: CardsSection = field(default_factory=CardsSection)
    report: ReportSection = field(default_factory=ReportSection)

    def runs(self, stage: str) -> bool:
        """Whether ``stage`` runs: the one rule for sections. A written section runs unless it says
        ``enabled = false``; a left-out ``[train]`` or ``[validate]`` (the optional stages) does not
        run, any other stage runs with its defaults. ``evaluate`` also needs an experiment to run."""
        if stage == "train":
            return self.train is not None and self.train.get("enabled", True) is not False
        if stage == "validate":
            return self.validate is not None and self.validate.enabled
        if stage == "evaluate":
            return self.evaluate.enabled and bool(self.evaluate.experiments)
        return getattr(getattr(self, stage, None), "enabled", True)  # [cards], [report]; other stages always run

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML-ready dict (None values kept)."""
        return dataclasses.asdict(self)

    def section(self, name: str) -> dict[str, Any]:
        value = getattr(self, name)
        return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value

    def run_dir(self, default_name: str = "run") -> Path:
        return Path(self.run.out) if self.run.out else Path("runs") / default_name


# ---------------------------------------------------------------------------------------------
# parsing and type checking


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


def _section_class(tp: Any) -> type | None:
    """The section dataclass of a field typed ``Section`` or ``Section | None`` (an optional section)."""
    if dataclasses.is_dataclass(tp):
        return tp
    if typing.get_origin(tp) in (Union, types.UnionType):
        classes = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)]
        return classes[0] if len(classes) == 1 else None
    return None


def build_section(cls: type, data: Any, where: str) -> Any:
    """An instance of the section dataclass ``cls`` from a table, every key's type checked.

    Raises :class:`ConfigError` naming the key (``where.key``): unknown keys (with the closest
    known one), values of the wrong type.
    """
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
        section = _section_class(tp)
        if section is not None:
            kwargs[name] = build_section(section, value, key)
            continue
        if isinstance(value, dict) and not _matches(value, tp):
            raise ConfigError(f"config key '{key}' must be {_type_name(tp)}, got a table")
        if not _matches(value, tp):
            raise ConfigError(f"config key '{key}' must be {_type_name(tp)}, got {value!r}")
        if float in typing.get_args(tp) + (tp,) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        kwargs[name] = value
    return cls(**kwargs)


def cap_for(value: int | dict[str, int], benchmark: str) -> int:
    """The per-group cap of one benchmark (0 = no cap)."""
    return int(value.get(benchmark, 0)) if isinstance(value, dict) else int(value)


def scoring_options(config: PipelineConfig, control: bool = False) -> ScoringOptions:
    """The ``ScoringOptions`` of ``[score]``.

    ``chat_template`` comes from ``[data]``; an empty site list means every site.
    """
    s = config.score
    return s.options(
        control=control, chat_template=config.data.chat_template, sites=tuple(s.sites) if s.sites else None
    )


def eval_options(config: PipelineConfig) -> EvalOptions:
    """The ``EvalOptions`` of ``[evaluate]`` (``chat_template`` from ``[data]``)."""
    return config.evaluate.options(chat_template=config.data.chat_template)
