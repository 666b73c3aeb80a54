"""Values a run configuration sets but the run will not read: keys of a section that says
``enabled = false``, and options of a stage or a selection that will not run.

They are not errors (a switched-off section keeps its settings for the next time), so
:func:`ignored_values` returns one warning line per key, which the pipeline prints before any work
and repeats in its summary. Only values that differ from their defaults are named, so that a
config printed in full (``--print-config``, the manifest) reads back without warnings.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .sections import PipelineConfig


def _changed(section: Any, skip: tuple[str, ...] = ()) -> list[str]:
    """The fields of a section dataclass whose values differ from their defaults, in field order."""
    out = []
    for f in dataclasses.fields(section):
        if f.name in skip:
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if getattr(section, f.name) != default:
            out.append(f.name)
    return out


def _lines(where: str, keys: list[str], why: str) -> list[str]:
    return [f"[config] config key '{where}.{key}' is ignored: {why}" for key in keys]


def _evaluate(config: PipelineConfig) -> list[str]:
    e = config.evaluate
    if config.runs("evaluate"):
        if "enhancement" not in e.experiments and "factor" in _changed(e):
            return _lines("evaluate", ["factor"], "evaluate.experiments has no enhancement")
        return []
    why = "[evaluate] says enabled = false" if not e.enabled else "evaluate.experiments is empty"
    options = {f.name for f in dataclasses.fields(e.API)}
    used: set[str] = set()  # what the stages that do run read from [evaluate]
    if config.runs("train"):
        used |= {"benchmarks", "split", "max_per_group", "n_boot", *options}
    if config.runs("validate"):
        used |= options
    skip = ("enabled",) if not e.enabled else ("enabled", "experiments")
    return _lines("evaluate", [k for k in _changed(e, skip) if k not in used], f"{why}, so no experiment runs")


def _select(config: PipelineConfig) -> list[str]:
    s = config.select
    out = []
    if not s.general.enabled:
        out += _lines("select.general", _changed(s.general, ("enabled",)), "[select.general] says enabled = false")
        out += _lines(
            "select.random",
            _changed(s.random),
            "random sets are drawn at the culture-general set's size, and [select.general] says enabled = false",
        )
    elif s.random.seeds == 0 and s.random.layer_matched:
        out += _lines("select.random", ["layer_matched"], "select.random.seeds = 0 draws no random set")
    if not s.specific.enabled:
        out += _lines("select.specific", _changed(s.specific, ("enabled",)), "[select.specific] says enabled = false")
    if s.exclude and not (s.general.enabled or s.specific.enabled):
        out += _lines("select", ["exclude"], "both [select.general] and [select.specific] say enabled = false")
    return out


def _optional(config: PipelineConfig) -> list[str]:
    out = []
    if config.train is not None and not config.runs("train"):
        out += _lines("train", [k for k in config.train if k != "enabled"], "[train] says enabled = false")
    v = config.validate
    if v is not None and not v.enabled:
        out += _lines("validate", _changed(v, ("enabled",)), "[validate] says enabled = false")
    elif v is not None and v.nlu_identification is None and v.nlu_identification_limit is not None:
        out += _lines("validate", ["nlu_identification_limit"], "validate.nlu_identification is not set")
    if not config.cards.enabled:
        out += _lines("cards", _changed(config.cards, ("enabled",)), "[cards] says enabled = false")
    if not config.report.enabled:
        out += _lines("report", _changed(config.report, ("enabled",)), "[report] says enabled = false")
    return out


def ignored_values(config: PipelineConfig) -> list[str]:
    """One ``[config] config key '...' is ignored: why`` line per set value the run will not read."""
    return _select(config) + _evaluate(config) + _optional(config)
