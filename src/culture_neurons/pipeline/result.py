"""What a pipeline run returns: each step's outcome and the headline numbers, as plain tables."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..analysis.stats import format_p

DEFAULT_STAGES = ("export", "score", "select", "evaluate", "train", "validate", "report")


@dataclass
class StepResult:
    """One step of this invocation: ran, skipped (fresh), or, in a dry run, would run / up to date."""

    key: str
    stage: str
    label: str
    status: str  # ran | skipped | would run | up to date | failed | not run
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunResult:
    """What :func:`run_pipeline` did: the run directory, each step's outcome, and the headline numbers."""

    run_dir: Path
    steps: list[StepResult]
    seconds: float
    dry_run: bool = False
    report: Path | None = None
    headline: list[dict[str, Any]] = field(default_factory=list)
    baseline: list[dict[str, Any]] = field(default_factory=list)
    stages: tuple[str, ...] = DEFAULT_STAGES
    warnings: list[str] = field(default_factory=list)
    #: each stage's wall time in this sitting; its steps' own times leave out the work between steps (batched
    #: evaluation passes, loading the model), so the table reads these where a stage ran
    stage_wall: dict[str, float] = field(default_factory=dict)

    def stage_table(self) -> str:
        rows = []
        for stage in self.stages:
            steps = [s for s in self.steps if s.stage == stage]
            if not steps:
                continue
            statuses: dict[str, int] = {}
            for s in steps:
                statuses[s.status] = statuses.get(s.status, 0) + 1
            what = ", ".join(f"{n} {k}" for k, n in statuses.items())
            seconds = self.stage_wall.get(stage, sum(s.seconds for s in steps))
            rows.append([stage, str(len(steps)), what, f"{seconds:.1f}"])
        return format_table(["stage", "steps", "status", "seconds"], rows)

    def results_table(self) -> str:
        rows = []
        for h in self.headline:
            rows.append(
                [
                    h["experiment"],
                    h["benchmark"],
                    h["split"],
                    str(h["n"]),
                    _pct(h.get("chance")),
                    _pct(h["original"]),
                    _pct(h["target"]),
                    _pct(h["random"]),
                    _signed(h["difference"]),
                    format_p(h.get("p")),
                ]
            )
        return format_table(
            ["experiment", "benchmark", "split", "n", "chance", "original", "intervened", "random", "Δ vs random", "p"],
            rows,
        )


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _signed(v: float | None) -> str:
    return "-" if v is None else f"{v:+.1f}"


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain aligned text table (first column left-aligned, the rest right-aligned)."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)] if rows else [len(h) for h in header]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), sep, *(line(r) for r in rows)])
