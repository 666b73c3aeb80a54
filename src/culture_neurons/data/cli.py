"""``culture-neurons data``: list benchmarks and countries, and export examples for scoring.

Each command is a thin layer over a public function of :mod:`culture_neurons.data` with the same
defaults (:func:`~culture_neurons.data.registry.list_benchmarks`,
:func:`~culture_neurons.data.registry.export_examples`).
"""

from __future__ import annotations

import click

from ..errors import InputError
from .countries import BENCHMARK_ALIASES, BLEND_COUNTRIES, TARGET_COUNTRIES, all_countries
from .registry import SPLIT_CHOICES, export_examples, list_benchmarks


@click.group()
def data() -> None:
    """Benchmarks: list them and export examples for scoring."""


@data.command("list")
@click.option("-v", "--verbose", is_flag=True, help="Also show sources, splits, templates and citations.")
def list_cmd(verbose: bool) -> None:
    """Show the registered benchmarks."""
    benchmarks = list_benchmarks()
    width = max(len(b.name) for b in benchmarks)
    kind_width = max(len(b.kind) for b in benchmarks)
    for b in benchmarks:
        click.echo(f"{b.name.ljust(width)}  {b.kind.ljust(kind_width)}  {b.title}")
        if verbose:
            pad = " " * (width + 2)
            click.echo(f"{pad}source:    {b.source_summary()}")
            click.echo(f"{pad}splits:    {b.split_rule}")
            extra = f" (+ {', '.join(t.id for t in b.extra_templates)} on request)" if b.extra_templates else ""
            click.echo(f"{pad}templates: {', '.join(t.id for t in b.templates)}{extra}; labels: {b.label_style}")
            if b.parts:
                click.echo(f"{pad}parts:     {', '.join(b.parts)} (default {b.parts[0]})")
            if b.options:
                click.echo(f"{pad}options:   {', '.join(b.options)} (--option KEY=VALUE)")
            click.echo(f"{pad}cite:      {b.citation}")


@data.command("countries")
def countries_cmd() -> None:
    """Show the canonical country names (the groups) and the spellings each benchmark may use."""
    click.echo(f"targets (the paper's 8): {', '.join(TARGET_COUNTRIES)}")
    click.echo(f"blend (16): {', '.join(BLEND_COUNTRIES)}")
    for c in all_countries():
        aliases = [a for a in c.aliases]
        aliases += [k for per in BENCHMARK_ALIASES.values() for k, v in per.items() if v == c.key and k != c.key]
        line = c.key + (f"  (also: {', '.join(dict.fromkeys(aliases))})" if aliases else "")
        click.echo(line)


def _parse_options(pairs: tuple[str, ...]) -> dict[str, object]:
    out: dict[str, object] = {}
    for pair in pairs:
        if "=" not in pair:
            raise InputError(f"--option {pair!r}: expected KEY=VALUE")
        key, value = pair.split("=", 1)
        out[key.strip().replace("-", "_")] = value.strip()
    return out


@data.command("export")
@click.argument("benchmark")
@click.option(
    "--split",
    type=click.Choice(SPLIT_CHOICES),
    default="all",
    show_default=True,
    help="Which part of the benchmark to export.",
)
@click.option(
    "--countries",
    multiple=True,
    help="Keep only these countries (repeat or comma-separate; 'targets' = the paper's 8).",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=str),
    default=None,
    help="Local benchmark files (a folder, a file, or a root with one sub-folder per benchmark). "
    "Without it: built-in data, or the Hugging Face hub.",
)
@click.option(
    "--model",
    default=None,
    help="Apply this model's chat template and check its label tokens (hub id, folder, GGUF or alias).",
)
@click.option(
    "--templates",
    default=None,
    help="Template ids (comma-separated) or 'all'; default: the benchmark's first template.",
)
@click.option(
    "--labels",
    type=click.Choice(["letters", "numbers"]),
    default=None,
    help="Option labels (default: the benchmark's own).",
)
@click.option("--part", default=None, help="Source part where a benchmark has several (e.g. train).")
@click.option(
    "--option",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Benchmark option, e.g. max_variants=5 or filter_scope=country for blend.",
)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=str), help="Output JSONL file.")
def export_cmd(
    benchmark: str,
    split: str,
    countries: tuple[str, ...],
    data_dir: str | None,
    model: str | None,
    templates: str | None,
    labels: str | None,
    part: str | None,
    options: tuple[str, ...],
    out: str,
) -> None:
    """Render BENCHMARK into the examples JSONL that `culture-neurons score` reads."""
    summary = export_examples(
        benchmark,
        out,
        split=split,
        countries=list(countries) or None,
        data_dir=data_dir,
        model=model,
        templates=templates,
        labels=labels,
        part=part,
        **_parse_options(options),
    )
    click.echo(summary.table())
    chat = "chat template applied" if summary.chat_template_applied else "no chat template"
    click.echo(
        f"wrote {summary.n_examples} examples to {summary.path} (templates: {', '.join(summary.templates)}; {chat})"
    )
