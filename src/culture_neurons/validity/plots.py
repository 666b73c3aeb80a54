"""Validity figures with matplotlib's object API (no pyplot state); each returns a ``Figure``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

COLOURS = {"culture": "#c0392b", "nlu": "#2e86c1"}
STRATUM_COLOURS = {"top": "#c0392b", "threshold": "#f2b134", "random": "#7f8c8d"}


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def dose_response_figure(section: Mapping[str, Any]) -> Any:
    """Change in score (points) against the number of neurons suppressed: culture and NLU, each with random."""
    fig = _figure(6.5, 4.0)
    ax = fig.subplots()
    points = section.get("dose_response") or []
    for side in ("culture", "nlu"):
        pts = sorted((p for p in points if p["side"] == side), key=lambda p: p["size"])
        if not pts:
            continue
        x = np.array([p["size"] for p in pts])
        for key, style, label in (("change", "-o", side), ("random_change", "--s", f"{side}, random sets")):
            y = np.array([p[key] for p in pts])
            ci = np.array([p[f"{key}_ci"] for p in pts])
            ax.plot(x, y, style, color=COLOURS[side], label=label, alpha=1.0 if key == "change" else 0.6)
            ax.fill_between(x, ci[:, 0], ci[:, 1], color=COLOURS[side], alpha=0.12 if key == "change" else 0.06)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xscale("log")
    ax.set_xlabel("neurons suppressed")
    ax.set_ylabel("change in score (points)")
    ax.set_title("Dose-response: suppression effect by set size")
    ax.legend(fontsize=8, frameon=False)
    return fig


def faithfulness_figure(rows: Sequence[Mapping[str, Any]] | Any, rho: Mapping[str, Any] | None = None) -> Any:
    """Attribution score against the true single-neuron effect, coloured by sample stratum."""
    records = rows.to_dict("records") if hasattr(rows, "to_dict") else list(rows)
    fig = _figure(5.5, 4.2)
    ax = fig.subplots()
    for stratum, colour in STRATUM_COLOURS.items():
        pts = [r for r in records if r.get("stratum", "top") == stratum]
        if pts:
            ax.scatter(
                [float(r["score"]) for r in pts],
                [float(r["effect"]) for r in pts],
                s=14,
                color=colour,
                label=stratum,
                alpha=0.8,
            )
    ax.axhline(0, color="black", lw=0.5)
    ax.axvline(0, color="black", lw=0.5)
    ax.set_xlabel("attribution score (general)")
    ax.set_ylabel("effect: mean p drop when zeroed alone")
    title = "Faithfulness"
    if rho and rho.get("value") is not None:
        lo, hi = rho.get("ci_low", float("nan")), rho.get("ci_high", float("nan"))
        title += f": Spearman {rho['value']:.2f} [{lo:.2f}, {hi:.2f}]"
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    return fig


def enhancement_figure(section: Mapping[str, Any]) -> Any:
    """Change in score (points) against the enhancement factor, per side."""
    fig = _figure(5.5, 3.6)
    ax = fig.subplots()
    rows = sorted(section.get("enhancement") or [], key=lambda r: r["factor"])
    unchanged = {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    for side in ("culture", "nlu"):
        pts = [(r["factor"], r["effect"][side]["change"]) for r in rows if side in r["effect"]]
        if not pts:
            continue
        # Factor 1 is the unchanged model, change 0 by definition: the curve passes through it, not past it.
        if all(f != 1 for f, _ in pts):
            pts = sorted([*pts, (1.0, unchanged)], key=lambda p: p[0])
        x = np.array([f for f, _ in pts])
        y = np.array([c["value"] for _, c in pts])
        ax.errorbar(
            x,
            y,
            yerr=[y - np.array([c["ci_low"] for _, c in pts]), np.array([c["ci_high"] for _, c in pts]) - y],
            fmt="-o",
            color=COLOURS[side],
            label=side,
            capsize=3,
        )
    ax.axhline(0, color="black", lw=0.6)
    ax.axvline(1, color="grey", lw=0.5, ls=":")
    ax.set_xlabel("factor (0 = zeroed, 1 = unchanged)")
    ax.set_ylabel("change in score (points)")
    ax.set_title("Enhancement sweep of the general set")
    ax.legend(fontsize=8, frameon=False)
    return fig


def save_figures(summary: Mapping[str, Any], out: Any) -> list[Any]:
    """Write the figures a summary supports as PNGs into ``out``; return their paths."""
    import csv
    from pathlib import Path

    out = Path(out)
    written = []
    if summary.get("sensitivity", {}).get("dose_response"):
        path = out / "dose_response.png"
        dose_response_figure(summary["sensitivity"]).savefig(path, facecolor="white")
        written.append(path)
    if summary.get("faithfulness") and (out / "faithfulness.csv").is_file():
        with open(out / "faithfulness.csv", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        path = out / "faithfulness.png"
        faithfulness_figure(rows, summary["faithfulness"]["headline"]).savefig(path, facecolor="white")
        written.append(path)
    if summary.get("variants", {}).get("enhancement"):
        path = out / "enhancement.png"
        enhancement_figure(summary["variants"]).savefig(path, facecolor="white")
        written.append(path)
    return written
