"""``culture-neurons validate``: the five validity analyses on a run directory or on benchmark data."""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import click

from ..errors import InputError
from ..selection.inputs import check_fraction
from .options import ANALYSES, SelectionSettings, ValidityOptions

log = logging.getLogger(__name__)

_COUNT = click.IntRange(min=0)  # a cap or count where 0 means "all" or "none"
_POSITIVE = click.IntRange(min=1)


@contextlib.contextmanager
def keep_no_empty_folders(out: Path | None) -> Iterator[None]:
    """On a failure, remove the folders this command created under ``out`` that stayed empty (files are kept)."""
    existed = set() if out is None or not out.exists() else {out, *(p for p in out.rglob("*") if p.is_dir())}
    try:
        yield
    except BaseException:
        if out is not None and out.is_dir():
            for folder in sorted((out, *(p for p in out.rglob("*") if p.is_dir())), key=lambda p: -len(p.parts)):
                if folder not in existed and not any(folder.iterdir()):
                    folder.rmdir()
        raise


def _floats(text: str | None, option: str = "") -> tuple[float, ...] | None:
    """Comma-separated finite numbers; an option given with no number, or with NaN or inf, is an error."""
    if text is None:
        return None
    where = f"{option}: " if option else ""
    try:
        out = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise InputError(f"{where}expected comma-separated numbers, got {text!r}") from None
    if not out:
        raise InputError(f"{where}names no number ({text!r}); give comma-separated numbers or leave it out")
    if not all(math.isfinite(x) for x in out):
        raise InputError(f"{where}values must be finite numbers, got {text!r}")
    return out


def _names(text: str | None, option: str = "") -> tuple[str, ...]:
    out = tuple(x.strip() for x in (text or "").split(",") if x.strip())
    if text is not None and text.strip() and not out:
        raise InputError(f"{option or 'the list'} names nothing ({text!r}); give comma-separated names or leave it out")
    return out


# Options that only the benchmark mode (--data-dir or built-in benchmarks) reads.
_BENCHMARK_ONLY = (
    "dataset",
    "control",
    "countryrc",
    "culture",
    "nlu",
    "nlu_identification",
    "templates",
    "max_per_group",
    "heldout_per_group",
    "nlu_limit",
    "nlu_identification_limit",
    "countryrc_per_group",
)
# Options that only the explicit-files mode (--identification) reads.
_FILES_ONLY = (
    "control_file",
    "control_table",
    "countryrc_table",
    "culture_file",
    "nlu_file",
    "nlu_table",
    "nlu_identification_file",
    "reference_set",
)


def check_mode(run_dir: Path | None, data_dir: str | None, kw: Mapping[str, Any], given: set[str]) -> None:
    """Refuse two modes at once and an option the chosen mode would ignore (``given``: the options named
    on the command line)."""
    modes = [
        m for m, on in (("RUN_DIR", run_dir), ("--data-dir", data_dir), ("--identification", kw["ident_file"])) if on
    ]
    if len(modes) > 1:
        raise InputError(f"give one of RUN_DIR, --data-dir and --identification, not {' and '.join(modes)}")
    mode = modes[0] if modes else "--data-dir"
    ignored = [n for n in _BENCHMARK_ONLY if n in given] if mode != "--data-dir" else []
    ignored += [n for n in _FILES_ONLY if n in given] if mode != "--identification" else []
    if ignored:
        flag = "--" + ignored[0].replace("_", "-")
        raise InputError(f"{flag} does not apply with {mode}; leave it out (it would be ignored)")
    for spec in (*kw.get("culture_file", ()), *kw.get("nlu_file", ())):
        name, sep, path = str(spec).partition("=")
        if sep and (not name.strip() or not path.strip()):
            raise InputError(f"benchmark file {spec!r}: give name=path (both non-empty) or a path")


