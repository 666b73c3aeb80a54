"""The HTML report of a run: one self-contained file with the figures embedded as PNG data URIs.

``culture-neurons report RUN_DIR`` and the pipeline's last stage both call :func:`write_report`.
The figures are also written as PNG files beside the HTML (``RUN_DIR/figures/`` for the default
``RUN_DIR/report.html``); nothing else is written, so a report of a read-only run directory can be
written anywhere with ``out``.

The page is the same, byte for byte, for a fresh run and for a resumed one, and it holds no clock
time and no absolute path of the machine. Each section lives in :mod:`.sections`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import CultureNeuronsError
from ..fileio import atomic_path, write_text_atomic
from ..version import __version__
from . import claims, stats
from .page import CSS, ReportContext, esc, shown_path
from .sections import cards, experiments, neurons, provenance, results, training, validity

DEFAULT_TOP = 25
RUN_FORMAT = "culture-neurons/run"  # the pipeline's manifest format (the pipeline is a higher layer)
NAV = (
    ("holds", "What holds"),
    ("results", "Results"),
    ("where", "Where the neurons are"),
    ("overlap", "Overlap"),
    ("ablation", "Ablation"),
    ("cross", "Cross-culture"),
    ("enhancement", "Enhancement"),
    ("train", "Fine-tuning"),
    ("validity", "Can these neurons be trusted?"),
    ("top", "Top neurons"),
    ("cards", "Neuron cards"),
    ("provenance", "Config and provenance"),
)


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    """The run directory's ``manifest.json`` (a one-line error when it is missing, corrupt or not a run manifest)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CultureNeuronsError(f"run directory {run_dir} does not exist")
    path = run_dir / "manifest.json"
    manifest = stats.read_json(path)
    if manifest is None:
        made = "is it a run directory made by `culture-neurons run`?"
        raise CultureNeuronsError(f"{run_dir} has no manifest.json; {made}")
    if manifest.get("format") != RUN_FORMAT:
        raise CultureNeuronsError(f"{path} is not a culture-neurons run manifest (format {manifest.get('format')!r})")
    steps = manifest.get("steps", {})
    if not isinstance(steps, dict) or not all(isinstance(v, dict) for v in steps.values()):
        raise CultureNeuronsError(f"{path}: key 'steps' is damaged (not a table of step records); rerun the pipeline")
    return manifest


def top_count(top_neurons: int | None, manifest: Mapping[str, Any]) -> int:
    """Rows of the top-neuron tables: ``top_neurons`` when given, else the config's ``report.top_neurons``, else 25."""
    if top_neurons is not None:
        return int(top_neurons)
    value = ((manifest.get("config") or {}).get("report") or {}).get("top_neurons")
    return DEFAULT_TOP if value is None else int(value)


def context(
    run_dir: str | Path, top_neurons: int | None = None, manifest: Mapping[str, Any] | None = None
) -> ReportContext:
    """Everything the sections read, loaded once."""
    run_dir = Path(run_dir)
    manifest = manifest or {}
    sets = stats.load_sets(run_dir)
    benches = list((manifest.get("config") or {}).get("evaluate", {}).get("benchmarks", []))
    for name in ("ablation", "enhancement"):
        benches += list((stats.read_summary(run_dir, name) or {}).get("results") or {})
    return ReportContext(
        run_dir,
        manifest,
        top_count(top_neurons, manifest),
        sets,
        stats.chance_by_benchmark(manifest),
        stats.benchmark_kinds(sorted(set(benches))),
    )


def _header(ctx: ReportContext, title: str, has_training: bool) -> list[str]:
    model = (ctx.config.get("model") or {}).get("name") or (
        (ctx.manifest.get("model") or {}).get("identity") or {}
    ).get("name_or_path", "?")
    links = "".join(f'<a href="#{a}">{esc(t)}</a>' for a, t in NAV if a != "train" or has_training)
    # No clock time or absolute path here: two runs of the same config give the same report, byte for byte.
    return [
        f"<h1>{esc(title)}</h1>",
        f'<p class="sub">Model <code>{esc(shown_path(model))}</code> · run directory '
        f"<code>{esc(ctx.run_dir.name)}</code> · "
        f"made with culture-neurons {__version__}</p>",
        f"<nav>{links}</nav>",
    ]


def render(ctx: ReportContext) -> str:
    """The whole page: the "What holds" box first, then each section in the paper's order."""
    title = (ctx.config.get("run") or {}).get("title") or "culture-neurons run"
    checked = claims.evaluate_claims(claims.read_numbers(ctx.run_dir, ctx.manifest))
    train = training.render(ctx)
    parts = [
        *_header(ctx, title, bool(train)),
        results.overall_line(checked),  # the page's first line: what the run supports overall
        results.banner(ctx),
        results.holds_box(checked),
        results.render(ctx),
        neurons.where(ctx),
        neurons.overlap(ctx),
        experiments.experiment(ctx, "ablation"),
        experiments.cross_culture(ctx),
        experiments.experiment(ctx, "enhancement"),
        train,
        validity.render(ctx),
        neurons.top(ctx),
        cards.render(ctx),
        provenance.render(ctx),
    ]
    body = "\n".join(p for p in parts if p)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
        'content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body><main>\n{body}\n</main></body></html>\n"
    )


def build_report(
    run_dir: str | Path, top_neurons: int | None = None, manifest: Mapping[str, Any] | None = None
) -> tuple[str, list[tuple[str, bytes]]]:
    """The report's HTML text and its figures ``[(name, png)]`` (nothing is written).

    ``top_neurons`` defaults to the config's ``report.top_neurons`` (25 when the manifest has none).
    """
    ctx = context(run_dir, top_neurons, manifest)
    text = render(ctx)
    return text, list(ctx.figures.items)


def figures_dir(target: Path, run_dir: Path) -> Path:
    """Where the PNG copies of a report's figures go.

    ``RUN_DIR/figures`` for a report inside the run directory, else ``<report stem>-figures/``
    beside the report: never into a run directory the report was not asked to write.
    """
    if target.parent.resolve() == run_dir.resolve():
        return run_dir / "figures"
    return target.parent / f"{target.stem}-figures"


def write_report(
    run_dir: str | Path,
    top_neurons: int | None = None,
    manifest: Mapping[str, Any] | None = None,
    out: str | Path | None = None,
) -> Path:
    """Write the self-contained report (default ``RUN_DIR/report.html``) and its figures as PNGs; returns the HTML path.

    Args:
        run_dir: the run directory (only read).
        top_neurons: rows of the top-neuron tables (default: the config's ``report.top_neurons``).
        manifest: the run's manifest (default: read from ``RUN_DIR/manifest.json``).
        out: the HTML file to write; its figures go beside it (see :func:`figures_dir`).
    """
    run_dir = Path(run_dir)
    if manifest is None:
        manifest = read_manifest(run_dir)
    elif not run_dir.is_dir():
        raise CultureNeuronsError(f"run directory {run_dir} does not exist")
    text, figures = build_report(run_dir, top_neurons, manifest)
    target = Path(out) if out is not None else run_dir / "report.html"
    folder = figures_dir(target, run_dir)
    for name, png in figures:
        with atomic_path(folder / f"{name}.png", suffix=".png") as tmp:
            tmp.write_bytes(png)
    write_text_atomic(target, text)
    return target
