"""Where the neurons are, how the sets overlap, and the top neurons of each set."""

from __future__ import annotations

from ...selection.neuronset import Neuron, NeuronSet
from .. import plots, stats
from ..page import ReportContext, esc, note, table

# The general set is selected in two pools (MLP and attention, each its own top fraction), so its
# scores are ranked within a pool; a specific set is selected in one pool over all its sites.
POOLS = (("MLP", "mlp."), ("attention", "attn."))


def where(ctx: ReportContext) -> str:
    """Neurons per layer (figure) and per site (table)."""
    out = ['<h2 id="where">Where the neurons are</h2>']
    general, specific = ctx.general, ctx.specific
    if general is None and not specific:
        return "\n".join(out + [note("No neuron sets in this run (the select stage has not run).")])
    nl = general.num_layers if general is not None else next(iter(specific.values())).num_layers
    g_counts = stats.layer_counts(general, nl) if general is not None and len(general) else None
    s_counts = {c: stats.layer_counts(ns, nl) for c, ns in specific.items()}
    if g_counts is not None or s_counts:
        out.append(
            ctx.figures.embed(
                "layers",
                plots.layer_figure(g_counts, s_counts),
                "neurons per layer and site",
                "Neurons per layer. Top: the culture-general set, stacked by site. Bottom: each country's "
                "culture-specific set.",
            )
        )
    named = {**({"general": general} if general is not None else {}), **specific}
    totals = stats.site_totals(named)
    if not totals.empty:
        out.append(
            table(
                ["set"] + list(totals.columns) + ["total"],
                [[esc(i)] + [int(v) for v in row] + [int(row.sum())] for i, row in totals.iterrows()],
                "Neurons per site in each set (general: the culture-general set; the others: each country's "
                "culture-specific set).",
            )
        )
    return "\n".join(out)


def overlap(ctx: ReportContext) -> str:
    """The Jaccard heatmap between the specific sets and the general set."""
    out = ['<h2 id="overlap">Overlap between sets</h2>']
    sets = dict(ctx.specific)
    if ctx.general is not None:
        sets["general"] = ctx.general
    if len(sets) < 2:
        return "\n".join(out + [note("Fewer than two neuron sets: nothing to compare.")])
    out.append(
        ctx.figures.embed(
            "overlap",
            plots.overlap_figure(stats.jaccard(sets)),
            "Jaccard overlap heatmap",
            "Jaccard index between the culture-specific sets of each country and the culture-general set.",
        )
    )
    return "\n".join(out)


def _rows(neurons: list[Neuron], ranked: bool) -> list[list[object]]:
    return [
        ([i + 1] if ranked else []) + [esc(n.site), n.layer, n.index, f"{n.score:.3e}"] for i, n in enumerate(neurons)
    ]


def _pool_top(ns: NeuronSet, prefix: str, n: int) -> list[Neuron]:
    pool = [x for x in ns.neurons if x.score is not None and x.site.startswith(prefix)]
    pool.sort(key=lambda x: -x.score)
    return pool[:n]


def top(ctx: ReportContext) -> str:
    """The top general neurons per pool and the top five of each country's specific set, with what the score is."""
    out = ['<h2 id="top">Top neurons</h2>']
    general, n = ctx.general, ctx.top_n
    if general is not None and len(general) and n:
        for pool, prefix in POOLS:
            best = _pool_top(general, prefix, n)
            if best:
                out.append(
                    table(
                        ["#", "site", "layer", "index", "score"],
                        _rows(best, True),
                        f"The {len(best)} culture-general {pool} neurons with the highest general score "
                        "S<sub>d</sub> − S<sub>c</sub> (the dataset's attribution minus its control's, per example, "
                        "summed "
                        f"over the cultural datasets). Ranked within the {pool} pool, as the selection does: MLP and "
                        "attention scores are on different scales and are never ranked together.",
                        left=2,
                    )
                )
    for country, ns in ctx.specific.items():
        if len(ns) and n:
            best = stats.top_neurons(ns, min(5, n))
            out.append(
                f"<h3>{esc(country)}</h3>"
                + table(
                    ["site", "layer", "index", "score"],
                    _rows(best, False),
                    f"The {len(best)} neurons of the {esc(country)} culture-specific set with the highest country "
                    "score s<sub>c</sub> "
                    f"(the attribution on {esc(country)}'s questions minus its control's, per example). The specific "
                    "selection uses "
                    "one pool over all its sites, so MLP and attention neurons are ranked together here.",
                )
            )
    return "\n".join(out)
