"""The report's figures, drawn with matplotlib's object API (no pyplot state, no display needed).

Each function returns a matplotlib :class:`~matplotlib.figure.Figure` (use it in a notebook, save it
in any format); :func:`to_png` gives the PNG bytes the report embeds. matplotlib is a core dependency;
the import is deferred so that scoring never pays for it.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..errors import CultureNeuronsError
from .stats import stars

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn, not when this module is
    from matplotlib.figure import Figure

SITE_COLOURS = {
    "mlp.gate": "#1b6ca8",
    "mlp.up": "#6aa6d8",
    "mlp.in": "#1b6ca8",
    "attn.q": "#e07b39",
    "attn.k": "#f2b134",
    "attn.v": "#8f5aa8",
}
BAR_COLOURS = {"original": "#7f8c8d", "target": "#c0392b", "random": "#2e86c1"}
DPI = 110


def _figure(width: float, height: float) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise CultureNeuronsError("the report needs matplotlib; install it with: pip install matplotlib") from exc
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def to_png(fig: Figure) -> bytes:
    """The PNG bytes of a Figure (white background, the report's resolution)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    return buf.getvalue()


def layer_figure(general: pd.DataFrame | None, specific: Mapping[str, pd.DataFrame]) -> Figure:
    """Neurons per layer: stacked bars by site for the general set; a country × layer heatmap for the specific sets."""
    from matplotlib.ticker import MaxNLocator

    panels = int(general is not None) + int(bool(specific))
    if panels == 0:
        raise CultureNeuronsError("no neuron sets to plot")
    fig = _figure(11, 3.6 if panels == 1 else 7.0)
    axes = fig.subplots(panels, 1, squeeze=False)[:, 0]
    i = 0
    if general is not None:
        ax = axes[i]
        i += 1
        bottom = np.zeros(len(general))
        for site in general.columns:
            vals = general[site].to_numpy()
            ax.bar(general.index, vals, bottom=bottom, color=SITE_COLOURS.get(site), label=site, width=0.85)
            bottom += vals
        ax.set_title(f"Culture-general neurons per layer ({int(general.to_numpy().sum())} in all)")
        ax.set_xlabel("layer")
        ax.set_ylabel("neurons")
        ax.legend(ncols=len(general.columns), fontsize=8, loc="upper right", frameon=False)
        # Half a layer of air at both ends (no tick outside the layers) and 25% headroom: no bar touches the frame.
        ax.set_xlim(-0.9, len(general) - 0.1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(0, max(1.0, float(bottom.max())) * 1.25)
    if specific:
        ax = axes[i]
        countries = list(specific)
        grid = np.stack([specific[c].sum(axis=1).to_numpy() for c in countries])
        im = ax.imshow(grid, aspect="auto", cmap="Greens", interpolation="nearest")
        ax.set_yticks(
            range(len(countries)), [f"{c} ({int(grid[j].sum())})" for j, c in enumerate(countries)], fontsize=8
        )
        ax.set_xlabel("layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title("Culture-specific neurons per layer (all sites)")
        fig.colorbar(im, ax=ax, label="neurons", shrink=0.9)
    return fig


def overlap_figure(matrix: pd.DataFrame) -> Figure:
    """Jaccard heatmap between the culture-specific sets and the general set."""
    n = len(matrix)
    fig = _figure(max(5.0, 0.75 * n + 2.5), max(4.0, 0.6 * n + 1.5))
    ax = fig.subplots()
    values = matrix.to_numpy(dtype=float)
    im = ax.imshow(
        values,
        cmap="viridis",
        vmin=0,
        vmax=max(0.05, float(np.nanmax(np.where(np.eye(n, dtype=bool), np.nan, values))) if n > 1 else 1.0),
    )
    ax.set_xticks(range(n), matrix.columns, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), matrix.index, fontsize=8)
    for a in range(n):
        for b in range(n):
            v = values[a, b]
            ax.text(
                b,
                a,
                "1" if a == b else f"{v:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if v < 0.5 * im.norm.vmax else "black",
            )
    ax.set_title("Overlap between neuron sets (Jaccard)")
    fig.colorbar(im, ax=ax, shrink=0.85)
    return fig


def experiment_figure(
    bars: pd.DataFrame,
    title: str,
    target_label: str,
    chance: Mapping[str, float | None] | None = None,
    two_sided: bool = False,
) -> Figure:
    """Grouped bars per benchmark, with significance marks.

    Original and intervened: accuracy ± its 95% bootstrap CI; random: the mean of the random sets, with the
    95% paired-bootstrap CI of their change from the original placed around it (``stats.experiment_bars``).
    """
    n = len(bars)
    fig = _figure(max(5.5, 2.4 * n + 2), 4.2)
    ax = fig.subplots()
    x = np.arange(n)
    w = 0.26
    specs = [
        ("original", "original", BAR_COLOURS["original"]),
        ("target", target_label, BAR_COLOURS["target"]),
        ("random", "random (mean of seeds)", BAR_COLOURS["random"]),
    ]
    for j, (col, label, colour) in enumerate(specs):
        vals = bars[col].astype(float).to_numpy()
        lo = bars[f"{col}_lo"].astype(float).to_numpy()
        hi = bars[f"{col}_hi"].astype(float).to_numpy()
        err = np.vstack([np.nan_to_num(vals - lo), np.nan_to_num(hi - vals)])
        pos = x + (j - 1) * w
        ax.bar(pos, np.nan_to_num(vals), w, color=colour, label=label, yerr=err, capsize=3, error_kw={"linewidth": 1})
        if col == "random":
            for k, seeds in enumerate(bars["random_seeds"]):
                if seeds:
                    ax.scatter(np.full(len(seeds), pos[k]), seeds, s=9, color="black", zorder=3, alpha=0.6)
    top = float(np.nanmax(bars[["original_hi", "target_hi"]].astype(float).to_numpy())) if n else 100.0
    for k in range(n):
        mark = stars(bars["p_two_sided" if two_sided else "p_one_sided"].iloc[k])
        if mark:
            ax.text(x[k], min(top + 4, 104), mark, ha="center", va="bottom", fontsize=10)
    for k, bench in enumerate(bars["benchmark"]):
        c = (chance or {}).get(bench)
        if c is not None:
            ax.hlines(
                c,
                x[k] - 1.6 * w,
                x[k] + 1.6 * w,
                colors="black",
                linestyles="dashed",
                linewidth=1,
                label="chance" if k == 0 else None,
            )
    ax.set_xticks(x, [f"{b}\n({s}, n={m})" for b, s, m in zip(bars["benchmark"], bars["split"], bars["n"])], fontsize=9)
    ax.set_ylabel(f"{bars['metric'].iloc[0] if n else 'accuracy'} (%)")
    ax.set_ylim(0, 110)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper center", ncols=4, frameon=False, bbox_to_anchor=(0.5, -0.18))
    return fig


def cross_culture_figure(matrix: pd.DataFrame) -> Figure:
    """Change in accuracy (points) for each evaluated country (columns) when each country's set is suppressed (rows)."""
    rows, cols = matrix.shape
    fig = _figure(max(5.5, 0.8 * cols + 3), max(4.0, 0.6 * rows + 1.8))
    ax = fig.subplots()
    values = matrix.to_numpy(dtype=float)
    lim = max(1.0, float(np.nanmax(np.abs(values))))
    im = ax.imshow(values, cmap="RdBu", vmin=-lim, vmax=lim)
    ax.set_xticks(range(cols), matrix.columns, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(rows), matrix.index, fontsize=8)
    ax.set_xlabel("evaluated on")
    ax.set_ylabel("suppressed set")
    for a in range(rows):
        for b in range(cols):
            v = values[a, b]
            weight = "bold" if matrix.index[a] == matrix.columns[b] else "normal"
            ax.text(
                b,
                a,
                f"{v:+.1f}",
                ha="center",
                va="center",
                fontsize=7,
                fontweight=weight,
                color="white" if abs(v) > 0.6 * lim else "black",
            )
    ax.set_title("Cross-culture suppression: change in accuracy (points)")
    fig.colorbar(im, ax=ax, shrink=0.85, label="points")
    return fig


FINETUNE_COLOURS = {"top": "#c0392b", "bottom": "#27ae60", "random": "#2e86c1", "full": "#7f8c8d", "custom": "#8e44ad"}


def finetune_figure(changes: pd.DataFrame, title: str = "Selective fine-tuning: change from the base model") -> Figure:
    """Grouped bars per benchmark: each fine-tuned set's change from base (points) with its 95% paired-bootstrap CI.

    ``changes`` has one row per (benchmark, set) with the columns ``benchmark``, ``set``, ``value``,
    ``ci_low``, ``ci_high`` and ``n``; benchmarks and sets keep their order of first appearance.
    """
    if changes.empty:
        raise CultureNeuronsError("no fine-tuning results to plot")
    benches = list(dict.fromkeys(changes["benchmark"]))
    sets = list(dict.fromkeys(changes["set"]))
    fig = _figure(max(5.5, 1.1 * len(benches) * len(sets) + 2), 4.0)
    ax = fig.subplots()
    x = np.arange(len(benches))
    w = 0.8 / len(sets)
    table = changes.set_index(["benchmark", "set"])
    for j, name in enumerate(sets):
        rows = [table.loc[(b, name)] if (b, name) in table.index else None for b in benches]
        vals = np.array([np.nan if r is None or r["value"] is None else float(r["value"]) for r in rows])
        lo = np.array([np.nan if r is None or r["ci_low"] is None else float(r["ci_low"]) for r in rows])
        hi = np.array([np.nan if r is None or r["ci_high"] is None else float(r["ci_high"]) for r in rows])
        err = np.vstack([np.nan_to_num(vals - lo), np.nan_to_num(hi - vals)])
        ax.bar(
            x + (j - (len(sets) - 1) / 2) * w,
            np.nan_to_num(vals),
            w,
            yerr=err,
            capsize=3,
            error_kw={"linewidth": 1},
            color=FINETUNE_COLOURS.get(name),
            label=name,
        )
    ax.axhline(0, color="black", linewidth=0.8)
    n_of = changes.drop_duplicates("benchmark").set_index("benchmark")["n"]
    ax.set_xticks(x, [f"{b}\n(n={n_of[b]})" for b in benches], fontsize=9)
    ax.set_ylabel("change from base (points)")
    ax.set_title(title)
    ax.margins(y=0.15)
    ax.legend(fontsize=8, loc="upper center", ncols=len(sets), frameon=False, bbox_to_anchor=(0.5, -0.14))
    return fig
