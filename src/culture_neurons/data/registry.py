"""The benchmark registry, and turning a benchmark into ``Example`` JSONL.

Each benchmark is one small declarative :class:`Benchmark`: where its data comes from (local files
in the published format, a hub id, or built-in data), how rows become :class:`Item` records (its
``load`` function, which also assigns the split), its instruction templates and its label style.
:func:`build_examples` and :func:`export_examples` are the public API; ``culture-neurons data
export`` is a thin layer over the latter with the same defaults.
"""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from .countries import resolve_countries
from .example import Example, write_examples
from .hub import HubSource, HubUnavailable
from .options import BenchmarkOption, resolve_options
from .sampling import Caps
from .templates import LABEL_STYLES, Item, Template, render_item

SPLIT_CHOICES = ("identification", "heldout", "train", "all")
#: The accuracies a benchmark may report as its own: ``acc`` (summed option log-likelihood, or the
#: letter read) and ``acc_norm`` (log-likelihood per character, lm-eval's name for it).
METRICS = ("acc", "acc_norm")


@dataclass(frozen=True)
class LoadRequest:
    """What a benchmark's ``load`` function receives.

    ``path`` is the located data (a folder or a file), or ``None`` for built-in data or the hub.
    ``countries`` is the user's filter (loaders may use it to skip work; the registry filters again).
    ``part`` names the source part (``validation``, ``train``, ``test``) where a benchmark has several.
    ``options`` holds every declared option of the benchmark, typed and checked, defaults filled in.
    """

    path: Path | None
    countries: tuple[str, ...] | None = None
    part: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Benchmark:
    """A benchmark definition. See ``docs/data.md`` for how to add one.

    ``options`` declares the options its ``load`` reads (:class:`~.options.BenchmarkOption`); the
    loader gets them typed and checked in ``LoadRequest.options``. ``metric`` is the accuracy that
    is the convention for the benchmark (``acc_norm`` for ARC, OpenBookQA and HellaSwag).
    """

    name: str
    title: str
    kind: str  # culture | control | countryrc | generation | scale | nlu
    load: Callable[[LoadRequest], list[Item]]
    templates: tuple[Template, ...]
    extra_templates: tuple[Template, ...] = ()
    label_style: str = "letters"
    folder: str | None = None
    markers: tuple[str, ...] = ()
    files: str = ""
    hub: HubSource | None = None
    builtin: bool = False
    by_country: bool = True
    parts: tuple[str, ...] = ()
    options: tuple[BenchmarkOption, ...] = ()
    split_rule: str = ""
    citation: str = ""
    metric: str = "acc"

    def source_summary(self) -> str:
        bits = []
        if self.files:
            bits.append(f"files: {self.files}")
        if self.hub:
            bits.append(f"hub: {self.hub.id}" + (f" ({self.hub.config})" if self.hub.config else ""))
        if self.builtin:
            bits.append("built-in")
        return "; ".join(bits)

    def resolve_options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Every option of this benchmark, typed: ``given`` converted and checked, the rest at their defaults.

        Raises:
            InputError: an unknown key, a wrong type or a value out of range (one line naming the option).
        """
        return resolve_options(self.name, self.options, given)


_REGISTRY: dict[str, Benchmark] = {}


def register(benchmark: Benchmark) -> Benchmark:
    """Add a benchmark to the registry (a name may be registered once)."""
    if benchmark.name in _REGISTRY and _REGISTRY[benchmark.name] is not benchmark:
        raise ValueError(f"benchmark {benchmark.name!r} is already registered")
    if benchmark.label_style not in LABEL_STYLES:
        raise ValueError(f"benchmark {benchmark.name!r}: unknown label style {benchmark.label_style!r}")
    ids = [t.id for t in benchmark.templates + benchmark.extra_templates]
    if len(set(ids)) != len(ids) or not benchmark.templates:
        raise ValueError(f"benchmark {benchmark.name!r}: template ids must be unique and non-empty")
    if benchmark.metric not in METRICS:
        raise ValueError(f"benchmark {benchmark.name!r}: unknown metric {benchmark.metric!r}")
    names = [o.name for o in benchmark.options]
    if len(set(names)) != len(names) or not all(isinstance(o, BenchmarkOption) for o in benchmark.options):
        raise ValueError(f"benchmark {benchmark.name!r}: options must be BenchmarkOption values with unique names")
    _REGISTRY[benchmark.name] = benchmark
    return benchmark


def _ensure_loaded() -> None:
    importlib.import_module("culture_neurons.data.benchmarks")


def list_benchmarks() -> list[Benchmark]:
    """Every registered benchmark, in registration order."""
    _ensure_loaded()
    return list(_REGISTRY.values())


def get_benchmark(name: str) -> Benchmark:
    """The benchmark called ``name``; an unknown name lists the known ones."""
    _ensure_loaded()
    key = name.strip().lower()
    if key not in _REGISTRY:
        raise InputError(f"unknown benchmark {name!r}; known: {', '.join(_REGISTRY)} (see `culture-neurons data list`)")
    return _REGISTRY[key]


def metric_of(name: str | None) -> str:
    """The metric a benchmark's ``score`` follows under the ``loglik`` scorer: its registered convention (``acc`` or
    ``acc_norm``); ``acc`` for a name the registry does not know (a user's own file)."""
    _ensure_loaded()
    found = _REGISTRY.get((name or "").strip().lower())
    return found.metric if found is not None else "acc"


def locate_data(benchmark: Benchmark, data_dir: str | Path) -> Path:
    """Where a benchmark's files are under ``data_dir``.

    ``data_dir`` may hold the files directly, be one of the files, or be a root with a
    ``<folder>/`` sub-folder per benchmark (like ``../shared/data``).
    """
    path = Path(data_dir).expanduser()
    if not path.exists():
        raise InputError(f"--data-dir {path} does not exist")
    if path.is_file():
        return path
    if any((path / m).exists() for m in benchmark.markers):
        return path
    if benchmark.folder and (path / benchmark.folder).exists():
        return path / benchmark.folder
    return path


def _hub_message(benchmark: Benchmark, reason: str) -> str:
    where = f"a folder holding {benchmark.files}" if benchmark.files else "its files"
    sub = f", or a parent folder with a '{benchmark.folder}/' sub-folder" if benchmark.folder else ""
    return (
        f"{benchmark.name}: no --data-dir given and the hub copy could not be loaded ({reason}). "
        f"Download the published files and pass --data-dir DIR ({where}{sub})"
    )


def load_items(
    name: str,
    data_dir: str | Path | None = None,
    countries: Sequence[str] | str | None = None,
    part: str | None = None,
    **options: Any,
) -> list[Item]:
    """Load a benchmark's items (all splits, all its countries unless ``countries`` narrows them).

    With ``data_dir`` the local files are read. Without it, built-in data is used where the
    benchmark has some, and otherwise the hub copy (``datasets.load_dataset``).
    """
    benchmark = get_benchmark(name)
    wanted = resolve_countries(countries)
    if part is not None and benchmark.parts and part not in benchmark.parts:
        raise InputError(f"{benchmark.name}: unknown part {part!r}; choose one of {', '.join(benchmark.parts)}")
    typed = benchmark.resolve_options(options)
    if part is not None and not benchmark.parts:
        raise InputError(f"{benchmark.name} has no parts to choose from; drop --part")
    path = locate_data(benchmark, data_dir) if data_dir is not None else None
    if path is None and not benchmark.builtin and benchmark.hub is None:
        raise InputError(
            f"{benchmark.name} has no built-in or hub copy; pass --data-dir DIR with {benchmark.files or 'its files'}"
        )
    request = LoadRequest(path=path, countries=wanted, part=part, options=typed)
    try:
        items = benchmark.load(request)
    except HubUnavailable as exc:
        if path is not None:
            raise
        raise InputError(_hub_message(benchmark, str(exc))) from exc
    if wanted is not None and benchmark.by_country:
        items = [it for it in items if it.group in wanted]
    ids = Counter(it.id for it in items)
    dup = [i for i, n in ids.items() if n > 1]
    if dup:  # a loader bug, or a source file with repeated ids
        places = [it.source for it in items if it.id == dup[0] and it.source]
        where = f" ({' and '.join(places)})" if places else ""
        raise InputError(f"{benchmark.name}: duplicate item id {dup[0]!r}{where}; ids must be unique")
    return items


def select_templates(benchmark: Benchmark, templates: str | Sequence[str] | None) -> tuple[Template, ...]:
    """``None`` → the first template; ``"all"`` → every main template; else ids (a list or comma string)."""
    if templates is None:
        return benchmark.templates[:1]
    if isinstance(templates, str):
        templates = [t for t in templates.split(",") if t.strip()]
    names = [t.strip() for t in templates]
    if names == ["all"]:
        return benchmark.templates
    known = {t.id: t for t in benchmark.templates + benchmark.extra_templates}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InputError(f"{benchmark.name}: unknown template {unknown[0]!r}; choose from {', '.join(known)} or 'all'")
    return tuple(known[n] for n in dict.fromkeys(names))


def build_examples(
    name: str,
    split: str = "all",
    countries: Sequence[str] | str | None = None,
    data_dir: str | Path | None = None,
    tokenizer: Any = None,
    templates: str | Sequence[str] | None = None,
    labels: str | None = None,
    part: str | None = None,
    **options: Any,
) -> list[Example]:
    """Render a benchmark into examples: one per (item, template), items in source order.

    Args:
        name: benchmark name (``culture-neurons data list``).
        split: ``identification``, ``heldout``, ``train`` or ``all``.
        countries: keep only these countries (canonical names or any alias; ``targets`` = the 8).
        data_dir: local files (see :func:`locate_data`); ``None`` = built-in data or the hub.
        tokenizer: when given and it has a chat template, prompts are rendered with it.
        templates: ``None`` (the first), ``"all"``, or template ids.
        labels: ``letters`` or ``numbers`` (default: the benchmark's own).
        part: source part for benchmarks that have several (e.g. QNLI ``train``).
        options: benchmark-specific options (e.g. BLEnD ``max_variants``).
    """
    benchmark = get_benchmark(name)
    if split not in SPLIT_CHOICES:
        raise InputError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_CHOICES)}")
    style = labels or benchmark.label_style
    if style not in LABEL_STYLES:
        raise InputError(f"unknown label style {style!r}; choose one of {', '.join(LABEL_STYLES)}")
    chosen = select_templates(benchmark, templates)
    items = load_items(name, data_dir=data_dir, countries=countries, part=part, **options)
    available = Counter(it.split for it in items)
    if split != "all":
        items = [it for it in items if it.split == split]
    if not items:
        have = ", ".join(f"{s}: {n}" for s, n in sorted(available.items())) or "none"
        raise InputError(
            f"{benchmark.name}: no examples for split {split!r} and the chosen countries (available: {have})"
        )
    return [render_item(it, t, benchmark.name, style, tokenizer) for it in items for t in chosen]


