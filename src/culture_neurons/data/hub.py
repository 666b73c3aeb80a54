"""Loading benchmark rows from the Hugging Face hub with ``datasets.load_dataset``.

This is the normal path for a user who is online and gives no local files. It is tried only when
no ``--data-dir`` is given, and never when ``HF_HUB_OFFLINE`` or ``HF_DATASETS_OFFLINE`` is set.
Any failure becomes :class:`HubUnavailable`, which the registry turns into a message that says how
to point at local files instead.

Provenance: inside :func:`hub_provenance` every fetch is pinned to the given revision (a branch, tag or
commit of the dataset repository) and recorded with a SHA-256 of the rows it returned, so a run's
manifest identifies hub data by content, the way it identifies local files by their hashes.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import InputError
from .readers import Row


class HubUnavailable(InputError):
    """The hub copy of a benchmark could not be loaded (offline, not installed, or not found)."""


@dataclass(frozen=True)
class HubSource:
    """Where a benchmark lives on the hub: ``load_dataset(id, config, split=split)``.

    ``split=None`` means the dataset's only split (or, for :func:`load_hub_splits`, all of them).
    """

    id: str
    config: str | None = None
    split: str | None = "test"

    def describe(self) -> str:
        config = f", {self.config!r}" if self.config else ""
        split = f", split={self.split!r}" if self.split else ""
        return f"load_dataset({self.id!r}{config}{split})"


def hub_offline() -> bool:
    """True when the user asked the Hugging Face libraries to stay offline."""
    return any(
        os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on")
        for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


@dataclass
class _Provenance:
    revision: str | None
    fetched: dict[str, dict[str, Any]]


# Set by hub_provenance(); a context variable, so concurrent exports never see each other's record.
_PROVENANCE: contextvars.ContextVar[_Provenance | None] = contextvars.ContextVar("hub_provenance", default=None)


@contextlib.contextmanager
def hub_provenance(revision: str | None = None) -> Iterator[dict[str, dict[str, Any]]]:
    """Pin hub fetches in this block to ``revision`` and record what each one returned.

    Yields a dict, filled as the block runs: ``{"load_dataset(...)": {"revision", "splits": {name:
    {"rows", "sha256"}}}}`` for every hub dataset loaded (nothing for local or built-in data).
    """
    record = _Provenance(revision or None, {})
    token = _PROVENANCE.set(record)
    try:
        yield record.fetched
    finally:
        _PROVENANCE.reset(token)


def rows_sha256(records: list[dict[str, Any]]) -> str:
    """SHA-256 of a split's rows as canonical JSON: the same rows give the same hash on any machine."""
    digest = hashlib.sha256()
    for row in records:
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def _load_dataset(hub_id: str, config: str | None, split: str | None, **kwargs: Any) -> Any:
    """The one call into ``datasets`` (tests replace this function; they never reach the network)."""
    import datasets

    return datasets.load_dataset(hub_id, config, split=split, **kwargs)


def _fetch(source: HubSource) -> dict[str, list[dict[str, Any]]]:
    if hub_offline():
        raise HubUnavailable("the hub is switched off (HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set)")
    try:
        import datasets  # noqa: F401
    except ImportError as exc:
        raise HubUnavailable("the `datasets` package is not installed (pip install datasets)") from exc
    record = _PROVENANCE.get()
    pinned = {"revision": record.revision} if record is not None and record.revision else {}
    try:
        dataset = _load_dataset(source.id, source.config, source.split, **pinned)
    except Exception as exc:  # network errors, missing configs, authentication...
        message = str(exc).splitlines()[0] if str(exc) else ""
        raise HubUnavailable(f"{source.describe()} failed: {type(exc).__name__}: {message}") from exc
    if isinstance(dataset, dict):  # a DatasetDict (split=None)
        splits = {str(name): [dict(r) for r in dataset[name]] for name in dataset}
    else:
        splits = {source.split or "default": [dict(r) for r in dataset]}
    if record is not None:
        record.fetched[source.describe()] = {
            "revision": pinned.get("revision", "default branch (unpinned)"),
            "splits": {name: {"rows": len(rows), "sha256": rows_sha256(rows)} for name, rows in splits.items()},
        }
    return splits


def _rows(source: HubSource, split: str, records: list[dict[str, Any]], required: tuple[str, ...]) -> list[Row]:
    label = f"hub {source.id}[{source.config or 'default'}/{split}]"
    if not records:
        raise InputError(f"{label}: the split is empty")
    missing = [c for c in required if c not in records[0]]
    if missing:
        raise InputError(
            f"{label}: missing column(s) {', '.join(repr(c) for c in missing)} "
            f"(found {', '.join(repr(c) for c in records[0])})"
        )
    return [Row.make(r, f"{label} row {i}") for i, r in enumerate(records, start=1)]


def load_hub_rows(source: HubSource, required: tuple[str, ...] = ()) -> list[Row]:
    """Rows of one hub split (``source.split``, or the only one there is); ``Row.where`` names the row."""
    splits = _fetch(source)
    if source.split is None and len(splits) != 1:
        raise HubUnavailable(f"{source.describe()} has several splits ({', '.join(splits)}); name one")
    name, records = next(iter(splits.items()))
    return _rows(source, name, records, required)


def load_hub_splits(source: HubSource, required: tuple[str, ...] = ()) -> dict[str, list[Row]]:
    """Rows of every split of a hub dataset config, by split name."""
    return {name: _rows(source, name, records, required) for name, records in _fetch(source).items()}
