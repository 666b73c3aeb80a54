"""The neuron cards: a table of the cards the pipeline wrote, sortable and filterable, each row opening its card.

No script: the sort and filter controls are radio buttons, and the page's CSS reorders (``order``) or
hides the rows whose classes do not match the checked one; each row is a ``<details>`` element whose
body is the card. The page therefore works offline, in any browser, and with scripts switched off.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ... import rundir
from ...cards.card import NeuronCard, read_cards
from ...cards.render import CARD_CSS, card_html
from ..page import ReportContext, esc, note

# (label, key): rows sorted ascending by key; the first is the file's order (each set's best first)
SORTS: tuple[tuple[str, Callable[[int, NeuronCard], tuple]], ...] = (
    ("rank", lambda i, c: (i,)),
    ("layer", lambda i, c: (c.layer, c.site, c.index)),
    ("max activation", lambda i, c: (-(c.max_activation or 0.0), i)),
    ("culture/control", lambda i, c: (-(c.control_ratio or 0.0), i)),
    ("density", lambda i, c: (-(c.density or 0.0), i)),
)
COLUMNS = ("sets", "site", "layer", "index", "max", "density", "culture/control", "summary")

VIEW_CSS = """
.cv>input{display:none}.cv-controls{margin:6px 0 10px;font-size:0.9em}.cv-controls div{margin:3px 0}
.cv-controls label{display:inline-block;border:1px solid #ccc;border-radius:3px;padding:0 6px;margin:1px;cursor:pointer}
.cv-rows{display:flex;flex-direction:column;border-top:1px solid #ddd}
.cv-row>summary,.cv-head{display:grid;grid-template-columns:15em 5.5em 3.5em 4.5em 4.5em 4.5em 8em 1fr;gap:6px;
padding:3px 4px;border-bottom:1px solid #eee;font-size:0.88em;cursor:pointer;list-style:none}
.cv-head{order:-1;font-weight:600;background:#f2f2f2;cursor:default}.cv-row>summary::-webkit-details-marker{display:none}
.cv-row>summary span{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}.cv-row[open]>summary{background:#fdf2e9}
"""


def _css(sets: Sequence[str], sites: Sequence[str], layers: Sequence[int]) -> str:
    """The rules that make the radio buttons sort and filter the rows."""
    rules = [VIEW_CSS, CARD_CSS]
    checked = "background:#2e86c1;color:#fff;border-color:#2e86c1"
    for i in range(len(SORTS)):
        rules.append(f"#cv-sort-{i}:checked~.cv-rows>.cv-row{{order:var(--o{i})}}")
        rules.append(f'#cv-sort-{i}:checked~.cv-controls label[for="cv-sort-{i}"]{{{checked}}}')
    for group, values in (("set", sets), ("site", sites), ("layer", layers)):
        rules.append(f'#cv-{group}-all:checked~.cv-controls label[for="cv-{group}-all"]{{{checked}}}')
        for j in range(len(values)):
            rules.append(f"#cv-{group}-{j}:checked~.cv-rows>.cv-row:not(.{group}-{j}){{display:none}}")
            rules.append(f'#cv-{group}-{j}:checked~.cv-controls label[for="cv-{group}-{j}"]{{{checked}}}')
    return "<style>" + "\n".join(rules) + "</style>"


def _radios(group: str, count: int, with_all: bool = True) -> str:
    ids = (["all"] if with_all else []) + [str(j) for j in range(count)]
    return "".join(
        f'<input type="radio" name="cv-{group}" id="cv-{group}-{i}"{" checked" if n == 0 else ""}>'
        for n, i in enumerate(ids)
    )


def _labels(title: str, group: str, values: Sequence[object], with_all: bool = True) -> str:
    labels = [f'<label for="cv-{group}-all">all</label>'] if with_all else []
    labels += [f'<label for="cv-{group}-{j}">{esc(v)}</label>' for j, v in enumerate(values)]
    return f"<div>{esc(title)}: {' '.join(labels)}</div>"


def _set_label(name: str) -> str:
    return name.partition(":")[2] if name.startswith("specific:") else name


def _num(x: float | None, fmt: str) -> str:
    return "-" if x is None else fmt.format(x)


def _row(i: int, card: NeuronCard, orders: list[int], sets: list[str], sites: list[str], layers: list[int]) -> str:
    classes = [f"set-{sets.index(m.set)}" for m in card.sets if m.set in sets]
    classes += [f"site-{sites.index(card.site)}", f"layer-{layers.index(card.layer)}"]
    style = ";".join(f"--o{k}:{o}" for k, o in enumerate(orders))
    held = " · ".join(f"{esc(_set_label(m.set))} #{m.rank}" for m in card.sets) or "-"
    cells = [
        held,
        esc(card.site),
        str(card.layer),
        str(card.index),
        _num(card.max_activation, "{:.3g}"),
        _num(card.density, "{:.1%}"),
        _num(card.control_ratio, "{:.2f}×"),
        esc(card.summary),
    ]
    summary = "".join(f"<span>{c}</span>" for c in cells)
    anchor = f"card-{card.site.replace('.', '-')}-{card.layer}-{card.index}"
    return (
        f'<details class="cv-row {" ".join(classes)}" id="{anchor}" style="{style}">'
        f"<summary>{summary}</summary>{card_html(card)}</details>"
    )


def render(ctx: ReportContext) -> str:
    """The cards section: what it shows, the controls, one row per card."""
    out = ['<h2 id="cards">Neuron cards</h2>']
    path = ctx.run_dir / rundir.CARDS_REL
    if not path.is_file():
        return "\n".join(out + [note("No neuron cards: the cards stage has not run (it writes neurons/cards.jsonl).")])
    cards = list(read_cards(path))
    if not cards:
        return "\n".join(out + [note("The cards stage found no neuron to describe (the sets are empty).")])
    out.append(
        note(
            "The top neurons of every set, one card each (click a row). Every line is computed from the run: "
            "<b>what it writes</b> (the tokens its output direction promotes and suppresses through the "
            "unembedding), <b>what makes it fire</b> (its examples with the highest activation, each token shaded "
            "by its activation), <b>whose culture</b> (mean activation and country score per country; culture "
            "against control and NLU examples), <b>how often</b> (density: the share of tokens where it is above "
            "0; the histogram of example activations) and, where the validity stage measured it, what zeroing it "
            "does. docs/cards.md explains each field."
        )
    )
    sets = sorted({m.set for c in cards for m in c.sets}, key=lambda s: (s != "general", s))
    sites = sorted({c.site for c in cards})
    layers = sorted({c.layer for c in cards})
    ranks = []
    for _label, key in SORTS:
        order = sorted(range(len(cards)), key=lambda i, key=key: key(i, cards[i]))
        rank = [0] * len(cards)
        for position, i in enumerate(order):
            rank[i] = position
        ranks.append(rank)
    controls = (
        _labels("Sort by", "sort", [label for label, _ in SORTS], with_all=False)
        + _labels("Set", "set", [_set_label(s) for s in sets])
        + _labels("Site", "site", sites)
        + _labels("Layer", "layer", layers)
    )
    head = "".join(f"<span>{esc(c)}</span>" for c in COLUMNS)
    rows = "".join(_row(i, c, [r[i] for r in ranks], sets, sites, layers) for i, c in enumerate(cards))
    out.append(
        _css(sets, sites, layers)
        + '<div class="cv">'
        + _radios("sort", len(SORTS), with_all=False)
        + _radios("set", len(sets))
        + _radios("site", len(sites))
        + _radios("layer", len(layers))
        + f'<div class="cv-controls">{controls}</div>'
        + f'<div class="cv-rows"><div class="cv-head">{head}</div>{rows}</div></div>'
    )
    return "\n".join(out)
