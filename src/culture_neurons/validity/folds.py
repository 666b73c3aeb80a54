"""Scoring identification examples in disjoint cells (fold x template), so that full = sum of cells.

Examples are assigned to folds by *item*: every template and option-order variant of one question
(same group and ``question_id``, else the id before ``#`` and ``/v<k>``) lands in the same fold, so
the folds share no question. The assignment hashes the item key with a seed, is balanced within
each group (round robin over the group's items in hash order), and does not depend on the order of
the input. Each cell is scored once and saved; fold, template and full tables are sums of cells.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from functools import reduce
from pathlib import Path
from typing import Any

from ..attribution.scoretable import ScoreTable
from ..data.example import Example
from ..errors import InputError, TableError
from .claims import compute_once, is_claimed
from .fit import check_cached_table

log = logging.getLogger(__name__)

_VARIANT = re.compile(r"/v\d+$")


def item_key(ex: Example) -> str:
    """What ties an example to its question: group + question id, else its id without template and variant."""
    qid = ex.meta.get("question_id") if ex.meta else None
    if qid:
        return f"{ex.group}\x1f{qid}"
    base = ex.id.split("#", 1)[0]
    return f"{ex.group}\x1f{_VARIANT.sub('', base)}"


def _hash(key: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}\x1f{key}".encode()).hexdigest()


def assign_folds(examples: Sequence[Example], k: int, seed: int = 0) -> list[int]:
    """Fold number (0..k-1) of each example; items are balanced per group."""
    if k < 2:
        raise InputError(f"folds must be at least 2, got {k}")
    by_group: dict[str, set[str]] = {}
    for ex in examples:
        by_group.setdefault(ex.group, set()).add(item_key(ex))
    fold_of: dict[str, int] = {}
    for group in sorted(by_group):
        for i, key in enumerate(sorted(by_group[group], key=lambda s: _hash(s, seed))):
            fold_of[key] = i % k
    too_small = [g for g, items in by_group.items() if len(items) < k]
    if too_small:
        raise InputError(f"group {too_small[0]!r} has fewer than {k} questions; it cannot be split into {k} folds")
    return [fold_of[item_key(ex)] for ex in examples]


def templates_of(examples: Sequence[Example]) -> list[str]:
    """Template ids in order of first appearance (``-`` for examples without one)."""
    return list(dict.fromkeys(ex.template_id or "-" for ex in examples))


def cells(examples: Sequence[Example], k: int, seed: int = 0) -> dict[tuple[int, str], list[Example]]:
    """``{(fold, template): examples}``; every example is in exactly one cell."""
    folds = assign_folds(examples, k, seed)
    out: dict[tuple[int, str], list[Example]] = {}
    for ex, f in zip(examples, folds):
        out.setdefault((f, ex.template_id or "-"), []).append(ex)
    return dict(sorted(out.items()))


def cell_name(fold: int, template: str) -> str:
    """File stem of one cell's table."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", template)
    return f"fold{fold}-{safe}"


def load_if(
    path: Path, ids: Sequence[str], groups: Sequence[str] | None = None, model_id: Mapping[str, Any] | None = None
) -> ScoreTable | None:
    """The table at ``path`` when it holds exactly these example ids (and groups), else None.

    A table scored on another model than ``model_id`` raises :class:`InputError` (rescoring would
    overwrite that run's table)."""
    if not path.is_file():
        return None
    try:
        table = ScoreTable.load(path)
    except TableError as exc:
        raise TableError(f"{exc}; delete it to score that cell again (the other cells are kept)") from None
    check_cached_table(path, table, model_id)
    if table.meta.get("example_ids") == list(ids) and (groups is None or table.groups == list(groups)):
        return table
    log.info("%s holds other examples; it will be scored again", path)
    return None


def score_cells(
    examples: Sequence[Example],
    k: int,
    folder: Path,
    score: Callable[[list[Example], list[str]], ScoreTable],
    seed: int = 0,
    model_id: Mapping[str, Any] | None = None,
) -> dict[tuple[int, str], ScoreTable]:
    """Score each cell once (``score(examples, groups)``), saving ``folder/<cell>.safetensors``.

    A cell whose file exists with the same example ids is loaded instead (resume after a kill); one
    scored on another model than ``model_id`` is an error.
    Every cell is scored with all groups, so cell tables always add. Cells another process is
    scoring (see :mod:`.claims`) are skipped on the first pass and waited for on the second.
    """
    groups = list(dict.fromkeys(ex.group for ex in examples))
    folder.mkdir(parents=True, exist_ok=True)
    parts = cells(examples, k, seed)
    paths = {key: folder / f"{cell_name(*key)}.safetensors" for key in parts}

    def make(key: tuple[int, str]) -> ScoreTable:
        log.info("scoring cell fold %d, template %s (%d examples)", key[0], key[1], len(parts[key]))
        table = score(parts[key], groups)
        table.save(paths[key])
        return table

    out: dict[tuple[int, str], ScoreTable] = {}
    for key in parts:  # first pass: take the cells nobody else is scoring
        if not is_claimed(paths[key]):
            out[key] = compute_once(
                paths[key],
                lambda key=key: load_if(paths[key], [e.id for e in parts[key]], groups, model_id),
                lambda key=key: make(key),
            )
    for key in parts:  # second pass: wait for the rest
        if key not in out:
            out[key] = compute_once(
                paths[key],
                lambda key=key: load_if(paths[key], [e.id for e in parts[key]], groups, model_id),
                lambda key=key: make(key),
            )
    return dict(sorted(out.items()))


def total(tables: Sequence[ScoreTable]) -> ScoreTable:
    """The sum of tables (they must share no example)."""
    if not tables:
        raise InputError("no tables to add")
    return reduce(lambda a, b: a + b, tables)


def fold_tables(cell_tables: dict[tuple[int, str], ScoreTable]) -> dict[int, ScoreTable]:
    """One table per fold: the sum over its templates."""
    folds = sorted({f for f, _ in cell_tables})
    return {f: total([t for (g, _), t in cell_tables.items() if g == f]) for f in folds}


def template_tables(cell_tables: dict[tuple[int, str], ScoreTable]) -> dict[str, ScoreTable]:
    """One table per template: the sum over folds."""
    names = list(dict.fromkeys(t for _, t in cell_tables))
    return {n: total([t for (_, m), t in cell_tables.items() if m == n]) for n in names}