def count_by_group_split(examples: Sequence[Example]) -> dict[str, dict[str, int]]:
    """``{group: {split: n}}`` in order of first appearance."""
    out: dict[str, dict[str, int]] = {}
    for ex in examples:
        per = out.setdefault(ex.group, {})
        per[ex.split or "-"] = per.get(ex.split or "-", 0) + 1
    return out


@dataclass(frozen=True)
class ExportSummary:
    """What :func:`export_examples` wrote."""

    benchmark: str
    path: Path
    n_examples: int
    counts: dict[str, dict[str, int]]
    templates: tuple[str, ...]
    chat_template_applied: bool

    def table(self) -> str:
        """Counts per group and split as a small text table."""
        splits = sorted({s for per in self.counts.values() for s in per})
        width = max([len("group")] + [len(g) for g in self.counts])
        lines = ["  ".join(["group".ljust(width)] + [s.rjust(14) for s in splits] + ["total".rjust(8)])]
        for group, per in self.counts.items():
            cells = [str(per.get(s, 0)).rjust(14) for s in splits]
            lines.append("  ".join([group.ljust(width)] + cells + [str(sum(per.values())).rjust(8)]))
        totals = [str(sum(per.get(s, 0) for per in self.counts.values())).rjust(14) for s in splits]
        lines.append("  ".join(["total".ljust(width)] + totals + [str(self.n_examples).rjust(8)]))
        return "\n".join(lines)


