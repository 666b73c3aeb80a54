"""Checked inputs of a selection: the tables, their pairing, their shared model shape, and provenance.

Every selector starts with :func:`gather_inputs`, so a bad call (a control passed as a dataset, a
table of another model, a missing site, a bad exclusion fraction) fails the same way everywhere,
with one line naming the table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..attribution.scoretable import ScoreTable
from ..data.example import group_clash
from ..errors import InputError, TableError
from .sites import ordered_sites

Named = tuple[str, ScoreTable]


@dataclass(frozen=True)
class Exclusion:
    """Drop the neurons in the top ``r`` fraction (per pool) of ``table``'s whole-dataset score."""

    name: str
    table: ScoreTable
    r: float


@dataclass
class SelectionInputs:
    """The validated tables of one selection call."""

    datasets: list[Named]
    controls: list[Named]  # paired with datasets
    countryrc: Named | None
    exclude: list[Exclusion]
    num_layers: int
    widths: dict[str, int]
    model: dict[str, Any]

    def sources(self) -> dict[str, Any]:
        """Provenance recorded in every NeuronSet: each input table's dataset, split, size and hash."""
        hashes: dict[int, str] = {}

        def describe(t: ScoreTable) -> dict[str, Any]:
            if id(t) not in hashes:
                hashes[id(t)] = t.content_hash()
            return {
                "dataset": t.meta.get("dataset"),
                "split": t.meta.get("split"),
                "examples": t.num_examples,
                "sha256": hashes[id(t)],
            }

        out: dict[str, Any] = {
            "dataset_tables": [describe(t) for _, t in self.datasets],
            "control_tables": [describe(t) for _, t in self.controls],
            "countryrc_table": describe(self.countryrc[1]) if self.countryrc else None,
        }
        # Only present when used, so sets selected without exclusion keep their old provenance.
        if self.exclude:
            out["exclude_tables"] = [{**describe(e.table), "r": e.r} for e in self.exclude]
        return out


def table_name(table: ScoreTable, role: str) -> str:
    """How messages name a table: its role, plus its dataset when the metadata has one."""
    dataset = table.meta.get("dataset")
    return f"{role} ({dataset!r})" if dataset else role


def check_fraction(name: str, value: float) -> float:
    """``value`` as a float in [0, 1], else a one-line :class:`InputError` naming ``name``."""
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or math.isnan(float(value))
        or not 0.0 <= float(value) <= 1.0
    ):
        raise InputError(f"{name} must be a fraction between 0 and 1 (0.01 = 1%), got {value!r}")
    return float(value)


def site_tuple(sites: str | Sequence[str]) -> tuple[str, ...]:
    """A single site name or a sequence of them, as a tuple."""
    return (sites,) if isinstance(sites, str) else tuple(sites)


def _exclusions(exclude: Sequence[tuple[ScoreTable, float]]) -> list[Exclusion]:
    if isinstance(exclude, ScoreTable):
        raise InputError("exclude must be a list of (ScoreTable, r) pairs, e.g. exclude=[(nlu_table, 0.01)]")
    if isinstance(exclude, tuple) and len(exclude) == 2 and isinstance(exclude[0], ScoreTable):
        exclude = [exclude]  # one (table, r) pair given without the list
    out = []
    for i, item in enumerate(exclude):
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], ScoreTable)):
            raise InputError(f"exclude[{i}] must be a (ScoreTable, r) pair, got {type(item).__name__}")
        table, r = item
        out.append(Exclusion(table_name(table, f"exclude[{i}]"), table, check_fraction(f"exclude[{i}] r", r)))
    return out


def _check_pairs(datasets: list[Named], controls: list[Named]) -> None:
    for name, t in datasets:
        if t.options.get("control") is True:
            raise InputError(f"{name} was scored as a control set (clamped at 0); pass it in control_tables")
    for name, t in controls:
        if t.options.get("control") is False:
            raise InputError(
                f"{name} was not scored as a control set (score it with --control); pass it in dataset_tables"
            )
    for (name, d), (control, c) in zip(datasets, controls):
        if (d.method["name"], d.method["baseline"]) != (c.method["name"], c.method["baseline"]):
            raise InputError(
                f"control {control} was scored with {c.method_label()}, dataset {name} with {d.method_label()}; "
                "score both with the same method and baseline"
            )


def _check_same_model(tables: list[Named], want: list[str]) -> None:
    first_name, first = tables[0]
    for name, t in tables:
        clash = group_clash(t.groups)
        if clash:
            raise InputError(f"{name}: {clash}; re-export the examples with one spelling per group and score again")
        missing = [s for s in want if s not in t.scores]
        if missing:
            raise InputError(
                f"site(s) {', '.join(missing)} not in {name}, which has {', '.join(t.sites)}; "
                "choose the pool's sites from those"
            )
        a, b = first.model_id.get("config_sha256"), t.model_id.get("config_sha256")
        if a and b and a != b:
            raise TableError(
                f"a ScoreTable from another model used for selection: {name} was scored on "
                f"{t.model_id.get('name_or_path')!r}, {first_name} on {first.model_id.get('name_or_path')!r} "
                "(config hashes differ)"
            )
        for s in want:
            if t.scores[s].shape[:2] != first.scores[s].shape[:2]:
                raise TableError(
                    f"a ScoreTable from another model used for selection: {name} has {s} of shape "
                    f"{list(t.scores[s].shape[:2])}, {first_name} has {list(first.scores[s].shape[:2])} "
                    "(layers x channels)"
                )


def gather_inputs(
    dataset_tables: Sequence[ScoreTable],
    control_tables: Sequence[ScoreTable],
    countryrc_table: ScoreTable | None,
    sites: Sequence[str],
    exclude: Sequence[tuple[ScoreTable, float]] = (),
) -> SelectionInputs:
    """Check and pair the tables of one selection; raises :class:`InputError` / :class:`TableError`."""
    if isinstance(dataset_tables, ScoreTable) or isinstance(control_tables, ScoreTable):
        raise InputError("dataset_tables and control_tables must be lists of ScoreTables (wrap a single table in [ ])")
    dataset_tables, control_tables = list(dataset_tables), list(control_tables)
    if not dataset_tables:
        raise InputError("selection needs at least one dataset ScoreTable")
    if len(control_tables) not in (1, len(dataset_tables)):
        raise InputError(
            f"got {len(dataset_tables)} dataset table(s) and {len(control_tables)} control table(s); "
            "give one control per dataset (paired in order) or a single control for all"
        )
    for t in [*dataset_tables, *control_tables, countryrc_table]:
        if t is not None and not isinstance(t, ScoreTable):
            raise InputError(f"expected ScoreTables, got {type(t).__name__}")
    datasets = [(table_name(t, f"dataset_tables[{i}]"), t) for i, t in enumerate(dataset_tables)]
    controls = [(table_name(t, f"control_tables[{i}]"), t) for i, t in enumerate(control_tables)]
    if len(controls) == 1 and len(datasets) > 1:
        controls = controls * len(datasets)
    _check_pairs(datasets, controls)
    crc = (table_name(countryrc_table, "countryrc_table"), countryrc_table) if countryrc_table is not None else None
    excl = _exclusions(exclude)
    want = ordered_sites(sites)
    if not want:
        raise InputError("no sites to select from")
    _check_same_model([*datasets, *controls, *([crc] if crc else []), *((e.name, e.table) for e in excl)], want)
    first = datasets[0][1]
    widths = {s: int(w) for s, w in first.widths.items()}
    return SelectionInputs(datasets, controls, crc, excl, first.num_layers, widths, {**first.model_id})
