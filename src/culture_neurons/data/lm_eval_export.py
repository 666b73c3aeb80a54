"""Our benchmarks as lm-evaluation-harness tasks: a task YAML and local data, for offline runs.

:func:`export_lm_eval` renders a benchmark exactly as ``culture-neurons data export`` does (same
registry, templates, splits and caps) and writes, into one folder:

- ``<task>.jsonl``: one document per example: ``id, prompt, choices, gold, group, split,
  template_id, dataset``;
- ``<task>.yaml``: a ``multiple_choice`` task: context = the prompt, choices = the option texts,
  target = the gold index, metrics ``acc`` and ``acc_norm``. This is the cloze (log-likelihood)
  form that our ``loglik`` scorer computes, so the two give the same numbers on the same items;
- ``cn_docs.py``: a ten-line loader the YAML names (``custom_dataset``), which reads the JSONL
  next to it, so the folder can be moved and needs no hub access;
- ``<task>.export.json``: what was exported (benchmark, split, templates, caps, counts, the data
  file's SHA-256), for provenance.

Then ``lm_eval --include_path DIR --tasks <task> ...`` runs it offline. The prompts are the raw
prompts, without a chat template, like ``culture-neurons evaluate --no-chat-template``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..fileio import atomic_path, ensure_writable_parent, write_text_atomic
from .example import Example
from .registry import build_examples, count_by_group_split, get_benchmark
from .sampling import cap_examples

LOADER_MODULE = "cn_docs"
LOADER_SOURCE = '''"""Loads the documents of a culture-neurons task exported for lm-evaluation-harness (written by
`culture-neurons data export-lm-eval`). The data file sits next to this module."""

import json
from pathlib import Path


def load(data_file, split="test", **_metadata):
    from datasets import Dataset, DatasetDict

    path = Path(__file__).resolve().parent / data_file
    with open(path, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return DatasetDict({split: Dataset.from_list(rows)})
'''


def write_files(files: dict[Path, str]) -> None:
    """Write each file atomically, and the set as a unit: if one write fails, the files written before it
    get their old content back (or are removed, with the folders this call made), so a failed export
    leaves the folder as it was, never a mix of an old and a new export."""
    old = {path: path.read_bytes() if path.is_file() else None for path in files}
    made = {f for path in files for f in (path.parent, *path.parent.parents) if not f.exists()}
    written: list[Path] = []
    try:
        for path, text in files.items():
            write_text_atomic(path, text)
            written.append(path)
    except BaseException:
        for path in written:
            previous = old[path]
            if previous is None:
                path.unlink(missing_ok=True)
            else:
                with atomic_path(path) as tmp:
                    tmp.write_bytes(previous)
        for folder in sorted(made, key=lambda f: -len(f.parts)):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise


@dataclass(frozen=True)
class LmEvalExport:
    """What :func:`export_lm_eval` wrote."""

    task: str
    folder: Path
    yaml_path: Path
    data_path: Path
    n_docs: int
    counts: dict[str, dict[str, int]]
    templates: tuple[str, ...]


def default_task_name(benchmark: str, split: str, templates: Sequence[str]) -> str:
    """``cn_<benchmark>_<split>[_<template>]``, lower-case letters, digits and underscores only."""
    parts = ["cn", benchmark, split] + (list(templates) if len(templates) == 1 else ["mixed"])
    return re.sub(r"[^a-z0-9]+", "_", "_".join(parts).lower()).strip("_")


def gold_index(ex: Example) -> int:
    """Index of the gold option: the answer among the labels, else among the option texts."""
    options = [o.strip() for o in ex.options or ()]
    answer = ex.answer.strip()
    if ex.labels and answer in [label.strip() for label in ex.labels]:
        return [label.strip() for label in ex.labels].index(answer)
    if answer in options:
        return options.index(answer)
    raise InputError(f"example {ex.id!r}: answer {ex.answer!r} is neither one of its labels nor one of its options")


def to_doc(ex: Example) -> dict[str, Any]:
    """One lm-eval document for a multiple-choice example."""
    if not ex.options:
        raise InputError(f"example {ex.id!r} has no options; only multiple-choice benchmarks export to lm-eval tasks")
    return {
        "id": ex.id,
        "prompt": ex.prompt,
        "choices": list(ex.options),
        "gold": gold_index(ex),
        "group": ex.group,
        "split": ex.split,
        "template_id": ex.template_id,
        "dataset": ex.dataset,
    }


def _delimiter(examples: Sequence[Example]) -> str:
    """The text between prompt and option: a space, or nothing where prompts already end in whitespace
    (as :func:`culture_neurons.likelihood.option_continuation` writes it). Must be one for the task."""
    ends = {bool(ex.prompt) and ex.prompt[-1].isspace() for ex in examples}
    if len(ends) > 1:
        raise InputError(
            "some prompts end in whitespace and others do not; lm-eval needs one target delimiter per task "
            "(export the templates separately with --templates)"
        )
    return "" if ends == {True} else " "


def task_yaml(task: str, data_file: str, delimiter: str, description: str) -> str:
    """The task YAML (written by hand, not by a YAML library, because of the ``!function`` tag)."""
    return "\n".join(
        [
            f"# {description}",
            "# Written by `culture-neurons data export-lm-eval`; documents in the JSONL beside it.",
            f"task: {task}",
            f"custom_dataset: !function {LOADER_MODULE}.load",
            "dataset_kwargs:",
            f"  data_file: {json.dumps(data_file)}",
            "test_split: test",
            "output_type: multiple_choice",
            "doc_to_text: prompt",
            "doc_to_choice: choices",
            "doc_to_target: gold",
            f"target_delimiter: {json.dumps(delimiter)}",
            "num_fewshot: 0",
            "metric_list:",
            "  - metric: acc",
            "    aggregation: mean",
            "    higher_is_better: true",
            "  - metric: acc_norm",
            "    aggregation: mean",
            "    higher_is_better: true",
            "metadata:",
            "  version: 1.0",
            "",
        ]
    )


def export_lm_eval(
    name: str,
    out: str | Path,
    *,
    split: str = "heldout",
    task: str | None = None,
    max_per_group: int | None = None,
    limit: int | None = None,
    seed: int = 0,
    **source: Any,
) -> LmEvalExport:
    """Write benchmark ``name`` as an lm-eval task into folder ``out`` (see the module docstring).

    ``source`` holds what :func:`~culture_neurons.data.registry.build_examples` takes besides the
    split (``countries``, ``data_dir``, ``templates``, ``labels``, ``part`` and benchmark options);
    ``templates`` defaults to ``cloze`` where the benchmark has it (the log-likelihood form), else
    the benchmark's first template. The caps mean what they mean for ``data export``.
    """
    benchmark = get_benchmark(name)
    ensure_writable_parent(Path(out) / f"{LOADER_MODULE}.py")  # a bad --out fails before any data is read
    if source.get("templates") is None:
        known = {t.id for t in benchmark.templates + benchmark.extra_templates}
        source["templates"] = "cloze" if "cloze" in known else None
    examples = cap_examples(
        build_examples(name, split=split, **source), max_per_group=max_per_group, limit=limit, seed=seed
    )
    if not examples:
        raise InputError(f"{benchmark.name}: the caps left no examples to export")
    used = tuple(dict.fromkeys(ex.template_id or "-" for ex in examples))
    task = task or default_task_name(benchmark.name, split, used)
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", task):
        raise InputError(f"task name {task!r}: use letters, digits, '_', '-' and '.' only")
    folder = Path(out)
    data_path, yaml_path = folder / f"{task}.jsonl", folder / f"{task}.yaml"
    # Every file's text first: a failing check (an answer outside the options, mixed delimiters)
    # must come before anything is written, so a failed export leaves the folder as it was.
    docs = [to_doc(ex) for ex in examples]
    data_text = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs)
    description = f"{benchmark.title}; split {split}; templates {', '.join(used)}; {len(docs)} documents"
    yaml_text = task_yaml(task, data_path.name, _delimiter(examples), description)
    counts = count_by_group_split(examples)
    recorded = {
        k: (v if k in ("countries", "labels", "part") else str(v)) for k, v in source.items() if k != "data_dir"
    }
    record = {
        "format": "culture-neurons-lm-eval-export",
        "version": 1,
        "task": task,
        "benchmark": benchmark.name,
        "split": split,
        "templates": list(used),
        "source": recorded,
        "max_per_group": max_per_group,
        "limit": limit,
        "seed": seed,
        "n_docs": len(docs),
        "counts": counts,
        "data_file": data_path.name,
        "data_sha256": hashlib.sha256(data_text.encode("utf-8")).hexdigest(),
    }
    files = {
        data_path: data_text,
        folder / f"{LOADER_MODULE}.py": LOADER_SOURCE,
        yaml_path: yaml_text,
        folder / f"{task}.export.json": json.dumps(record, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
    }
    write_files(files)
    return LmEvalExport(task, folder, yaml_path, data_path, len(docs), counts, used)
