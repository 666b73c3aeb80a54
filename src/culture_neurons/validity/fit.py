"""Refusing validity inputs made on another model, before any scoring.

A control, CountryRC or NLU table scored on another model, a reference set selected on one, and cell
tables left in the output folder by a run on another model would each mix two models' numbers. The
tables carry the model identity they were scored on (:func:`~culture_neurons.models.loading.model_identity`),
NeuronSets their shape; a mismatch is one :class:`~culture_neurons.errors.InputError` naming the input.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..attribution.scoretable import ScoreTable
from ..errors import InputError
from .options import ValidityData


def _name(model_id: Mapping[str, Any]) -> str:
    return str(model_id.get("name_or_path") or model_id.get("class") or "an unnamed model")


def check_table_model(table: ScoreTable, model_id: Mapping[str, Any], what: str, fix: str) -> None:
    """Raise unless ``table`` was scored on the model ``model_id`` describes (same config hash)."""
    theirs = table.model_id
    if theirs.get("config_sha256") and theirs.get("config_sha256") != model_id.get("config_sha256"):
        raise InputError(
            f"{what} was scored on {_name(theirs)!r}, not on this model {_name(model_id)!r} "
            f"(config hashes differ); {fix}"
        )


def check_inputs_fit(data: ValidityData, model: Any) -> None:
    """Every given table and the reference set belong to ``model`` (one-line error otherwise)."""
    from ..intervention import check_fits
    from ..models.adapters import get_adapter
    from ..models.loading import model_identity

    mine = model_identity(model)
    fix = "score it with this model, or pass the model it was scored on with --model"
    for i, table in enumerate(data.control_tables):
        check_table_model(table, mine, f"control table {i + 1} ({table.meta.get('dataset')!r})", fix)
    for what, table in (("the CountryRC table", data.countryrc_table), ("the NLU table", data.nlu_table)):
        if table is not None:
            check_table_model(table, mine, f"{what} ({table.meta.get('dataset')!r})", fix)
    if data.reference_set is not None:
        try:
            check_fits(data.reference_set, get_adapter(model), model)
        except InputError as exc:
            raise InputError(f"the reference set does not fit this model: {exc}") from None


def check_cached_table(path: Path, table: ScoreTable, model_id: Mapping[str, Any] | None) -> None:
    """A cell table found in the output folder was scored on this model (else: another --out, nothing lost)."""
    if model_id is not None:
        fix = f"give another --out, or delete {path.parent} to score it again with this model"
        check_table_model(table, model_id, f"{path} (left by an earlier validity run)", fix)