def build_options(kw: Mapping[str, Any]) -> ValidityOptions:
    """ValidityOptions from the parsed command line; ``--quick`` shrinks every analysis (the demo's size)."""
    analyses, sweep, factors, faith = kw["analyses"], kw["sweep"], kw["factors"], kw["faith"]
    kwargs: dict[str, Any] = {
        "folds": kw["folds"],
        "random_seeds": kw["seeds"],
        "n_boot": kw["n_boot"],
        "layer_matched": kw["layer_matched"],
        "drop_at_chance": not kw["keep_chance_benchmarks"],
    }
    if kw["quick"]:
        kwargs.update(
            t_mlp_sweep=(0.005, 0.01, 0.02),
            specific_t_sweep=(0.003,),
            specific_z_sweep=(0.0, 0.5),
            faith_top=15,
            faith_threshold=10,
            faith_random=15,
            faith_examples=12,
            additivity_k=(5, 15),
            enhance_factors=(0.0, 2.0),
            mean_examples=32,
        )
    if analyses is not None:
        kwargs["analyses"] = _names(analyses, "--analyses")
    if sweep is not None:
        kwargs["t_mlp_sweep"] = tuple(t / 100 for t in _floats(sweep, "--sweep"))
    if factors is not None:
        kwargs["enhance_factors"] = _floats(factors, "--factors")
    if faith is not None:
        kwargs.update(faith_top=faith, faith_threshold=faith, faith_random=faith)
    if kw["faith_examples"] is not None:
        kwargs["faith_examples"] = kw["faith_examples"]
    if kw.get("faith_methods"):
        kwargs["faith_methods"] = _names(kw["faith_methods"], "--faith-methods")
    opts = ValidityOptions(**kwargs)
    opts.validate()
    return opts


