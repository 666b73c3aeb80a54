"""``culture-neurons run``, ``report`` and ``demo``: thin layers over :func:`run_pipeline` and :func:`write_report`."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import click

from ..analysis.claims import claims_lines
from ..analysis.report import write_report
from ..distributed import is_main, leave
from .config import ConfigError, builtin_config, load_config, parse_toml_value, to_toml
from .demo import demo_config
from .result import format_table
from .run import run_pipeline


def _overrides(pairs: tuple[str, ...]) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r} must look like KEY=VALUE, e.g. select.general.t_mlp=0.02")
        out[key.strip()] = parse_toml_value(value.strip())
    return out


def _config_source(config: str) -> Path:
    path = Path(config)
    if path.is_file():
        return path
    if path.suffix == "" and not path.exists():
        return builtin_config(config)
    raise ConfigError(f"config file {path} does not exist (built-in configs: demo, paper)")


def print_summary(result, wall: float) -> None:
    """What ``run`` and ``demo`` print at the end: stages, baselines, headline table, what holds, warnings."""
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
@click.option("--dry-run", is_flag=True, help="Show which steps would run and the example counts; write nothing.")
@click.option("--print-config", is_flag=True, help="Print the full, checked config as TOML and exit.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or per-stage lines; only the summary.")
def run(config: str, out: str | None, sets: tuple[str, ...], dry_run: bool, print_config: bool, quiet: bool) -> None:
    """Run (or resume) the whole pipeline described by CONFIG (a TOML file, or a built-in name: demo, paper).

    Finished steps whose inputs did not change are skipped, so rerunning the same command resumes.
    """
    source = _config_source(config)
    cfg = load_config(source, _overrides(sets))
    if print_config:
        click.echo(to_toml(cfg))
        return
    start = time.perf_counter()
    result = run_pipeline(cfg, out or cfg.run_dir(source.stem), dry_run=dry_run, progress=not quiet, echo=_echo(quiet))
    print_summary(result, time.perf_counter() - start)
    leave()


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False),
    default=None,
    help="HTML file to write (default: RUN_DIR/report.html).",
)
@click.option(
    "--top",
    "top_neurons",
    type=click.IntRange(min=0),
    default=None,
    help="Rows in the top-neuron table (default: the run config's report.top_neurons).",
)
def report(run_dir: str, out: str | None, top_neurons: int | None) -> None:
    """Write the self-contained HTML report of a run directory."""
    path = write_report(run_dir, top_neurons=top_neurons, out=out)
    click.echo(f"Report: {Path(path).resolve()}")


@click.command()
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
    """Run the offline end-to-end demo on SmolLM2-135M-Instruct and write the HTML report (~10 min on 2 CPU cores)."""
    cfg = demo_config(data_dir, out, **_overrides(sets))
    if not quiet:
        click.echo(
            f"culture-neurons demo: {cfg.model.name}, scoring target '{cfg.score.target}', "
            f"scorer '{cfg.evaluate.scorer}', "
            f"run directory {cfg.run.out}",
            err=True,
        )
    start = time.perf_counter()
    result = run_pipeline(cfg, cfg.run.out, dry_run=dry_run, progress=not quiet, echo=_echo(quiet))
    print_summary(result, time.perf_counter() - start)
    leave()
