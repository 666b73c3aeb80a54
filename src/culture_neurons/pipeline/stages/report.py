"""The ``report`` stage: ``report.html`` from the run directory's files (it depends on every other step)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from ... import rundir
from ...analysis.report import write_report
from ..runner import Context, Stage


def run(ctx: Context) -> None:
    depends = sorted(k for k in ctx.manifest.steps if k != rundir.REPORT_KEY)

    def make() -> tuple[list[Path], dict[str, Any]]:
        path = write_report(ctx.run_dir, top_neurons=ctx.config.report.top_neurons, manifest=ctx.manifest.data)
        return [path], {}

    ctx.step(
        rundir.REPORT_KEY, "report", rundir.REPORT_FILE, {"report": asdict(ctx.config.report)}, make, depends=depends
    )
    ctx.log_stage("report")


STAGE = Stage("report", run, enabled=lambda config: config.report.enabled)
