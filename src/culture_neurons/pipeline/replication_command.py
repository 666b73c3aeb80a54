"""The ``culture-neurons run replication ...`` command that reproduces a run's config, for its replication summary.

The manifest keeps the config a run used, not the command line. For a run made from the
``replication`` preset the command is rebuilt: the preset with the run's model and data folder,
and a ``--set KEY=VALUE`` for every value that differs from it (the run directory aside). A config
that differs from the preset in more than :data:`MAX_SETS` values was not made from it, and gets no
command (the page then names its config hash instead).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from typing import Any

import tomli_w

from ..analysis.page import shown_path
from ..errors import CultureNeuronsError
from .config import builtin_config, load_config

PRESET = "replication"
MAX_SETS = 12
IGNORED = ("run.out", "data.data_dir")  # where the run and its data live (--data-dir gives the latter)


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flat(value, f"{prefix}{key}." if prefix or key else key))
        return out
    return {prefix.rstrip("."): node}


def _toml_value(value: Any) -> str:
    return tomli_w.dumps({"v": value}).strip().removeprefix("v = ")


def replication_command(config: Mapping[str, Any]) -> str | None:
    """``culture-neurons run replication --model M --data-dir D [--set K=V ...]`` for a run config (the manifest's
    ``config``), or None when the config was not made from the preset."""
    model = (config.get("model") or {}).get("name")
    data_dir = (config.get("data") or {}).get("data_dir")
    if not model:
        return None
    try:
        # The data folder is left out of the check: a summary may be written where the data is not.
        preset = load_config(builtin_config(PRESET), {"model.name": model, "data.data_dir": None}).to_dict()
        preset = json.loads(json.dumps(preset))  # tuples as lists, as the manifest holds them
    except CultureNeuronsError:
        return None
    ours, theirs = _flat(preset), _flat(dict(config))
    keys = sorted(k for k in set(ours) | set(theirs) if k not in IGNORED and ours.get(k) != theirs.get(k))
    sets = [k for k in keys if theirs.get(k) is not None]
    if len(keys) > MAX_SETS:
        return None
    parts = ["culture-neurons run", PRESET, "--model", shlex.quote(shown_path(str(model)))]
    if data_dir:
        parts += ["--data-dir", shlex.quote(shown_path(str(data_dir)))]
    parts += [f"--set {shlex.quote(f'{k}={_toml_value(theirs[k])}')}" for k in sets]
    return " ".join(parts)
