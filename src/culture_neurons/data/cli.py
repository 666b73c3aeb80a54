"""``culture-neurons data``: list benchmarks and countries, and export examples for scoring.

Each command is a thin layer over a public function of :mod:`culture_neurons.data` with the same
defaults (:func:`~culture_neurons.data.registry.list_benchmarks`,
:func:`~culture_neurons.data.registry.export_examples`).
"""

from __future__ import annotations

import click

from ..errors import InputError
from .countries import BENCHMARK_ALIASES, BLEND_COUNTRIES, TARGET_COUNTRIES, all_countries
from .hub import hub_provenance
from .options import parse_pairs
from .registry import SPLIT_CHOICES, Benchmark, export_examples, get_benchmark, list_benchmarks
from .sampling import Caps, cap_options


@click.group()
def data() -> None:
    """Benchmarks: list them, show one, and export examples for scoring."""


@data.command("list")
@click.option("-v", "--verbose", is_flag=True, help="Also show sources, splits, templates and citations.")
def list_cmd(verbose: bool) -> None:
    """Show the registered benchmarks, with the options each takes."""
    benchmarks = list_benchmarks()
    width = max(len(b.name) for b in benchmarks)
    kind_width = max(len(b.kind) for b in benchmarks)
    ids = {b.name: template_ids(b) for b in benchmarks}
    ids_width = max(len(t) for t in ids.values())
    for b in benchmarks:
        click.echo(f"{b.name.ljust(width)}  {b.kind.ljust(kind_width)}  {ids[b.name].ljust(ids_width)}  {b.title}")
        pad = " " * (width + 2)
        if verbose:
            for line in details(b):
                click.echo(pad + line)
        else:
            for option in b.options:
                click.echo(f"{pad}option: {option.describe()}")
    # The third column is what a newcomer otherwise cannot find: the ids that --templates takes.
    click.echo("templates: pass ids to `data export --templates` (default: the first; +id: on request, e.g. cloze)")
    click.echo("options: pass them as `--option KEY=VALUE` (or [data] options in a config); `data info NAME` shows one")


def details(benchmark: Benchmark) -> list[str]:
    """The lines ``data list -v`` and ``data info`` print under a benchmark: sources, splits, templates, options."""
    b = benchmark
    extra = f" (+ {', '.join(t.id for t in b.extra_templates)} on request)" if b.extra_templates else ""
    lines = [
        f"source:    {b.source_summary()}",
        f"splits:    {b.split_rule}",
        f"templates: {', '.join(t.id for t in b.templates)}{extra}; labels: {b.label_style}",
    ]
    if b.parts:
        lines.append(f"parts:     {', '.join(b.parts)} (default {b.parts[0]})")
    lines += [f"option:    {o.describe()}" for o in b.options]
    lines.append(f"cite:      {b.citation}")
    return lines


@data.command("info")
@click.argument("name")
def info_cmd(name: str) -> None:
    """Show one benchmark in full: its source, splits, templates and options (with defaults)."""
    b = get_benchmark(name)
    click.echo(f"{b.name} ({b.kind}): {b.title}")
    for line in details(b):
        click.echo(f"  {line}")
    if b.options:
        click.echo(f"  give options as --option KEY=VALUE, e.g. --option {b.options[0].name}={b.options[0].default}")
    else:
        click.echo("  it takes no --option")


def template_ids(benchmark: Benchmark) -> str:
    """A benchmark's template ids, comma-separated, with the on-request ones after a ``+`` (``mcq1,mcq2 +cloze``)."""
    text = ",".join(t.id for t in benchmark.templates)
    extra = ",".join(t.id for t in benchmark.extra_templates)
    return f"{text} +{extra}" if extra else text


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


def parse_benchmark_options(benchmark: str, pairs: tuple[str, ...]) -> dict[str, object]:
    """``--option KEY=VALUE`` pairs as the benchmark's typed options, checked before any work starts.

    Every declared option is returned (defaults filled in); an unknown key, a wrong type or a value
    out of range is one :class:`InputError` naming the benchmark, the option and what it accepts.
    """
    raw = parse_pairs(pairs)
    for key in raw:
        if key in ("max_per_group", "limit", "seed"):
            raise InputError(f"--option {key}: {key} is not a benchmark option; use --{key.replace('_', '-')}")
    return get_benchmark(benchmark).resolve_options(raw)


