"""The building blocks of the HTML report: escaping, numbers, captioned tables, embedded figures.

Every report section is a function ``section(ctx: ReportContext) -> str`` built from these, so that
all tables share one look and every table has a caption.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from ..selection.neuronset import NeuronSet
from . import plots

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
margin:0;color:#222;background:#fafafa;line-height:1.45}
main{max-width:1100px;margin:0 auto;padding:24px 32px 64px;background:#fff}
h1{font-size:1.6em;margin:0 0 4px}
h2{font-size:1.25em;margin:32px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:1.05em;margin:18px 0 6px}.sub{color:#666;margin:0 0 16px}
table{border-collapse:collapse;margin:8px 0 12px;font-size:0.9em}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}
figure.tbl{margin:10px 0 14px}figure.tbl figcaption{color:#444;font-size:0.9em;margin:0 0 4px;max-width:1000px}
figure.tbl table{margin:0}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}td.l,th.l{text-align:left}
figure{margin:12px 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:0.88em;margin-top:4px}
pre{background:#f6f8fa;padding:10px;overflow:auto;font-size:0.82em;max-height:420px}
.note{color:#666;font-size:0.9em}.bad{color:#b03a2e}.good{color:#1e8449}.ns{color:#7d6608}code{font-size:0.92em}
nav a{margin-right:12px}
.holds{border:2px solid #555;border-radius:6px;padding:10px 16px;margin:14px 0 18px;background:#fcfcfc}
.holds h2{margin-top:4px;border:0}.holds table{width:100%}
.overall{font-size:1.08em;margin:8px 0 12px}.overall .note{display:block;margin-top:4px}
.reading{background:#f4f8fb;border-left:3px solid #2e86c1;padding:4px 10px}
.verdict{font-weight:600;white-space:nowrap}
.banner{border:2px solid #b03a2e;background:#fdf2f0;border-radius:6px;padding:8px 14px;margin:12px 0}
"""


def esc(x: Any) -> str:
    """HTML-escaped ``str(x)``."""
    return html.escape(str(x))


def num(v: Any, fmt: str = "{:.1f}") -> str:
    """``v`` formatted with ``fmt``, ``-`` for None, the escaped text for a non-number."""
    if v is None:
        return "-"
    try:
        return fmt.format(v)
    except (TypeError, ValueError):
        return esc(v)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], caption: str, left: int = 1) -> str:
    """A captioned table; the first ``left`` columns are left-aligned. Cells are HTML already; headers are escaped."""
    head = "".join(f"<th{' class=l' if i < left else ''}>{esc(h)}</th>" for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f"<td{' class=l' if i < left else ''}>{c}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    # A figure caption, not <caption>: a <caption> is as narrow as its table, and most tables here are narrow.
    return (
        f'<figure class="tbl"><figcaption>{caption}</figcaption>'
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></figure>"
    )


def note(text: str) -> str:
    """A grey explanatory paragraph (``text`` is HTML)."""
    return f'<p class="note">{text}</p>'


class Figures:
    """Collects the report's figures as PNG bytes and embeds each one in the page as a data URI."""

    def __init__(self) -> None:
        self.items: list[tuple[str, bytes]] = []

    def embed(self, name: str, fig: Any, alt: str, caption: str) -> str:
        """Convert a matplotlib Figure to PNG, keep it as ``name`` and return its ``<figure>`` HTML."""
        png = plots.to_png(fig)
        self.items.append((name, png))
        data = base64.b64encode(png).decode("ascii")
        img = f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}">'
        return f"<figure>{img}<figcaption>{caption}</figcaption></figure>"


_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")


def shown_path(value: str) -> str:
    """How the report shows a path from the config or manifest: relative paths and names as given,
    absolute paths by their last component (``…/tiny-llama``), so no path of the machine leaks."""
    text = str(value)
    if _WINDOWS_DRIVE.match(text):
        return "…/" + PureWindowsPath(text).name
    if text.startswith(("/", "~")):
        name = PurePosixPath(text.rstrip("/")).name
        return "…/" + name if name and name != "~" else "…"
    return text


def redact_paths(text: str, values: Sequence[str]) -> str:
    """``text`` with each absolute path in ``values`` (also in its TOML/JSON-escaped form) replaced by
    :func:`shown_path`."""
    for value in sorted(set(values), key=len, reverse=True):  # longest first, so a prefix never breaks a longer path
        shown = shown_path(value)
        if shown == value:
            continue
        text = text.replace(value, shown)
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        if escaped != value:
            text = text.replace(escaped, shown)
    return text


def absolute_strings(node: Any) -> list[str]:
    """Every string in a nested config/manifest structure that looks like an absolute path."""
    if isinstance(node, Mapping):
        return [s for v in node.values() for s in absolute_strings(v)]
    if isinstance(node, (list, tuple)):
        return [s for v in node for s in absolute_strings(v)]
    if isinstance(node, str) and shown_path(node) != node:
        return [node]
    return []


@dataclass
class ReportContext:
    """What every section reads: the run directory, its manifest and config, its neuron sets and figures."""

    run_dir: Path
    manifest: Mapping[str, Any]
    top_n: int
    sets: Mapping[str, NeuronSet]
    chance: Mapping[str, float | None]
    kinds: Mapping[str, str]
    figures: Figures = field(default_factory=Figures)

    @property
    def config(self) -> Mapping[str, Any]:
        """The run's config as the manifest recorded it (empty when unknown)."""
        return self.manifest.get("config", {}) or {}

    @property
    def general(self) -> NeuronSet | None:
        """The culture-general set, when the select stage has run."""
        return self.sets.get("general")

    @property
    def specific(self) -> dict[str, NeuronSet]:
        """``{country: set}`` of the culture-specific sets."""
        return {ns.kind.split(":", 1)[1]: ns for ns in self.sets.values() if ns.kind.startswith("specific:")}