def export_examples(
    name: str,
    out: str | Path,
    split: str = "all",
    countries: Sequence[str] | str | None = None,
    data_dir: str | Path | None = None,
    model: str | None = None,
    templates: str | Sequence[str] | None = None,
    labels: str | None = None,
    part: str | None = None,
    check_labels: bool = True,
    caps: Caps | None = None,
    **options: Any,
) -> ExportSummary:
    """Render a benchmark and write the examples JSONL that ``culture-neurons score`` reads.

    ``caps`` (``Caps(max_per_group, limit, seed)``) caps the examples with
    :func:`culture_neurons.data.sampling.cap_examples` (the pipeline's ``max_per_group`` rule).

    With ``model`` (a hub id, local folder, GGUF file or alias), its tokenizer's chat template is
    applied and every label is checked to start with a distinct, non-empty token (see
    :func:`culture_neurons.data.labels.assert_labels_ok`). The file is written atomically.
    """
    from ..fileio import ensure_writable_parent

    ensure_writable_parent(out)
    get_benchmark(name).resolve_options(options)  # a bad option fails before the tokenizer loads
    tokenizer = None
    if model is not None:
        from ..models.loading import load_tokenizer

        tokenizer = load_tokenizer(model)
    examples = build_examples(
        name,
        split=split,
        countries=countries,
        data_dir=data_dir,
        tokenizer=tokenizer,
        templates=templates,
        labels=labels,
        part=part,
        **options,
    )
    if caps is not None:
        examples = caps.apply(examples)
    if tokenizer is not None and check_labels:
        from .labels import assert_labels_ok

        assert_labels_ok(examples, tokenizer, benchmark=name)
    n = write_examples(out, examples)
    chosen = select_templates(get_benchmark(name), templates)
    return ExportSummary(
        benchmark=get_benchmark(name).name,
        path=Path(out),
        n_examples=n,
        counts=count_by_group_split(examples),
        templates=tuple(t.id for t in chosen),
        chat_template_applied=any(ex.chat_template_applied for ex in examples),
    )