def _source_options(split: str, templates_help: str):
    """The options that say which examples of a benchmark to render (shared by both export commands)."""
    options = [
        click.option(
            "--split",
            type=click.Choice(SPLIT_CHOICES),
            default=split,
            show_default=True,
            help="Which part of the benchmark to export.",
        ),
        click.option(
            "--countries",
            multiple=True,
            help="Keep only these countries (repeat or comma-separate; 'targets' = the paper's 8).",
        ),
        click.option(
            "--data-dir",
            type=click.Path(path_type=str),
            default=None,
            help="Local benchmark files (a folder, a file, or a root with one sub-folder per benchmark). "
            "Without it: built-in data, or the Hugging Face hub.",
        ),
        click.option("--templates", default=None, help=templates_help),
        click.option(
            "--labels",
            type=click.Choice(["letters", "numbers"]),
            default=None,
            help="Option labels (default: the benchmark's own).",
        ),
        click.option("--part", default=None, help="Source part where a benchmark has several (e.g. train)."),
        click.option(
            "--option",
            "options",
            multiple=True,
            metavar="KEY=VALUE",
            help="Benchmark option, e.g. max_variants=5 or filter_scope=country for blend.",
        ),
    ]

    def decorate(func):
        func = cap_options(func)
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


@data.command("export")
@click.argument("benchmark")
@_source_options("all", "Template ids (comma-separated) or 'all'; default: the benchmark's first template.")
@click.option(
    "--model",
    default=None,
    help="Apply this model's chat template and check its label tokens (hub id, folder, GGUF or alias).",
)
@click.option(
    "--revision",
    default=None,
    help="Hub dataset revision (branch, tag or commit) when loading from the hub; recorded with a hash of the rows.",
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
    caps: Caps,
    revision: str | None,
    out: str,
) -> None:
    """Render BENCHMARK into the examples JSONL that `culture-neurons score` reads."""
    with hub_provenance(revision) as fetched:
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
            caps=caps,
            **parse_benchmark_options(benchmark, options),
        )
    click.echo(summary.table())
    for source, info in fetched.items():
        hashes = ", ".join(f"{name}: {s['rows']} rows sha256 {s['sha256'][:12]}" for name, s in info["splits"].items())
        click.echo(f"hub: {source} at {info['revision']} ({hashes})")
    chat = "chat template applied" if summary.chat_template_applied else "no chat template"
    click.echo(
        f"wrote {summary.n_examples} examples to {summary.path} (templates: {', '.join(summary.templates)}; {chat})"
    )


@data.command("export-lm-eval")
@click.argument("benchmark")
@_source_options(
    "heldout", "Template ids (comma-separated) or 'all'; default: cloze where the benchmark has it, else its first."
)
@click.option(
    "--task", "task_name", default=None, help="lm-eval task name (default cn_<benchmark>_<split>_<template>)."
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=str),
    help="Output folder for the task YAML and its data (pass it to lm_eval --include_path).",
)
def export_lm_eval_cmd(
    benchmark: str,
    split: str,
    countries: tuple[str, ...],
    data_dir: str | None,
    templates: str | None,
    labels: str | None,
    part: str | None,
    options: tuple[str, ...],
    task_name: str | None,
    caps: Caps,
    out: str,
) -> None:
    """Write BENCHMARK as an lm-evaluation-harness task (YAML + local data) that runs offline."""
    from .lm_eval_export import export_lm_eval

    done = export_lm_eval(
        benchmark,
        out,
        split=split,
        countries=list(countries) or None,
        data_dir=data_dir,
        templates=templates,
        labels=labels,
        part=part,
        task=task_name,
        max_per_group=caps.max_per_group,
        limit=caps.limit,
        seed=caps.seed,
        **parse_benchmark_options(benchmark, options),
    )
    click.echo(
        f"wrote lm-eval task {done.task} ({done.n_docs} documents, templates {', '.join(done.templates)}) "
        f"to {done.folder}"
    )
    click.echo(
        f"run it with: culture-neurons-lm-eval --model culture-neurons --include_path {done.folder} "
        f"--tasks {done.task} "
        "--model_args pretrained=MODEL[,neurons=SET.json,op=suppress]"
    )
