"""The ``validate`` stage: the five validity analyses on the run's own data, into ``validity/``.

It reads the run directory (identification examples, control and CountryRC tables, evaluation
benchmarks, the general set), scores the identification examples again in fold x template cells
(the cells sum to the run's table), and writes ``validity/summary.json`` for the report. The set
every analysis checks is the run's own ``neurons/general.json`` (``default_set.source`` is
``given``), so the report's checks are about the set its tables describe.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from ... import rundir
from ...data.registry import build_examples, get_benchmark
from ...data.sampling import cap_examples
from ...validity.options import SelectionSettings, ValidityOptions
from ...validity.plots import save_figures
from ...validity.run import run_validity
from ...validity.sources import from_run_dir
from ...validity.study import Study
from ..runner import Context, Stage
from ..sections import eval_options, scoring_options

KEY = "validate"
FOLDER = "validity"


def _options(section: Any) -> ValidityOptions:
    if hasattr(section, "options"):
        return section.options()
    names = set(ValidityOptions.__dataclass_fields__)
    return ValidityOptions(
        **{k: (tuple(v) if isinstance(v, list) else v) for k, v in vars(section).items() if k in names}
    )


def _nlu_identification(ctx: Context, section: Any) -> list | None:
    name = getattr(section, "nlu_identification", None)
    if not name:
        return None
    bench = get_benchmark(name)
    data_dir = None if bench.builtin else ctx.config.data.data_dir
    exs = build_examples(
        name,
        split="all",
        data_dir=data_dir,
        templates=ctx.config.data.templates,
        **ctx.config.data.options.get(name, {}),
    )
    return cap_examples(exs, limit=getattr(section, "nlu_identification_limit", None) or None)


def _settings(ctx: Context) -> SelectionSettings:
    g, s = ctx.config.select.general, ctx.config.select.specific
    return SelectionSettings(
        t_mlp=g.t_mlp,
        t_attn=g.t_attn,
        r=g.r,
        mlp_sites=tuple(g.mlp_sites),
        attn_sites=tuple(g.attn_sites),
        specific_t=s.t,
        specific_z=s.z,
        specific_sites=tuple(s.sites),
    )


def run(ctx: Context) -> None:
    section = ctx.config.validate
    out = ctx.run_dir / FOLDER

    def make() -> tuple[list[Path], dict[str, Any]]:
        data, _info = from_run_dir(ctx.run_dir, _nlu_identification(ctx, section))
        # Every analysis is about the run's own general set (neurons/general.json), the one the report and the
        # claims describe; the sweep and the folds still re-select on the identification examples.
        data.default_set = data.reference_set
        ident_cap = getattr(section, "identification_per_group", None) or None
        if ident_cap:  # a smaller identification sample than the run's (the demo's budget)
            data.identification = cap_examples(data.identification, max_per_group=ident_cap)
        cap = getattr(section, "max_per_group", None) or None
        limit = getattr(section, "nlu_limit", None) or None
        data.culture = {k: cap_examples(v, max_per_group=cap) for k, v in data.culture.items()}
        data.nlu = {k: cap_examples(v, limit=limit) for k, v in data.nlu.items()}
        model, tokenizer = ctx.model()
        study = Study(
            model,
            tokenizer,
            data,
            out,
            settings=_settings(ctx),
            options=_options(section),
            scoring=scoring_options(ctx.config),
            evaluation=eval_options(ctx.config),
            progress=ctx.progress,
        )
        summary = run_validity(study)
        save_figures(summary, out)
        for name, text in summary["readings"].items():
            ctx.echo(f"[validate] {name}: {text}")
        outputs = sorted(p for p in out.rglob("*") if p.is_file() and not p.name.endswith(".tmp"))
        return outputs, {"readings": summary["readings"], "default_set": summary["default_set"]["size"]}

    depends = sorted(k for k in ctx.manifest.steps if rundir.stage_of_key(k) in ("export", "score", "select"))
    inputs = {"validate": _jsonable(vars(section))}
    if not inputs["validate"].get("faith_methods"):
        inputs["validate"].pop("faith_methods", None)  # added later; left out while unused so older runs resume
    ctx.step(KEY, "validate", "validity analyses", inputs, make, depends=depends)
    ctx.log_stage("validate")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


STAGE = Stage("validate", run, enabled=lambda config: config.runs("validate"))
