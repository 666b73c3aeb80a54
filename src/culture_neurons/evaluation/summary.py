"""The ``summary.json`` document of ``evaluate``, ``ablate``, ``cross-culture`` and the pipeline's experiments.

Every summary has the same top level::

    {"format": "culture-neurons-summary", "version": 2, "kind": "evaluation" | "ablation" | ...,
     "package_version": ..., "config": {...}, "results": {...}, "warnings": [...],
     "saq_lemmatiser": "simplemma (English)"}   # only when short-answer questions were scored

Version 1 files (before the format field) used ``metrics`` (``evaluate``) or ``results``
(experiments) for the results; :func:`read_summary` reads both, so old run folders still resume
and report.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..version import __version__

SUMMARY_FORMAT = "culture-neurons-summary"
SUMMARY_VERSION = 2


def summary_document(
    kind: str, config: dict[str, Any], results: Any, *, rows: Any = None, warnings: Sequence[str] = ()
) -> dict[str, Any]:
    """The JSON document for a summary (see the module docstring).

    ``rows`` (the per-example frame, optional) tells whether short-answer (``saq``) questions were
    scored, in which case the lemmatiser their matching used is declared.
    """
    doc: dict[str, Any] = {
        "format": SUMMARY_FORMAT,
        "version": SUMMARY_VERSION,
        "kind": kind,
        "package_version": __version__,
        "config": config,
        "results": results,
        "warnings": list(warnings),
    }
    if rows is not None and "kind" in getattr(rows, "columns", ()) and bool((rows["kind"] == "saq").any()):
        from .saq import LEMMATISER

        doc["saq_lemmatiser"] = LEMMATISER
    return doc


def upgrade_summary(data: Any, where: str = "summary") -> dict[str, Any]:
    """A summary dict in the current form: version 1 ``metrics`` becomes ``results``.

    Raises :class:`InputError` naming ``where`` for anything that is not a summary.
    """
    if not isinstance(data, dict):
        raise InputError(f"{where} is not a culture-neurons summary (expected a JSON object)")
    version = data.get("version", 1)
    if "format" in data and data["format"] != SUMMARY_FORMAT:
        raise InputError(f"{where} has format {data['format']!r}, not {SUMMARY_FORMAT!r}")
    if not isinstance(version, int) or isinstance(version, bool) or version > SUMMARY_VERSION:
        raise InputError(
            f"{where} has summary version {version!r}; "
            f"this culture-neurons reads versions up to {SUMMARY_VERSION} (upgrade it)"
        )
    out = dict(data)
    if "results" not in out and "metrics" in out:
        out["results"] = out.pop("metrics")
    if "results" not in out:
        raise InputError(f"{where} has no 'results' (or version 1 'metrics') key")
    out.setdefault("format", SUMMARY_FORMAT)
    out["version"] = SUMMARY_VERSION
    out.setdefault("warnings", [])
    return out


def read_summary(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``summary.json`` of any version (see :func:`upgrade_summary`); one-line errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"summary file {path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read summary file {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise InputError(
            f"summary file {path} is not valid JSON (line {exc.lineno}: {exc.msg}); delete it to recompute"
        ) from exc
    return upgrade_summary(data, str(path))
