"""A multiple-choice benchmark as one declaration, the way lm-evaluation-harness describes a task.

lm-eval writes a multiple-choice task as data: where the documents come from, the prompt
(``doc_to_text``), the choices (``doc_to_choice``), the gold index (``doc_to_target``) and the metric.
:class:`McqBenchmark` is that, for this project:

- ``parts``: one :class:`Part` per published split, with the file names it may have in a folder
  (the published name first), its hub split and its published size;
- ``read``: how a published file becomes rows (:func:`records` for any table file with its required
  columns, or a reader of its own where the format needs one, as PIQA's labels file does);
- ``hub`` and ``hub_columns``: the dataset ``datasets.load_dataset`` reads without ``--data-dir``;
- ``doc``: one row as a :class:`Doc` (prompt text, optional context, choices, gold index, id). One
  function, not three, because the three read the same fields and share their checks;
- ``cloze``: the zero-shot log-likelihood prompt (the ``cloze`` template: the options are
  continuations of it, scored by the ``loglik`` scorer and by lm-eval on the exported task);
- ``letter_templates``: letter-answer templates where the question reads well with an option list;
- ``metric``: ``acc`` or ``acc_norm``, whichever is the convention for the benchmark;
- ``n_choices``: the numbers of choices a question may have (its chance level is ``1/n`` per question);
- ``shuffle``: the default of the typed ``shuffle`` option every declaration takes
  (``--option shuffle=true``): whether templates list the options in a stable hashed order or in
  the published one.

:func:`register_mcq` registers it as a :class:`~culture_neurons.data.registry.Benchmark`; the load
function and the items are the same for every declaration.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import InputError
from ..hub import HubSource, load_hub_rows
from ..options import BenchmarkOption
from ..readers import Row, find_file, read_records
from ..registry import METRICS, Benchmark, LoadRequest, get_benchmark, list_benchmarks, register
from ..splits import HELDOUT, TRAIN
from ..templates import ASK_ANSWER_CHOICE, Item, Template, ask_answer, ask_choice, json_template

#: Letter-answer templates for a question and its options (CommonsenseQA, ARC, the demo NLU set, ...).
LETTER_TEMPLATES: tuple[Template, ...] = (
    json_template("nlu1", "{question}\n\n{options}\n\n", ask_answer("the best answer"), 0),
    json_template(
        "nlu2", "Answer the multiple-choice question.\n\nQuestion: {question}\n{options}\n\n", ask_choice("only"), 1
    ),
    json_template(
        "nlu3",
        "Pick the option that best answers the question below.\n\n{question}\n\nOptions:\n{options}\n\n",
        ASK_ANSWER_CHOICE,
        2,
    ),
)


@dataclass(frozen=True)
class Doc:
    """One row of a benchmark as a question: what lm-eval's doc_to_text/choice/target give.

    Attributes:
        key: unique within the benchmark's part; the item id is ``<benchmark>/<key>``.
        question: the prompt text the templates show as ``{question}``.
        choices: the option texts, in source order.
        gold: index of the gold choice.
        context: a passage shown as ``{context}`` (BoolQ), or ``None``.
        meta: fields copied into the exported example (source ids).
    """

    key: str
    question: str
    choices: tuple[str, ...]
    gold: int
    context: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Part:
    """One published split: its local file names (published first), its hub split, its size."""

    name: str
    files: tuple[str, ...]
    published: int | None = None
    hub_split: str | None = None  # None: the part's own name


#: ``read(path, part)``: the rows of one local file of a part.
Reader = Callable[[Path, Part], list[Row]]
#: ``doc(row, index, part)``: one row (``index``: its 0-based position in the part) as a :class:`Doc`.
DocFn = Callable[[Row, int, str], Doc]


def records(columns: tuple[str, ...], **kwargs: Any) -> Reader:
    """A reader for any table file :func:`~culture_neurons.data.readers.read_records` reads, with
    ``columns`` required (``kwargs``: ``delimiter``, ``quoting``)."""
    return lambda path, _part: read_records(path, columns, **kwargs)


@dataclass(frozen=True)
class McqBenchmark:
    """A multiple-choice benchmark as data (see the module docstring). The first part is the default."""

    name: str
    title: str
    short: str  # how messages name it: "ARC-Easy"
    parts: tuple[Part, ...]
    read: Reader
    doc: DocFn
    cloze: Template | None
    hub: HubSource | None = None  # id and config; the split comes from the part
    hub_columns: tuple[str, ...] = ()
    letter_templates: tuple[Template, ...] = ()
    metric: str = "acc"
    n_choices: tuple[int, ...] = ()  # empty: any number from 2
    shuffle: bool = False
    folder: str | None = None
    files: str = ""  # for messages and `data list`; default: the default part's published file
    split_rule: str = ""
    citation: str = ""

    def __post_init__(self) -> None:
        # A bad declaration is a bug in a benchmark module: fail at import, not on a user's run.
        if not self.parts or len({p.name for p in self.parts}) != len(self.parts):
            raise ValueError(f"benchmark {self.name!r}: parts must be non-empty with unique names")
        if self.metric not in METRICS:
            raise ValueError(f"benchmark {self.name!r}: metric must be one of {', '.join(METRICS)}")
        if self.cloze is None and not self.letter_templates:
            raise ValueError(f"benchmark {self.name!r}: needs a cloze template or letter templates")

    def part(self, name: str | None) -> Part:
        """The part called ``name`` (``None``: the default); the registry has already checked the name."""
        return self.parts[0] if name is None else next(p for p in self.parts if p.name == name)

    def published(self) -> dict[str, int]:
        """``{part: published size}`` for the parts whose size is known."""
        return {p.name: p.published for p in self.parts if p.published is not None}

    def rows(self, req: LoadRequest, part: Part) -> list[Row]:
        """The rows of one part: from the hub without a local path, else from ``req.path`` (a file,
        or a folder holding one of the part's files)."""
        if req.path is None:
            source = HubSource(self.hub.id, self.hub.config, part.hub_split or part.name) if self.hub else None
            if source is None:
                raise InputError(f"{self.name}: no hub copy; pass --data-dir DIR with {self.files_text()}")
            return load_hub_rows(source, self.hub_columns)
        path = req.path if req.path.is_file() else find_file(req.path, part.files)
        if path is None:
            raise InputError(f"{req.path}: no {part.files[0]} ({self.short} {part.name})")
        return self.read(path, part)

    def typed_options(self) -> tuple[BenchmarkOption, ...]:
        """The options every declaration takes: ``shuffle``, defaulting to the declaration's."""
        text = "true: list the options in a stable hashed order; false: in the published order"
        return (BenchmarkOption("shuffle", bool, self.shuffle, text),)

    def items(self, rows: list[Row], part: str, shuffle: bool | None = None) -> list[Item]:
        """The rows of ``part`` as items: every one held out, or ``train`` for the train part.
        ``shuffle`` (default: the declaration's) says whether templates may reorder the options."""
        split = TRAIN if part == "train" else HELDOUT
        shuffle = self.shuffle if shuffle is None else shuffle
        out = []
        for index, row in enumerate(rows):
            doc = self.doc(row, index, part)
            self.check(doc, row)
            out.append(
                Item(
                    id=f"{self.name}/{doc.key}",
                    group=self.name,
                    split=split,
                    question=doc.question,
                    options=doc.choices,
                    answer_index=doc.gold,
                    context=doc.context,
                    shuffle=shuffle,
                    meta=dict(doc.meta),
                    source=row.where,
                )
            )
        return out

    def check(self, doc: Doc, row: Row) -> None:
        """A :class:`Doc` the templates can render: enough non-empty choices and a gold among them."""
        n = len(doc.choices)
        if self.n_choices and n not in self.n_choices:
            accepted = " or ".join(str(k) for k in self.n_choices)
            raise InputError(f"{row.where}: {n} choices, but {self.short} questions have {accepted}")
        if n < 2 or not all(c.strip() for c in doc.choices):
            raise InputError(f"{row.where}: a question needs at least 2 non-empty choices")
        if not 0 <= doc.gold < n:
            raise InputError(f"{row.where}: gold index {doc.gold} is outside the {n} choices")

    def load(self, req: LoadRequest) -> list[Item]:
        """The registry's ``load``: the items of the requested part (default: the first)."""
        part = self.part(req.part)
        return self.items(self.rows(req, part), part.name, req.options.get("shuffle"))

    def files_text(self) -> str:
        """The files a user must give, in words: ``files`` or the default part's published file."""
        return self.files or self.parts[0].files[0]

    def benchmark(self) -> Benchmark:
        """This declaration as a registry :class:`~culture_neurons.data.registry.Benchmark`."""
        cloze = (self.cloze,) if self.cloze is not None else ()
        templates, extra = (self.letter_templates, cloze) if self.letter_templates else (cloze, ())
        return Benchmark(
            name=self.name,
            title=self.title,
            kind="nlu",
            load=self.load,
            templates=templates,
            extra_templates=extra,
            folder=self.folder,
            markers=tuple(dict.fromkeys(f for p in self.parts for f in p.files)),
            files=self.files_text(),
            hub=HubSource(self.hub.id, self.hub.config, self.parts[0].hub_split or self.parts[0].name)
            if self.hub
            else None,
            by_country=False,
            parts=tuple(p.name for p in self.parts),
            split_rule=self.split_rule or default_split_rule(self),
            citation=self.citation,
            metric=self.metric,
            options=self.typed_options(),
        )


def default_split_rule(spec: McqBenchmark) -> str:
    """``evaluation only: all heldout (part train: train); published: test 2,376, validation 570``."""
    rule = "evaluation only: all heldout" + (
        " (part train: train)" if any(p.name == "train" for p in spec.parts) else ""
    )
    sizes = ", ".join(f"{name} {n:,}" for name, n in spec.published().items())
    return f"{rule}; published: {sizes}" if sizes else rule


_DECLARED: dict[str, McqBenchmark] = {}


def register_mcq(spec: McqBenchmark) -> McqBenchmark:
    """Register a declaration (its :meth:`McqBenchmark.benchmark`) and keep it for :func:`get_mcq`."""
    register(spec.benchmark())
    _DECLARED[spec.name] = spec
    return spec


def get_mcq(name: str) -> McqBenchmark:
    """The declaration registered as ``name`` (published sizes, metric, choices) for tests and docs."""
    get_benchmark(name)  # loads the benchmark modules; an unknown name lists the known ones
    if name not in _DECLARED:
        raise InputError(f"{name} is a benchmark but not a multiple-choice declaration (McqBenchmark)")
    return _DECLARED[name]


def declared_mcqs() -> list[McqBenchmark]:
    """Every registered declaration, in registration order."""
    list_benchmarks()
    return list(_DECLARED.values())


def gold_of(row: Row, column: str, values: Mapping[str, int]) -> int:
    """The gold index from ``row[column]`` read through ``values`` (``{"1": 0, "2": 1}``); the error lists them."""
    raw = row.get(column)
    text = str(raw).strip() if raw is not None and not isinstance(raw, bool) else None
    if text not in values:
        accepted = ", ".join(values)
        raise InputError(f"{row.where}: {column} {raw!r} is not one of {accepted}")
    return values[text]


def need_text(row: Row, key: str) -> str:
    """``row[key]`` as stripped text; a missing or empty value names the row."""
    return str(row.need(key)).strip()
