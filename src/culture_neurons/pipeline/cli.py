"""``culture-neurons run``, ``report`` and ``demo``: thin layers over :func:`run_pipeline` and :func:`write_report`."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import click

from ..analysis.claims import claims_lines
from ..analysis.replication import write_replication_page
from ..analysis.report import read_manifest, write_report
from ..analysis.summary_export import model_tag, write_run_summary
from ..distributed import is_main, leave
from .config import ConfigError, builtin_config, builtin_names, load_config, parse_toml_value, to_toml
from .demo import demo_config
from .estimate import DEMO_MEASURED
from .replication_command import replication_command
from .result import format_table
from .run import run_pipeline
from .study_size import planned_lines


def _overrides(pairs: tuple[str, ...], flags: tuple[str, ...] = ()) -> dict:
    """``--set KEY=VALUE`` pairs as ``{dotted key: TOML value}``; ``flags`` are keys the command takes as options."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r} must look like KEY=VALUE, e.g. select.general.t_mlp=0.02")
        if key.strip() in flags:  # the demo takes these as its own arguments, not as config keys
            flag = key.strip().replace("_", "-")
            raise ConfigError(f"--set {pair!r}: {key.strip()} is not a config key; use --{flag}")
        try:
            out[key.strip()] = parse_toml_value(value.strip())
        except ValueError as exc:  # tomllib's own limit: an integer of more than 4300 digits
            raise ConfigError(f"--set {key.strip()}: the value cannot be read ({str(exc).split(':')[0]})") from None
    return out


def _config_source(config: str) -> Path:
    path = Path(config)
    if path.is_file():
        return path
    if path.suffix == "" and not path.exists():
        return builtin_config(config)
    raise ConfigError(f"config file {path} does not exist (built-in configs: {', '.join(builtin_names())})")


def _run_overrides(sets: tuple[str, ...], model: str | None, data_dir: str | None) -> dict:
    """``--set`` pairs plus ``--model`` (``model.name``) and ``--data-dir`` (``data.data_dir``), which win."""
    out = _overrides(sets)
    if model is not None:
        out["model.name"] = model
    if data_dir is not None:
        out["data.data_dir"] = data_dir
    return out


def print_summary(result, wall: float, config=None) -> None:
    """What ``run`` and ``demo`` print at the end: stages, baselines, headline table, what holds, warnings (a dry run
    with its ``config``: the planned work, :func:`~.study_size.planned_lines`)."""
    if not is_main():  # under torchrun, one summary
        return
    click.echo("")
    click.echo(result.stage_table())
    if result.dry_run:
        counts = [s for s in result.steps if s.stage in ("export", "score") and s.info.get("n") is not None]
        if counts:
            click.echo("")
            click.echo(
                format_table(
                    ["step", "examples", "status"],
                    [[s.label if s.stage == "export" else s.key, str(s.info["n"]), s.status] for s in counts],
                )
            )
        if config is not None:
            click.echo("")
            exported = {s.key: int(s.info["n"]) for s in counts if s.stage == "export"}
            click.echo("\n".join(planned_lines(config, exported)))
        click.echo(f"\ndry run: nothing was written ({result.run_dir})")
        return
    if result.baseline:
        click.echo("")
        click.echo("Baseline accuracy (no intervention), against chance:")
        for b in result.baseline:
            acc = "-" if b["accuracy"] is None else f"{b['accuracy']:.1f}%"
            chance = "-" if b["chance"] is None else f"{b['chance']:.1f}%"
            click.echo(f"  {b['benchmark']}: {acc} (chance {chance}, n={b['n']})")
    if result.headline:
        click.echo("")
        click.echo(result.results_table())
    holds = claims_lines(result.run_dir)
    if holds:
        click.echo("")
        click.echo("\n".join(holds))
    if result.warnings:
        click.echo("")
        for warning in result.warnings:
            click.echo(warning)
    click.echo("")
    if result.report is not None:
        click.echo(f"Report: {result.report.resolve()}")
    click.echo(f"Run directory: {result.run_dir.resolve()} (wall time {wall / 60:.1f} min)")


def _echo(quiet: bool):
    log = logging.getLogger("culture_neurons.pipeline")

    def echo(msg: str) -> None:
        if not quiet:
            click.echo(msg, err=True)
        log.debug(msg)

    return echo


