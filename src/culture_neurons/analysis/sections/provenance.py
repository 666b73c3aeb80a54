"""Config and provenance: the model, library versions, every step with its outputs, input files, the config.

Everything here is in a fixed order and free of machine paths, so the report of a resumed run equals
the report of a fresh one, and a report can be shared without leaking where the run lived.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ...rundir import stage_of_key
from ..page import ReportContext, absolute_strings, esc, redact_paths, shown_path, table

# The pipeline's stage order (steps are shown in it, whatever order a resumed run finished them in).
STAGE_ORDER = ("export", "score", "select", "evaluate", "validate", "train", "cards", "report")
REPORT_STEP = "report"


def ordered_steps(steps: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, Mapping[str, Any]]]:
    """Steps sorted by stage (the pipeline's order; unknown stages last) and then by key."""

    def rank(item: tuple[str, Mapping[str, Any]]) -> tuple[int, str]:
        stage = item[1].get("stage") or stage_of_key(item[0])
        return (STAGE_ORDER.index(stage) if stage in STAGE_ORDER else len(STAGE_ORDER), item[0])

    return sorted(steps.items(), key=rank)


def _steps_table(steps: Mapping[str, Mapping[str, Any]]) -> str:
    rows = []
    for key, rec in ordered_steps(steps):
        if key == REPORT_STEP:
            # This file is the report step's output: while it is being written the manifest says
            # "running", and its hash cannot be inside it. Shown the same way in every report.
            rows.append([esc(key), "done", "<code>report.html</code> (this file)"])
            continue
        outs = rec.get("outputs", {})
        rows.append(
            [
                esc(key),
                esc(rec.get("status")),
                "<br>".join(f"<code>{esc(p)}</code> {esc(h[:12])}" for p, h in sorted(outs.items())),
            ]
        )
    return table(
        ["step", "status", "outputs (sha256 prefix)"],
        rows,
        "Every step of the run in stage order, with its status and the SHA-256 prefix of each output (paths relative "
        "to "
        "the run directory). Times of each step are in manifest.json.",
        left=3,
    )


def _input_files(steps: Mapping[str, Mapping[str, Any]], data_dir: str | None) -> str:
    inputs = {
        p: h for _, rec in ordered_steps(steps) for p, h in (rec.get("info", {}).get("input_files") or {}).items()
    }
    if not inputs:
        return ""

    def shown(path: str) -> str:
        # Data files under the configured data folder are shown relative to it, others by name only.
        if data_dir and path.startswith(data_dir.rstrip("/") + "/"):
            return f"{shown_path(data_dir)}/{path[len(data_dir.rstrip('/')) + 1 :]}"
        return shown_path(path)

    rows = [[f"<code>{esc(shown(p))}</code>", f"<code>{esc(h)}</code>"] for p, h in sorted(inputs.items())]
    return "<h3>Input files</h3>" + table(
        ["file", "sha256"], rows, "The data files the exports read, with their SHA-256.", left=2
    )


def config_text(toml: str, hide: list[str]) -> str:
    """The config TOML as shown: absolute paths cut to their last component, and ``[run] out`` left out
    (the run may have been written elsewhere with ``--out``; where it lives is not part of its result)."""
    lines, table_name = [], ""
    for line in toml.splitlines():
        stripped = line.strip()
        if stripped.startswith("[") and not stripped.startswith("[["):
            table_name = stripped.strip("[]").strip()
        if table_name == "run" and re.match(r"out\s*=", stripped):
            lines.append("# out: the run directory (not shown)")
            continue
        lines.append(line)
    return redact_paths("\n".join(lines), hide)


def _flat(value: Any) -> str:
    """A provenance value as text: nested records as ``key=value`` pairs, paths by their last component."""
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_flat(v)}" for k, v in sorted(value.items()))
    return shown_path(value) if isinstance(value, str) else "-" if value is None else str(value)


def render(ctx: ReportContext) -> str:
    """The provenance section (every mapping sorted: the manifest on disk and in memory order keys differently)."""
    manifest = ctx.manifest
    hide = absolute_strings(manifest.get("config", {})) + absolute_strings(manifest.get("model") or {})
    out = ['<h2 id="provenance">Config and provenance</h2>']
    ident = (manifest.get("model") or {}).get("identity") or {}
    if ident:
        out.append(
            table(
                ["model", "value"],
                [[esc(k), esc(shown_path(v) if isinstance(v, str) else v)] for k, v in sorted(ident.items())],
                "The model as loaded (absolute paths are shown by their last component).",
            )
        )
    source = (manifest.get("model") or {}).get("provenance") or {}
    if source:
        out.append(
            table(
                ["source", "value"],
                [[esc(k), esc(_flat(v))] for k, v in sorted(source.items())],
                "Where the model came from: alias, local folder, GGUF file or hub id, with the revision asked for "
                "and the commit it resolved to.",
            )
        )
    versions = manifest.get("versions") or {}
    if versions:
        out.append(
            table(
                ["package", "version"],
                [[esc(k), esc(v)] for k, v in sorted(versions.items())],
                "Versions of the libraries that affect the results.",
            )
        )
    steps = manifest.get("steps") or {}
    if steps:
        out.append("<h3>Steps</h3>" + _steps_table(steps))
    out.append(_input_files(steps, (ctx.config.get("data") or {}).get("data_dir")))
    if manifest.get("config_toml"):
        out.append("<h3>Config</h3><pre>" + esc(config_text(manifest["config_toml"], hide)) + "</pre>")
    return "\n".join(p for p in out if p)
