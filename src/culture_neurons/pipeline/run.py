"""The config-driven run: export → score → select → evaluate → [train] → [validate] → cards → report, with resume.

:func:`run_pipeline` is the Python API; ``culture-neurons run CONFIG.toml`` and
``culture-neurons demo`` are thin layers over it. See ``docs/pipeline.md``; the step machinery is
in :mod:`.runner` and each stage in :mod:`.stages`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..analysis.stats import headline_rows
from ..distributed import broadcast_object, init_from_env, is_main
from ..fileio import ensure_writable_parent, sha256_json
from ..models.access import check_model_access, validate_device
from ..rundir import MANIFEST, REPORT_FILE
from ..version import __version__
from .config import PipelineConfig, load_config, to_toml
from .ignored import ignored_values
from .lock import RunLocked, run_lock
from .logging_sinks import log_headline
from .manifest import library_versions
from .result import RunResult
from .runner import Context, Stage
from .stages import cards, evaluate, export, report, score, select, train, validate

log = logging.getLogger("culture_neurons.pipeline")

#: The stages in order. A new stage is one module in :mod:`.stages` and one entry here.
STAGES: tuple[Stage, ...] = (
    export.STAGE,
    score.STAGE,
    select.STAGE,
    evaluate.STAGE,
    train.STAGE,
    validate.STAGE,
    cards.STAGE,
    report.STAGE,
)


def _record_config(ctx: Context, cfg: PipelineConfig) -> None:
    m = ctx.manifest
    previous = m.data.get("config")
    m.set(
        config=cfg.to_dict(),
        config_toml=to_toml(cfg),
        config_sha256=sha256_json(cfg.to_dict()),
        versions=library_versions(),
        package_version=__version__,
    )
    if previous is not None and previous != cfg.to_dict():
        m.data.setdefault("history", []).append(
            {"config_sha256": sha256_json(previous), "replaced": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        )
    m.save()


@contextlib.contextmanager
def _lock(run_dir: Path, dry_run: bool) -> Iterator[None]:
    """Rank 0 holds the run directory's lock; every rank stops when it cannot (none waits for the others)."""
    if dry_run:
        yield
        return
    with contextlib.ExitStack() as stack:
        error = None
        if is_main():
            try:
                stack.enter_context(run_lock(run_dir))
            except RunLocked as exc:
                error = str(exc)
        error = broadcast_object(error)
        if error is not None:
            raise RunLocked(error)
        yield


def _check_environment(cfg: PipelineConfig) -> None:
    """What must hold before any file is written: the device exists and the model can be found."""
    validate_device(cfg.model.device)
    check_model_access(cfg.model.name, revision=cfg.model.revision)


def run_pipeline(
    config: str | os.PathLike | dict | PipelineConfig,
    out: str | os.PathLike | None = None,
    *,
    dry_run: bool = False,
    progress: bool = True,
    overrides: dict[str, Any] | None = None,
    echo: Callable[[str], None] | None = None,
) -> RunResult:
    """Run (or resume) the whole pipeline described by ``config`` into the run directory ``out``.

    Args:
        config: a TOML path, a dict of the same shape, or a :class:`PipelineConfig`.
        out: the run directory (default: ``[run] out``, else ``runs/<config file stem>``).
        dry_run: only report which steps would run and the example counts; nothing is written
            and no model is loaded (its files are checked).
        progress: show progress bars.
        overrides: dotted config keys to override (``{"select.general.t_mlp": 0.02}``).
        echo: where the per-stage log lines go (default: the ``culture_neurons.pipeline`` logger).

    Returns:
        A :class:`RunResult`; ``result.stage_table()`` and ``result.results_table()`` are the
        summary the CLI prints.
    """
    cfg = load_config(config, overrides)
    default_name = Path(config).stem if isinstance(config, (str, os.PathLike)) else "run"
    run_dir = Path(out) if out is not None else cfg.run_dir(default_name)
    _check_environment(cfg)
    if not dry_run:
        ensure_writable_parent(run_dir / MANIFEST)
    start = time.perf_counter()
    init_from_env(cfg.model.device)  # which rank writes (and holds the lock) must be known first
    with _lock(run_dir, dry_run):
        ctx = Context(cfg, run_dir, dry_run=dry_run, progress=progress, echo=echo or log.info)
        _record_config(ctx, cfg)
        if not dry_run and ctx.main:
            ctx.manifest.begin_sitting()
        for line in ignored_values(cfg):  # set in the config but read by no stage that runs
            ctx.warn(line)
        for stage in STAGES:
            if stage.enabled(cfg):
                ctx.stage_started = time.perf_counter()
                stage.run(ctx)
                if not dry_run:
                    ctx.stage_wall[stage.name] = time.perf_counter() - ctx.stage_started
        ctx.manifest.save()
    report = run_dir / REPORT_FILE
    headline = [] if dry_run else headline_rows(run_dir, ctx.manifest.data)
    if headline and cfg.run.report_to and ctx.main:
        log_headline(cfg.run.report_to, run_dir, headline, ctx.baseline, echo=ctx.echo)
    return RunResult(
        run_dir,
        ctx.results,
        time.perf_counter() - start,
        dry_run,
        report if cfg.report.enabled and report.exists() else None,
        headline,
        ctx.baseline,
        tuple(s.name for s in STAGES),
        ctx.warnings,
        dict(ctx.stage_wall),
    )