@click.command("validate")
@click.argument("run_dir", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--model", "model_name", help="Model (alias, folder, .gguf or hub id); default: the run's model.")
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), help="Output folder (default RUN_DIR/validity)."
)
@click.option(
    "--data-dir",
    type=click.Path(exists=True, file_okay=False),
    help="Build the data from benchmark files instead of a run.",
)
@click.option(
    "--dataset", default="blend", show_default=True, help="Cultural identification benchmark (with --data-dir)."
)
@click.option("--control", default="blend-control", show_default=True, help="Its control benchmark.")
@click.option("--countryrc", default="countryrc", show_default=True, help="CountryRC benchmark ('none' skips it).")
@click.option("--culture", default="blend", show_default=True, help="Held-out cultural benchmarks, comma-separated.")
@click.option("--nlu", default="commonsenseqa", show_default=True, help="NLU benchmarks, comma-separated.")
@click.option(
    "--nlu-identification",
    default="commonsenseqa",
    show_default=True,
    help="NLU benchmark scored for the exclusion filter (items disjoint from the NLU evaluation; 'none' skips it).",
)
@click.option(
    "--templates",
    default="cloze",
    show_default=True,
    help="Identification templates (several give the per-template analysis).",
)
@click.option("--max-per-group", type=_COUNT, default=None, help="Identification examples per country (all templates).")
@click.option(
    "--heldout-per-group", type=_COUNT, default=None, help="Held-out cultural examples per country and benchmark."
)
@click.option("--nlu-limit", type=_COUNT, default=None, help="NLU evaluation items per benchmark.")
@click.option(
    "--nlu-identification-limit", type=_COUNT, default=None, help="NLU items scored for the exclusion filter."
)
@click.option(
    "--countryrc-per-group",
    type=_COUNT,
    default=None,
    help="CountryRC examples per country (default: --max-per-group).",
)
@click.option(
    "--identification",
    "ident_file",
    type=click.Path(dir_okay=False),
    help="Explicit mode: identification examples JSONL.",
)
@click.option(
    "--control-file",
    type=click.Path(dir_okay=False),
    help="Explicit mode: control examples JSONL (scored per template).",
)
@click.option(
    "--control-table", multiple=True, type=click.Path(dir_okay=False), help="Explicit mode: control ScoreTable(s)."
)
@click.option("--countryrc-table", type=click.Path(dir_okay=False), help="Explicit mode: CountryRC ScoreTable.")
@click.option(
    "--culture-file", multiple=True, help="Explicit mode: held-out cultural benchmark file (name=path or path)."
)
@click.option("--nlu-file", multiple=True, help="Explicit mode: NLU benchmark file (name=path or path).")
@click.option(
    "--nlu-table", type=click.Path(dir_okay=False), help="Explicit mode: NLU ScoreTable for the exclusion filter."
)
@click.option(
    "--nlu-identification-file", type=click.Path(dir_okay=False), help="Explicit mode: NLU examples to score for it."
)
@click.option(
    "--reference-set",
    type=click.Path(dir_okay=False),
    help="A general NeuronSet to compare with validity's default set.",
)
@click.option("--analyses", help=f"Comma-separated subset of {', '.join(ANALYSES)}.")
@click.option("--quick", is_flag=True, help="Small sweep, sample and factor grid (minutes, not hours).")
@click.option("--folds", type=int, default=2, show_default=True)
@click.option("--random-seeds", "seeds", type=_POSITIVE, default=3, show_default=True)
@click.option("--sweep", help="t_MLP values in percent, e.g. 0.25,0.5,1,2.")
@click.option("--factors", help="Enhancement factors, e.g. 0,0.5,1.5,2,3.")
@click.option(
    "--faith", type=_POSITIVE, default=None, help="Neurons per faithfulness stratum (top, threshold, random)."
)
@click.option(
    "--faith-examples",
    type=_POSITIVE,
    default=None,
    help="Identification examples the single-neuron effects average over.",
)
@click.option(
    "--faith-methods",
    default=None,
    metavar="M1,M2",
    help="Scoring methods to compare in the faithfulness analysis (gxa, atp-mean, ig, ig-joint; docs/validity.md).",
)
@click.option("--layer-matched", is_flag=True, help="Random sets also match the per-layer counts.")
@click.option(
    "--keep-chance-benchmarks",
    is_flag=True,
    help="Pool every benchmark of a side, also those the model answers at chance (default: leave those out).",
)
@click.option("--n-boot", type=_COUNT, default=1000, show_default=True)
@click.option("--t-mlp", type=float, default=0.01, show_default=True)
@click.option("--t-attn", type=float, default=0.002, show_default=True)
@click.option("--batch-size", type=_POSITIVE, default=8, show_default=True, help="Scoring batch size (examples).")
@click.option("--eval-batch-size", type=_POSITIVE, default=32, show_default=True)
@click.option("--chat-template/--no-chat-template", default=False, show_default=True)
@click.option("--device", default=None)
@click.option("--dtype", default=None)
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def validate(run_dir: Path | None, model_name: str | None, out: Path | None, data_dir: str | None, **kw: Any) -> None:
    """Can these neurons be trusted? Threshold sensitivity, fold/template stability, specificity,
    faithfulness and intervention variants.

    On a run directory (RUN_DIR: its identification examples, control/CountryRC tables, eval
    benchmarks and general set), or with --data-dir on benchmark files. Writes summary.json,
    faithfulness.csv, stability.csv, dose_response.csv, figures and fold tables under --out.
    """
    from ..models.loading import validate_device
    from .run import run_validity

    # A job submitted without a GPU must fail here, before any data is read or the hub is asked.
    validate_device(kw["device"])
    if run_dir is None and data_dir is None and not kw["ident_file"]:
        raise InputError(
            "give a run directory, --data-dir with benchmark files, or --identification with explicit files"
        )
    ctx = click.get_current_context()
    given = {n for n in kw if ctx.get_parameter_source(n) is click.core.ParameterSource.COMMANDLINE}
    check_mode(run_dir, data_dir, kw, given)
    if run_dir is not None and not run_dir.is_dir():
        raise InputError(f"run directory {run_dir} does not exist")
    build_options(kw)  # every option value is checked before the model loads
    for name in ("t_mlp", "t_attn"):
        check_fraction(name, kw[name])
    planned = out or (run_dir / "validity" if run_dir is not None else None)
    with keep_no_empty_folders(planned):
        study = build_study(run_dir, model_name, out, data_dir, kw)
        summary = run_validity(study)
        from .plots import save_figures

        save_figures(summary, study.out)
    for name, text in summary["readings"].items():
        click.echo(f"{name}: {text}")
    for warning in (summary.get("chance") or {}).get("warnings", []):
        click.echo(warning, err=True)
    click.echo(f"wrote {study.out / 'summary.json'}")