@click.command()
@click.argument("config")
@click.option(
    "--out",
    "-o",
    type=click.Path(file_okay=False),
    default=None,
    help="Run directory (default: [run] out in the config).",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config key, e.g. --set select.general.t_mlp=0.02 (repeatable).",
)
@click.option(
    "--model",
    "-m",
    default=None,
    help="The model (config key model.name): a hub id, a folder, a .gguf file or an alias. Without --out and "
    "[run] out, the run directory is runs/<config>-<model>.",
)
@click.option(
    "--data-dir",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Folder of the benchmark files (config key data.data_dir), e.g. ../shared/data.",
)
@click.option("--dry-run", is_flag=True, help="Show which steps would run, the example counts and the planned work.")
@click.option("--print-config", is_flag=True, help="Print the full, checked config as TOML and exit.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or per-stage lines; only the summary.")
def run(
    config: str,
    out: str | None,
    sets: tuple[str, ...],
    model: str | None,
    data_dir: str | None,
    dry_run: bool,
    print_config: bool,
    quiet: bool,
) -> None:
    """Run (or resume) the whole pipeline described by CONFIG (a TOML file, or a built-in name: demo, paper,
    replication).

    Finished steps whose inputs did not change are skipped, so rerunning the same command resumes.
    """
    source = _config_source(config)
    cfg = load_config(source, _run_overrides(sets, model, data_dir))
    if print_config:
        click.echo(to_toml(cfg))
        return
    default = source.stem if model is None else f"{source.stem}-{model_tag(model)}"
    start = time.perf_counter()
    result = run_pipeline(cfg, out or cfg.run_dir(default), dry_run=dry_run, progress=not quiet, echo=_echo(quiet))
    print_summary(result, time.perf_counter() - start, cfg)
    leave()


@click.command()
@click.argument("run_dir", nargs=-1, type=click.Path(exists=True), metavar="RUN_DIR | SUMMARY.json...")
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False),
    default=None,
    help="The file to write: the HTML report (default RUN_DIR/report.html), or with --replication the page "
    "(e.g. docs/replication.md).",
)
@click.option(
    "--top",
    "top_neurons",
    type=click.IntRange(min=0),
    default=None,
    help="Rows in the top-neuron table (default: the run config's report.top_neurons).",
)
@click.option(
    "--summary-json",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the run's small replication summary (JSON, no score tables) to this file instead of the HTML "
    "report, e.g. docs/replication/<model>.json.",
)
@click.option(
    "--replication",
    is_flag=True,
    help="Write the replication page (markdown) to --out from the summary JSON files given (none: the skeleton).",
)
def report(
    run_dir: tuple[str, ...], out: str | None, top_neurons: int | None, summary_json: str | None, replication: bool
) -> None:
    """Write the self-contained HTML report of RUN_DIR, its replication summary (--summary-json), or the
    replication page from summaries (--replication SUMMARY.json ...)."""
    paths = run_dir
    if replication:
        if out is None or summary_json is not None or top_neurons is not None:
            raise click.UsageError("--replication writes one page: give --out PAGE.md, and no --summary-json or --top")
        click.echo(f"Page: {write_replication_page(list(paths), out)}")
        return
    if len(paths) != 1 or Path(paths[0]).is_file():
        given = ", ".join(paths) or "nothing"
        raise click.UsageError(f"give one run directory (got {given}); or --replication SUMMARY.json ... --out PAGE.md")
    folder = paths[0]
    if summary_json is not None:
        if out is not None or top_neurons is not None:
            raise click.UsageError("--summary-json writes only the summary: leave out --out and --top")
        manifest = read_manifest(folder)
        path = write_run_summary(folder, summary_json, replication_command(manifest.get("config") or {}))
        click.echo(f"Summary: {path}")
        return
    path = write_report(folder, top_neurons=top_neurons, out=out)
    click.echo(f"Report: {Path(path).resolve()}")


DEMO_HELP = (
    "Run the offline end-to-end demo on SmolLM2-135M-Instruct and write the HTML report "
    f"({DEMO_MEASURED.text} when measured on {DEMO_MEASURED.machine}, {DEMO_MEASURED.date}; the first run also "
    f"dequantises the GGUF file once, {DEMO_MEASURED.first_run_s} s; it prints an estimate for your machine "
    "before scoring)."
)


@click.command(help=DEMO_HELP)
@click.option("--out", "-o", type=click.Path(file_okay=False), default=None, help="Run directory (default: runs/demo).")
@click.option(
    "--data-dir",
    type=click.Path(exists=True),
    default=None,
    help=(
        "Use the real BLEnD and CommonsenseQA files under this folder (e.g. ../shared/data) "
        "instead of the built-in demo sets."
    ),
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a demo config key, e.g. --set evaluate.n_boot=200.",
)
@click.option("--dry-run", is_flag=True, help="Show which steps would run and the example counts; write nothing.")
@click.option("--quiet", "-q", is_flag=True)
def demo(out: str | None, data_dir: str | None, sets: tuple[str, ...], dry_run: bool, quiet: bool) -> None:
    """Run the offline end-to-end demo (the help text, with its measured time, is ``DEMO_HELP``)."""
    cfg = demo_config(data_dir, out, **_overrides(sets, ("out", "data_dir")))
    if not quiet:
        click.echo(
            f"culture-neurons demo: {cfg.model.name}, scoring target '{cfg.score.target}', "
            f"scorer '{cfg.evaluate.scorer}', "
            f"run directory {cfg.run.out}",
            err=True,
        )
    start = time.perf_counter()
    result = run_pipeline(cfg, cfg.run.out, dry_run=dry_run, progress=not quiet, echo=_echo(quiet))
    print_summary(result, time.perf_counter() - start, cfg)
    leave()
