"""The run configuration: a TOML file whose sections map one-to-one onto the Python API's arguments.

Each section's keys are the arguments of:

- ``[run]``: the run itself: ``out`` (run directory), ``title``, ``report_to`` (tensorboard or wandb)
- ``[model]``: :func:`culture_neurons.models.loading.load_model` (``name``, ``revision``, ``dtype``, ``device``,
  ``device_map``, ``max_memory``) and the adapter's ``site_map``
- ``[data]``: :func:`culture_neurons.data.build_examples` (``data_dir``, ``countries``, ``templates``, ``labels``,
  per-benchmark ``options``), ``chat_template`` and per-benchmark hub ``revisions``
- ``[score]``: :class:`culture_neurons.attribution.engine.ScoringOptions` and :func:`score_examples`
  (``checkpoint_every``), plus which benchmarks are scored
- ``[select.general]``: :func:`culture_neurons.selection.select_general`
- ``[select.specific]``: :func:`culture_neurons.selection.select_specific_many`
- ``[select.random]``: :func:`culture_neurons.selection.select_random` (``seeds`` draws)
- ``[evaluate]``: :class:`culture_neurons.evaluation.EvalOptions` and :func:`culture_neurons.evaluation.run_ablation`
  (``factor``, ``n_boot``, ``seed``), plus which benchmarks and experiments
- ``[train]``: :class:`culture_neurons.training.TrainConfig` and :func:`run_selective_finetuning` (the optional
  fine-tuning stage)
- ``[validate]``: :class:`culture_neurons.validity.ValidityOptions` (the optional validity stage)
- ``[cards]``: :class:`culture_neurons.cards.CardOptions` (the neuron cards stage)
- ``[report]``: :func:`culture_neurons.analysis.report.write_report`

One rule for every section (:meth:`PipelineConfig.runs`): a section that is written runs unless it
says ``enabled = false``; a section left out runs with its defaults, except ``[train]`` and
``[validate]``, which run only when written. Values that no running stage reads are named in
warnings (:mod:`.ignored`).

The section classes are in :mod:`.sections`. Every key is checked before any work starts (see
:mod:`.checks`): an unknown key, a value of the wrong type, a non-finite number, a missing
``model.name``, an unknown benchmark or country, or an option outside its range is one error
naming the key.
"""

from __future__ import annotations

import copy
import math
import os
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import tomli_w

from ..errors import ConfigError
from .checks import validate
from .sections import EXPERIMENTS, PipelineConfig, build_section, cap_for, eval_options, scoring_options

__all__ = [
    "EXPERIMENTS",
    "ConfigError",
    "PipelineConfig",
    "build_section",
    "builtin_config",
    "builtin_names",
    "cap_for",
    "config_from_dict",
    "eval_options",
    "load_config",
    "parse_toml_value",
    "scoring_options",
    "to_toml",
    "tomllib",
]


def _finite(node: Any, where: str) -> None:
    # NaN and infinity pass every range check (nan < 0 is False), so they are refused by name here.
    if isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(f"config key '{where}' must be a finite number, got {node}")
    if isinstance(node, dict):
        for k, v in node.items():
            _finite(v, f"{where}.{k}" if where else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _finite(v, f"{where}[{i}]")


def config_from_dict(data: dict[str, Any], where: str = "config") -> PipelineConfig:
    """Build and fully check a :class:`PipelineConfig` from a dict (the parsed TOML)."""
    data = dict(data)
    _finite(data, "")
    train = data.pop("train", None)
    if train is not None and not isinstance(train, dict):
        raise ConfigError(f"config key 'train' must be a table ([train]), got {train!r}")
    config = build_section(PipelineConfig, data, "")
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
        except (ValueError, RecursionError) as exc:  # an integer of over 4,300 digits; absurd nesting
            raise ConfigError(f"{path}: a value cannot be read ({str(exc)[:120]})") from exc
        if not data:
            raise ConfigError(
                f"{path}: the config file is empty; start from `culture-neurons run paper --print-config`"
            )
    data = _drop_none(copy.deepcopy(data))
    for key, value in (overrides or {}).items():
        _set(data, key, value)
    return config_from_dict(data)


def parse_toml_value(text: str) -> Any:
    """A ``--set`` value: parsed as TOML (numbers, booleans, lists, quoted strings), else a plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def builtin_names() -> list[str]:
    """The names of the configs shipped with the package (``demo``, ``paper``, ``replication``)."""
    folder = resources.files("culture_neurons") / "configs"
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def builtin_config(name: str) -> Path:
    """Path of a config shipped with the package (one of :func:`builtin_names`)."""
    path = Path(str(resources.files("culture_neurons") / "configs" / f"{name}.toml"))
    if not path.is_file():
        raise ConfigError(f"no built-in config {name!r}; built-in: {', '.join(builtin_names())}")
    return path


def _drop_none(obj: Any) -> Any:
    # TOML has no null: a PipelineConfig turned into a dict drops its Nones so it round-trips.
    if isinstance(obj, dict):
        return {k: _drop_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, (list, tuple)):
        return [_drop_none(v) for v in obj]
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


def to_toml(config: PipelineConfig) -> str:
    """The config as TOML text (for ``--print-config``, the manifest and the report); it reads back
    to the same config, whatever characters its strings hold."""
    return tomli_w.dumps(_drop_none(config.to_dict()))