def load_data(run_dir: Path | None, data_dir: str | None, kw: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The ValidityData of a run directory, explicit files or benchmark names; and what the run dictates
    (``model``, scoring ``options``), empty outside run-directory mode."""
    from .sources import BenchmarkSpec, Caps, from_benchmarks, from_files, from_run_dir

    if run_dir is not None:
        return from_run_dir(run_dir)
    if kw["ident_file"]:
        files = {k: kw[k] for k in ("countryrc_table", "nlu_table", "reference_set")}
        data = from_files(
            kw["ident_file"],
            control=kw["control_file"],
            control_tables=kw["control_table"],
            culture=kw["culture_file"],
            nlu=kw["nlu_file"],
            nlu_identification=kw["nlu_identification_file"],
            **files,
        )
        return data, {}
    from ..data.registry import get_benchmark

    none = lambda v: None if v in (None, "", "none") else v
    culture, nlu = _names(kw["culture"], "--culture"), _names(kw["nlu"], "--nlu")
    # Every name first: a misspelt one is named before any benchmark's files are read.
    for option, name in (
        ("--dataset", kw["dataset"]),
        ("--control", kw["control"]),
        ("--countryrc", none(kw["countryrc"])),
        ("--nlu-identification", none(kw["nlu_identification"])),
        *(("--culture", n) for n in culture),
        *(("--nlu", n) for n in nlu),
    ):
        if name is not None:
            try:
                get_benchmark(name)
            except InputError as exc:
                raise InputError(f"{option}: {exc}") from None
    spec = BenchmarkSpec(
        dataset=kw["dataset"],
        control=kw["control"],
        countryrc=none(kw["countryrc"]),
        culture=culture,
        nlu=nlu,
        nlu_identification=none(kw["nlu_identification"]),
        templates=kw["templates"],
        data_dir=data_dir,
    )
    caps = Caps(
        kw["max_per_group"],
        kw["heldout_per_group"],
        kw["nlu_limit"],
        kw["nlu_identification_limit"],
        kw["countryrc_per_group"],
    )
    return from_benchmarks(spec, caps), {}


def build_study(
    run_dir: Path | None, model_name: str | None, out: Path | None, data_dir: str | None, kw: dict[str, Any]
) -> Any:
    """Load the model and the data and return a :class:`~culture_neurons.validity.study.Study`."""
    from ..attribution.engine import ScoringOptions
    from ..evaluation.scorers import EvalOptions
    from ..models.loading import load_model
    from .study import Study

    options = build_options(kw)
    data, info = load_data(run_dir, data_dir, kw)
    model_name = model_name or info.get("model")
    scoring = {"target": "choice", "chat_template": kw["chat_template"], "batch_size": kw["batch_size"]}
    scoring.update(
        {k: v for k, v in info.get("options", {}).items() if k in ("target", "aggregation", "chat_template")}
    )
    out = out or (run_dir / "validity" if run_dir is not None else None)
    if not model_name:
        raise InputError("no model: pass --model (the run's manifest does not name one)")
    if out is None:
        raise InputError("pass --out for the validity folder")
    model, tokenizer = load_model(model_name, dtype=kw["dtype"], device=kw["device"])
    sizes = {
        "identification": len(data.identification),
        "culture": {k: len(v) for k, v in data.culture.items()},
        "nlu": {k: len(v) for k, v in data.nlu.items()},
    }
    log.info("validity data: %s", json.dumps(sizes))
    settings = SelectionSettings(t_mlp=kw["t_mlp"], t_attn=kw["t_attn"])
    evaluation = EvalOptions(scorer="loglik", chat_template=scoring["chat_template"], batch_size=kw["eval_batch_size"])
    return Study(
        model,
        tokenizer,
        data,
        out,
        settings=settings,
        options=options,
        scoring=ScoringOptions(**scoring),
        evaluation=evaluation,
        progress=not kw["quiet"],
    )
