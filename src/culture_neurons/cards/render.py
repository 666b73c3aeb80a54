"""Cards as text (the ``inspect`` command) and as HTML (the report): both show the same numbers.

The HTML card needs no script and no external file: heat lines are coloured spans, the histogram an
inline SVG, and every table is captioned like the report's other tables.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from .card import ExampleHit, Histogram, Membership, NeuronCard

SPARK = "▁▂▃▄▅▆▇█"
CONTEXT_BEFORE, CONTEXT_AFTER = 12, 6  # tokens of a heat line shown around its maximum in text

CARD_CSS = """
.card{border-left:3px solid #e67e22;padding:6px 12px;margin:6px 0 12px;background:#fffdf9}
.card h4{margin:10px 0 4px;font-size:0.95em}.card .line{margin:2px 0}
.tok{display:inline-block;border:1px solid #ddd;border-radius:3px;padding:0 4px;margin:1px 2px;
font-family:ui-monospace,Menlo,Consolas,monospace;font-size:0.85em;white-space:pre}
.tok small{color:#777}.tok.up{background:#eaf6ec}.tok.down{background:#fbecea}
.heat{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:0.82em;white-space:pre-wrap;
line-height:1.7;margin:2px 0 8px}.heat span{border-radius:2px}.heat .pre{color:#aaa}
.heat .peak{outline:1px solid #c0392b}.heat .sep{color:#2e86c1}.hit{margin:6px 0 0;font-size:0.88em}
""" + "".join(f".heat .h{i}{{background:rgba(230,126,34,{i / 10:.1f})}}" for i in range(1, 11))


def shown(token: str) -> str:
    """A token as text with its whitespace and control characters visible (``\\n``, ``\\x14``)."""
    out = []
    for ch in token:
        if ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif not ch.isprintable() and ch != " ":
            out.append(ch.encode("unicode_escape").decode("ascii"))
        else:
            out.append(ch)
    return "".join(out)


def _num(x: float | None, fmt: str = "{:.3g}") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)


def _membership(m: Membership) -> str:
    pool = f"{m.pool}, " if m.set == "general" else ""
    return f"{m.set} #{m.rank} of {m.of} ({pool}score {_num(m.score, '{:.3e}')})"


def where_line(card: NeuronCard) -> str:
    """Site, layer, index; each set's rank and score; the validity selection frequencies."""
    parts = [card.name]
    parts += [_membership(m) for m in card.sets] or ["in no set of the run"]
    parts += [f"selected in {v:.0%} of the {k}" for k, v in card.frequency.items()]
    return " · ".join(parts)


def fires_line(card: NeuronCard) -> str:
    """How often and how strongly: maximum, density, the single-neuron effect."""
    parts = [f"max {_num(card.max_activation)}"]
    if card.density is not None:
        parts.append(f"active (> 0) on {card.density:.1%} of {card.positions:,} tokens")
    if card.effect is not None:
        stratum = f" ({card.effect_stratum} stratum)" if card.effect_stratum else ""
        parts.append(f"zeroing it changes p by {-card.effect:+.3g}{stratum}")
    return " · ".join(parts)


def spark(hist: Histogram | None) -> str:
    """The histogram as one line of block characters, with its range."""
    if hist is None or not hist.counts:
        return "-"
    top = max(hist.counts) or 1
    bars = "".join(SPARK[min(len(SPARK) - 1, round(c / top * (len(SPARK) - 1)))] if c else " " for c in hist.counts)
    return f"{bars}  [{_num(hist.edges[0])}, {_num(hist.edges[-1])}]"


def _window(hit: ExampleHit) -> str:
    start = max(0, hit.position - CONTEXT_BEFORE)
    end = min(len(hit.tokens), hit.position + CONTEXT_AFTER + 1)
    breaks = set(hit.breaks)
    text = "".join(
        (" | " if i in breaks else "") + (f"⟦{shown(t)}⟧" if i == hit.position else shown(t))
        for i, t in enumerate(hit.tokens[start:end], start)
    )
    return ("…" if start else "") + text + ("…" if end < len(hit.tokens) else "")


def _ratio(label: str, value: float | None) -> str:
    return f"{label} {value:.2f}×" if value is not None else f"{label} -"


def text_card(card: NeuronCard, examples: int | None = None) -> str:
    """The compact text card ``culture-neurons inspect`` prints."""
    lines = [where_line(card), f"  {card.summary}"]
    if card.through is None:
        lines.append(f"  writes: nothing; {card.lens_note}")
    else:
        lines.append(f"  writes through {card.through}")
        lines.append("    promotes:   " + "  ".join(f"'{shown(t.token)}' {t.logit:+.3g}" for t in card.promoted))
        lines.append("    suppresses: " + "  ".join(f"'{shown(t.token)}' {t.logit:+.3g}" for t in card.suppressed))
    lines.append(f"  fires: {fires_line(card)}")
    for hit in card.top_examples[: examples or len(card.top_examples)]:
        lines.append(
            f"    {hit.activation:8.3g}  {hit.source:<14} {hit.group:<14} {hit.id}  "
            f"at '{shown(hit.token)}'  {_window(hit)}"
        )
    means = " / ".join(f"{s.source} {_num(s.mean)} (n={s.n})" for s in card.sources)
    lines.append(
        f"  mean activation: {means}; {_ratio('culture/control', card.control_ratio)}, "
        f"{_ratio('culture/NLU', card.nlu_ratio)}"
    )
    for c in sorted(card.countries, key=lambda c: -(c.mean if c.mean is not None else -math.inf)):
        attribution = f"  s_c {c.attribution:+.3e}" if c.attribution is not None else ""
        control = f" (control {_num(c.control_mean)})" if c.control_mean is not None else ""
        lines.append(f"    {c.country:<16} n={c.n:<4} mean {_num(c.mean)}{control}{attribution}")
    lines.append(f"  histogram of example activations: {spark(card.histogram)}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# HTML


def esc(x: object) -> str:
    return html.escape(str(x))


def table(header: Sequence[str], rows: Sequence[Sequence[str]], caption: str) -> str:
    """A captioned table in the report's markup (cells are HTML; the first column left-aligned)."""
    head = "".join(f"<th{' class=l' if i == 0 else ''}>{esc(h)}</th>" for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f"<td{' class=l' if i == 0 else ''}>{c}</td>" for i, c in enumerate(r)) + "</tr>" for r in rows
    )
    return (
        f'<figure class="tbl"><figcaption>{caption}</figcaption>'
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></figure>"
    )


def _chips(tokens: Sequence, kind: str) -> str:
    return "".join(
        f'<span class="tok {kind}">{esc(shown(t.token))} <small>{t.logit:+.3g}</small></span>' for t in tokens
    )


def heat_line(hit: ExampleHit, peak: float | None, before: int = 40, after: int = 12) -> str:
    """The example's tokens around its maximum (``before``/``after`` tokens), each shaded by its activation over
    the neuron's maximum in ten levels; the value is the token's tooltip."""
    top = peak if peak and peak > 0 else None
    start, end = max(0, hit.position - before), min(len(hit.tokens), hit.position + after + 1)
    spans = ["<span class=pre>…</span>"] if start else []
    breaks = set(hit.breaks)
    for i in range(start, end):
        if i in breaks:
            spans.append('<span class=sep title="an option begins"> | </span>')
        text, value = esc(shown(hit.tokens[i])), hit.heat[i] if i < len(hit.heat) else None
        if value is None:
            spans.append(f'<span class=pre title="shared prefix: not counted">{text}</span>')
            continue
        level = 0 if top is None or value <= 0 else min(10, round(value / top * 10))
        classes = " ".join(c for c in (f"h{level}" if level else "", "peak" if i == hit.position else "") if c)
        spans.append(f'<span class="{classes}" title="{value:.3g}">{text}</span>' if classes else text)
    if end < len(hit.tokens):
        spans.append("<span class=pre>…</span>")
    return f'<div class="heat">{"".join(spans)}</div>'


def histogram_svg(hist: Histogram | None, width: int = 260, height: int = 56) -> str:
    """An inline SVG bar chart of the histogram, with its range under it."""
    if hist is None or not hist.counts:
        return ""
    top = max(hist.counts) or 1
    w = width / len(hist.counts)
    bars = "".join(
        f'<rect x="{i * w:.1f}" y="{height - c / top * height:.1f}" width="{max(w - 1, 1):.1f}" '
        f'height="{c / top * height:.1f}" fill="#e67e22"><title>{c} example(s) in '
        f"[{hist.edges[i]:.3g}, {hist.edges[i + 1]:.3g}]</title></rect>"
        for i, c in enumerate(hist.counts)
    )
    return (
        f'<svg width="{width}" height="{height}" role="img" aria-label="activation histogram">{bars}</svg>'
        f'<div class="note">{_num(hist.edges[0])} … {_num(hist.edges[-1])}</div>'
    )


def card_html(card: NeuronCard) -> str:
    """The card's body: where, what it writes, what makes it fire, whose culture, how often, the summary."""
    out = [
        f'<div class="card"><p class="line"><b>{esc(card.summary)}</b></p>',
        f'<p class="line">{esc(where_line(card))}</p>',
    ]
    out.append("<h4>What it writes</h4>")
    if card.through is None:
        out.append(f'<p class="line note">No output direction: {esc(card.lens_note)}</p>')
    else:
        out.append(f'<p class="line note">Through {esc(card.through)}; logits per unit of the channel.</p>')
        out.append(f'<p class="line promoted">Promotes {_chips(card.promoted, "up")}</p>')
        out.append(f'<p class="line suppressed">Suppresses {_chips(card.suppressed, "down")}</p>')
    out.append("<h4>What makes it fire</h4>")
    for hit in card.top_examples:
        out.append(
            f'<p class="hit"><b>{hit.activation:.3g}</b> · {esc(hit.source)} · {esc(hit.group)} · '
            f'<code>{esc(hit.id)}</code> · at <span class="tok">{esc(shown(hit.token))}</span></p>'
        )
        out.append(heat_line(hit, card.max_activation))
    out.append("<h4>Whose culture</h4>")
    rows = [
        [esc(c.country), str(c.n), _num(c.mean), _num(c.control_mean), _num(c.attribution, "{:+.3e}")]
        for c in sorted(card.countries, key=lambda c: -(c.mean if c.mean is not None else -math.inf))
    ]
    if rows:
        out.append(
            table(
                ["country", "n", "mean activation", "control mean", "s_c"],
                rows,
                "Mean activation (the maximum over an example's positions) on each country's identification and "
                "control examples, and the country score s<sub>c</sub> from the run's score tables.",
            )
        )
    means = [[esc(s.source), str(s.n), _num(s.mean), _num(s.max)] for s in card.sources]
    out.append(
        table(
            ["examples", "n", "mean activation", "max"],
            means,
            f"Activation by source: culture/control ratio {_num(card.control_ratio, '{:.2f}')}, culture/NLU "
            f"{_num(card.nlu_ratio, '{:.2f}')} (ratios of the means, shown when both are positive).",
        )
    )
    out.append("<h4>How often and how strongly</h4>")
    out.append(f'<p class="line">{esc(fires_line(card))}</p>{histogram_svg(card.histogram)}')
    out.append("</div>")
    return "\n".join(out)
