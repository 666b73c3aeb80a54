"""The HTML report of a run: one self-contained file with the figures embedded as PNG data URIs.

``culture-neurons report RUN_DIR`` and the pipeline's last stage both call :func:`write_report`.
The figures are also written to ``RUN_DIR/figures/`` for use elsewhere.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import CultureNeuronsError
from ..fileio import atomic_path, write_text_atomic
from ..pipeline.run import chance_by_benchmark, headline_rows
from . import plots, stats

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;background:#fafafa;line-height:1.45}
main{max-width:1100px;margin:0 auto;padding:24px 32px 64px;background:#fff}
h1{font-size:1.6em;margin:0 0 4px}h2{font-size:1.25em;margin:32px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:1.05em;margin:18px 0 6px}.sub{color:#666;margin:0 0 16px}
table{border-collapse:collapse;margin:8px 0 12px;font-size:0.9em}th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}td.l,th.l{text-align:left}
figure{margin:12px 0}figure img{max-width:100%;height:auto;border:1px solid #eee}figcaption{color:#555;font-size:0.88em;margin-top:4px}
pre{background:#f6f8fa;padding:10px;overflow:auto;font-size:0.82em;max-height:420px}
.note{color:#666;font-size:0.9em}.bad{color:#b03a2e}.good{color:#1e8449}code{font-size:0.92em}
nav a{margin-right:12px}
"""


def _esc(x: Any) -> str:
    return html.escape(str(x))


def _num(v: Any, fmt: str = "{:.1f}") -> str:
    if v is None:
        return "-"
    try:
        return fmt.format(v)
    except (TypeError, ValueError):
        return _esc(v)


def _table(header: list[str], rows: list[list[Any]], left: int = 1) -> str:
    head = "".join(f"<th{' class=l' if i < left else ''}>{_esc(h)}</th>" for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f"<td{' class=l' if i < left else ''}>{c}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def build_report(
    run_dir: str | Path, top_neurons: int = 25, manifest: dict[str, Any] | None = None
) -> tuple[str, list[tuple[str, bytes]]]:
    """The report's HTML text and its figures ``[(name, png)]`` (nothing is written)."""
    figs: list[tuple[str, bytes]] = []
    html_text = _render(Path(run_dir), top_neurons, manifest, figs, write=False)
    return html_text, figs


def write_report(
    run_dir: str | Path, top_neurons: int = 25, manifest: dict[str, Any] | None = None, out: str | Path | None = None
) -> Path:
    """Write ``report.html`` (self-contained) and ``figures/*.png`` for a run directory; returns the HTML path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CultureNeuronsError(f"run directory {run_dir} does not exist")
    if manifest is None:
        path = run_dir / "manifest.json"
        if not path.is_file():
            raise CultureNeuronsError(
                f"{run_dir} has no manifest.json; is it a run directory made by `culture-neurons run`?"
            )
        manifest = json.loads(path.read_text(encoding="utf-8"))
    text = _render(run_dir, top_neurons, manifest, [], write=True)
    target = Path(out) if out is not None else run_dir / "report.html"
    write_text_atomic(target, text)
    return target


def _render(run_dir: Path, top_n: int, manifest: dict[str, Any] | None, collected: list, write: bool) -> str:
    manifest = manifest or {}
    config = manifest.get("config", {})

    def figure(name: str, png: bytes, alt: str, caption: str) -> str:
        collected.append((name, png))
        if write:
            with atomic_path(run_dir / "figures" / f"{name}.png", suffix=".png") as tmp:
                tmp.write_bytes(png)
        data = base64.b64encode(png).decode("ascii")
        return f'<figure><img src="data:image/png;base64,{data}" alt="{_esc(alt)}"><figcaption>{caption}</figcaption></figure>'

    title = config.get("run", {}).get("title") or "culture-neurons run"
    model = manifest.get("model", {})
    ident = model.get("identity", {})
    model_name = ident.get("name_or_path") or config.get("model", {}).get("name", "?")
    sets = stats.load_sets(run_dir)
    general = sets.get("general")
    specific = stats.specific_sets(sets)
    chance = chance_by_benchmark(manifest)
    parts: list[str] = []
    parts.append(f"<h1>{_esc(title)}</h1>")
    # No clock time or absolute path here: two runs of the same config give the same report, byte for byte.
    parts.append(
        f'<p class="sub">Model <code>{_esc(model_name)}</code> · run directory <code>{_esc(run_dir.name)}</code> · '
        f"made with culture-neurons {__version__}</p>"
    )
    training = _training(run_dir, figure)
    train_link = '<a href="#train">Fine-tuning</a>' if training else ""
    parts.append(
        '<nav><a href="#results">Results</a><a href="#where">Where the neurons are</a><a href="#overlap">Overlap</a>'
        '<a href="#ablation">Ablation</a><a href="#cross">Cross-culture</a><a href="#enhancement">Enhancement</a>'
        f'{train_link}<a href="#top">Top neurons</a><a href="#provenance">Config and provenance</a></nav>'
    )

    # -- headline -------------------------------------------------------------------------------
    parts.append('<h2 id="results">Results</h2>')
    score_cfg = config.get("score", {})
    eval_cfg = config.get("evaluate", {})
    parts.append(
        f"<p>Neurons were scored with the <code>{_esc(score_cfg.get('target', '?'))}</code> target on "
        f"{_esc(', '.join(score_cfg.get('datasets', [])))} ({_esc(score_cfg.get('split', '?'))} split), with control "
        f"{_esc(', '.join(score_cfg.get('controls', [])) or 'none')} and CountryRC <code>{_esc(score_cfg.get('countryrc') or 'off')}</code>. "
        f"Effects are measured on the {_esc(eval_cfg.get('split', '?'))} split with the <code>{_esc(eval_cfg.get('scorer', '?'))}</code> scorer.</p>"
    )
    base_rows = []
    for key, rec in manifest.get("steps", {}).items():
        if key.startswith("evaluate:") and key.endswith(":original") and rec.get("status") == "done":
            bench = key.split(":")[1]
            info = rec.get("info", {})
            base_rows.append([_esc(bench), info.get("n", "-"), _num(chance.get(bench)), _num(info.get("value"))])
    if base_rows:
        parts.append("<h3>Baseline accuracy (no intervention) against chance</h3>")
        parts.append(_table(["benchmark", "n", "chance %", "accuracy %"], base_rows))
    head = headline_rows(run_dir, manifest)
    if head:
        parts.append("<h3>Interventions (held-out split where the benchmark has one)</h3>")
        rows = []
        for h in head:
            p = h.get("p")
            rows.append(
                [
                    _esc(h["experiment"]),
                    _esc(h["benchmark"]),
                    _esc(h["split"]),
                    h["n"],
                    _num(h.get("chance")),
                    _num(h["original"]),
                    _num(h["target"]),
                    _num(h["random"]),
                    _num(h["difference"], "{:+.1f}"),
                    "-" if p is None else f"{p:.3f} {stats.stars(p)}",
                ]
            )
        parts.append(
            _table(
                [
                    "experiment",
                    "benchmark",
                    "split",
                    "n",
                    "chance",
                    "original",
                    "intervened",
                    "random (mean)",
                    "Δ vs random",
                    "p",
                ],
                rows,
                left=3,
            )
        )
        parts.append(
            '<p class="note">Accuracy in %. Δ vs random: intervened minus the mean of the random sets, in points. '
            "p: centred paired bootstrap, one-sided (intervened drop larger than random) for ablation, two-sided for enhancement.</p>"
        )

    # -- where ----------------------------------------------------------------------------------
    parts.append('<h2 id="where">Where the neurons are</h2>')
    if general is not None or specific:
        nl = general.num_layers if general is not None else next(iter(specific.values())).num_layers
        g_counts = stats.layer_counts(general, nl) if general is not None and len(general) else None
        s_counts = {c: stats.layer_counts(ns, nl) for c, ns in specific.items()}
        if g_counts is not None or s_counts:
            parts.append(
                figure(
                    "layers",
                    plots.layer_figure(g_counts, s_counts),
                    "neurons per layer and site",
                    "Neurons per layer. Top: the culture-general set, stacked by site. Bottom: each country's culture-specific set.",
                )
            )
        named = {**({"general": general} if general is not None else {}), **specific}
        totals = stats.site_totals(named)
        if not totals.empty:
            parts.append(
                _table(
                    ["set"] + list(totals.columns) + ["total"],
                    [[_esc(i)] + [int(v) for v in row] + [int(row.sum())] for i, row in totals.iterrows()],
                )
            )
    else:
        parts.append('<p class="note">No neuron sets in this run (the select stage has not run).</p>')

    # -- overlap --------------------------------------------------------------------------------
    parts.append('<h2 id="overlap">Overlap between sets</h2>')
    overlap_sets = dict(specific)
    if general is not None:
        overlap_sets["general"] = general
    if len(overlap_sets) >= 2:
        jac = stats.jaccard(overlap_sets)
        parts.append(
            figure(
                "overlap",
                plots.overlap_figure(jac),
                "Jaccard overlap heatmap",
                "Jaccard index between the culture-specific sets of each country and the culture-general set.",
            )
        )
    else:
        parts.append('<p class="note">Fewer than two neuron sets: nothing to compare.</p>')

    # -- experiments ----------------------------------------------------------------------------
    for name, anchor, label, two_sided in (
        ("ablation", "ablation", "suppressed", False),
        ("enhancement", "enhancement", "enhanced", True),
    ):
        if name == "enhancement":
            parts.append(_cross(run_dir, figure))
        heading = (
            "Ablation: suppressing the culture-general neurons"
            if name == "ablation"
            else "Enhancement: amplifying the culture-general neurons"
        )
        parts.append(f'<h2 id="{anchor}">{heading}</h2>')
        summary = stats.read_summary(run_dir, name)
        if summary is None:
            parts.append(f'<p class="note">Not run (add "{name}" to evaluate.experiments).</p>')
            continue
        bars = stats.experiment_bars(summary)
        factor = summary.get("config", {}).get("factor")
        ttl = f"{heading.split(':')[0]} ({label}{'' if factor is None else f' ×{factor:g}'} vs random sets of the same size)"
        parts.append(
            figure(
                name,
                plots.experiment_figure(bars, ttl, f"{label} (general)", chance, two_sided),
                f"{name} bar chart",
                "Bars: accuracy with 95% bootstrap CIs; dots: each random seed; dashed: chance. Marks: * p&lt;0.05, ** p&lt;0.01, "
                "*** p&lt;0.001, n.s. not significant (paired bootstrap of intervened vs the random mean).",
            )
        )
        rows = [
            [
                _esc(b.benchmark),
                _esc(b.split),
                b.n,
                _num(b.original),
                _num(b.target),
                _num(b.random),
                _num(b.difference, "{:+.1f}"),
                _num(b.p_two_sided if two_sided else b.p_one_sided, "{:.3f}"),
            ]
            for b in bars.itertuples()
        ]
        parts.append(_table(["benchmark", "split", "n", "original", label, "random", "Δ vs random", "p"], rows, left=2))
    # -- training -------------------------------------------------------------------------------
    parts.append(training)

    # -- top neurons ----------------------------------------------------------------------------
    parts.append('<h2 id="top">Top neurons</h2>')
    if general is not None and len(general) and top_n:
        top = stats.top_neurons(general, top_n)
        parts.append(f"<p>The {len(top)} culture-general neurons with the highest general score (S_d − S_c).</p>")
        parts.append(
            _table(
                ["#", "site", "layer", "index", "score"],
                [[i + 1, _esc(n.site), n.layer, n.index, f"{n.score:.3e}"] for i, n in enumerate(top)],
            )
        )
    for country, ns in specific.items():
        if len(ns) and top_n:
            top = stats.top_neurons(ns, min(5, top_n))
            parts.append(
                f"<h3>{_esc(country)}</h3>"
                + _table(
                    ["site", "layer", "index", "score"],
                    [[_esc(n.site), n.layer, n.index, f"{n.score:.3e}"] for n in top],
                )
            )

    # -- provenance -----------------------------------------------------------------------------
    parts.append('<h2 id="provenance">Config and provenance</h2>')
    if ident:
        parts.append(_table(["model", "value"], [[_esc(k), _esc(v)] for k, v in ident.items()]))
    versions = manifest.get("versions", {})
    if versions:
        parts.append(_table(["package", "version"], [[_esc(k), _esc(v)] for k, v in versions.items()]))
    steps = manifest.get("steps", {})
    if steps:
        rows = []
        for key, rec in steps.items():
            outs = rec.get("outputs", {})
            rows.append(
                [
                    _esc(key),
                    _esc(rec.get("status")),
                    "<br>".join(f"<code>{_esc(p)}</code> {_esc(h[:12])}" for p, h in outs.items()),
                ]
            )
        parts.append(
            "<h3>Steps</h3>"
            + _table(["step", "status", "outputs (sha256 prefix)"], rows, left=3)
            + '<p class="note">Times of each step are in manifest.json.</p>'
        )
    inputs = {p: h for rec in steps.values() for p, h in rec.get("info", {}).get("input_files", {}).items()}
    if inputs:
        parts.append(
            "<h3>Input files</h3>"
            + _table(
                ["file", "sha256"],
                [[f"<code>{_esc(p)}</code>", f"<code>{_esc(h)}</code>"] for p, h in inputs.items()],
                left=2,
            )
        )
    if manifest.get("config_toml"):
        parts.append("<h3>Config</h3><pre>" + _esc(manifest["config_toml"]) + "</pre>")
    body = "\n".join(p for p in parts if p)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{CSS}</style></head><body><main>\n{body}\n</main></body></html>\n"
    )


def _cross(run_dir: Path, figure) -> str:
    out = ['<h2 id="cross">Cross-culture suppression</h2>']
    matrix = stats.read_matrix(run_dir)
    summary = stats.read_summary(run_dir, "cross-culture")
    if matrix is None or summary is None:
        out.append(
            '<p class="note">Not run (add "cross-culture" to evaluate.experiments; it needs non-empty culture-specific sets).</p>'
        )
        return "\n".join(out)
    out.append(
        figure(
            "cross_culture",
            plots.cross_culture_figure(matrix),
            "cross-culture heatmap",
            "Each row suppresses one country's culture-specific neurons; each column is the change in accuracy on one country's "
            "questions (points). The diagonal (bold) is expected to be the most negative entry of its row.",
        )
    )
    res = summary["results"]
    rows = [
        [
            _esc(c),
            _num(v.get("diagonal"), "{:+.1f}"),
            _num(v.get("off_diagonal_mean"), "{:+.1f}"),
            _esc(v.get("most_affected")),
            "yes" if v.get("diagonal_is_most_negative") else "no",
        ]
        for c, v in res.get("rows", {}).items()
    ]
    out.append(_table(["suppressed", "own country", "others (mean)", "most affected", "own most hurt"], rows))
    return "\n".join(out)


def _training_changes(results: dict[str, Any], sets: list[str]) -> tuple[Any, list[list[Any]]]:
    """From ``train/eval/summary.json`` results: the chart's rows (benchmark, set, change, CI, n) and the table's rows."""
    import pandas as pd

    def cell(m: dict[str, Any] | None) -> str:
        if not m or m.get("value") is None:
            return "-"
        return f"{m['value']:+.1f} [{m['ci_low']:+.1f}, {m['ci_high']:+.1f}]"

    points, rows = [], []
    for bench, entry in results.items():
        part = entry.get("all") or {}
        base = part.get("base") or {}
        row = [_esc(bench), base.get("n", "-"), _num(base.get("value"))]
        for name in sets:
            change = (part.get(name) or {}).get("change") or {}
            row.append(cell(change))
            if change.get("value") is not None:
                points.append(
                    {
                        "benchmark": bench,
                        "set": name,
                        "value": change["value"],
                        "ci_low": change.get("ci_low"),
                        "ci_high": change.get("ci_high"),
                        "n": base.get("n", change.get("n")),
                    }
                )
        if {"top", "random"} <= set(sets):
            row.append(cell((part.get("contrasts") or {}).get("top-random")))
        rows.append(row)
    return pd.DataFrame(points, columns=["benchmark", "set", "value", "ci_low", "ci_high", "n"]), rows


def _training(run_dir: Path, figure) -> str:
    """The selective fine-tuning section (only for runs with a train stage): change from base per benchmark and set."""
    folder = run_dir / "train"
    try:
        done = json.loads((folder / "finetune.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""  # no train stage, or it has not finished
    order = ("top", "bottom", "random", "full")  # the JSON keeps its keys sorted; show the sets in the paper's order
    sets = sorted(done.get("sets", {}), key=lambda s: (order.index(s) if s in order else len(order), s))
    out = ['<h2 id="train">Selective fine-tuning</h2>']
    training = done.get("training", {})
    cfg = done.get("config", {})
    out.append(
        f"<p>Each set of modules was fine-tuned from the same base on <code>{_esc(done.get('data', '?'))}</code> "
        f"(lr {_num(cfg.get('learning_rate'), '{:g}')}, effective batch {_esc(cfg.get('batch_size', '?'))}, "
        f"{_num(cfg.get('epochs'), '{:g}')} epoch(s){', LoRA' if cfg.get('lora') else ''}); the parameter budget is "
        f"{_num(100 * done['budget'] if done.get('budget') is not None else None, '{:g}')}% of the model.</p>"
    )
    out.append(
        _table(
            ["set", "modules", "parameters", "% of model", "general neurons held", "steps", "mean loss"],
            [
                [
                    _esc(name),
                    _esc(", ".join(s.get("modules", [])) if not s.get("full") else "all"),
                    f"{s.get('params', 0):,}",
                    _num(100 * s.get("fraction", 0), "{:.2f}"),
                    s.get("neurons", "-"),
                    training.get(name, {}).get("steps", "-"),
                    _num(training.get(name, {}).get("train_loss"), "{:.4f}"),
                ]
                for name, s in ((n, done["sets"][n]) for n in sets)
            ],
        )
    )
    results = done.get("results")
    if not results:
        out.append('<p class="note">No evaluation benchmarks: nothing to compare.</p>')
        return "\n".join(out)
    points, rows = _training_changes(results, sets)
    if not points.empty:
        out.append(
            figure(
                "finetune",
                plots.finetune_figure(points),
                "fine-tuning change from base per benchmark",
                "Change in accuracy (points) of each fine-tuned set from the base model, on the same examples, "
                "with 95% paired-bootstrap CIs. top: the modules holding the most culture-general neurons; "
                "bottom: modules holding none; random: modules drawn at random; all within the same budget.",
            )
        )
    contrast = ["top − random [95% CI]"] if {"top", "random"} <= set(sets) else []
    out.append(_table(["benchmark", "n", "base %"] + [f"{s} Δ [95% CI]" for s in sets] + contrast, rows))
    return "\n".join(out)
