"""docs/replication.md: the replication study's page, written from the committed run summaries (never by hand).

``culture-neurons report --replication docs/replication/*.json --out docs/replication.md`` calls
:func:`write_replication_page`. Each summary is one model's run (:mod:`.summary_export`); the page
puts the models side by side: baselines against chance, the claims table of each model (verdict,
effect with CI, rank among random sets and Monte-Carlo p, detectable effect, Holm p), each claim of
the paper next to what each model shows (:mod:`.replication_text`), the dose-response,
faithfulness and layer figures (PNGs in the folder named after the page: ``docs/replication/``),
the validity readings, the fine-tuning sides, and the exact commands, caps, wall times and
versions. Without summaries it writes the skeleton: the commands and the preset's caps.

The text depends on the summaries alone (no clock, no machine), so a test regenerates it and
compares; the PNGs depend on matplotlib's version and are not compared.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import CultureNeuronsError
from ..evaluation.metrics import format_p
from ..fileio import atomic_path, write_text_atomic
from . import plots
from .replication_text import PAPER_CLAIMS, found_lines
from .stats import format_ci
from .summary_export import SCHEMA, caps
from .verdicts import format_rank

PAGE_COMMAND = "culture-neurons report --replication docs/replication/*.json --out docs/replication.md"
MODELS = ("smollm2-135m-instruct", "gemma-3-270m")  # the two models the study is published for
DATA_DIR = "../shared/data"
STAGES = ("export", "score", "select", "evaluate", "train", "validate", "cards", "report")


def load_summaries(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """The summaries, checked to be replication summaries, in the order given."""
    out = []
    for path in paths:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CultureNeuronsError(f"summary {path} does not exist") from None
        except (OSError, ValueError) as exc:
            raise CultureNeuronsError(f"summary {path} is not readable JSON ({exc})") from None
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise CultureNeuronsError(
                f"{path} is not a replication summary (schema {SCHEMA!r}); write one with "
                "`culture-neurons report RUN_DIR --summary-json FILE.json`"
            )
        out.append(data)
    return out


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A markdown table (cells escaped)."""
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _preset_caps() -> dict[str, Any]:
    text = (resources.files("culture_neurons") / "configs" / "replication.toml").read_text(encoding="utf-8")
    return caps(tomllib.loads(text))


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_show(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list):
        return ", ".join(_show(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _commands(summaries: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = ["```bash"]
    if not summaries:
        for tag in MODELS:
            lines.append(f"culture-neurons run replication --model {tag} --data-dir {DATA_DIR}")
            lines.append(f"culture-neurons report runs/replication-{tag} --summary-json docs/replication/{tag}.json")
    for s in summaries:
        tag = s["model"]["tag"]
        sha = (s.get("config_sha256") or "")[:12]
        lines.append(s.get("command") or f"# {s['model']['name']}: not run from the replication preset (config {sha})")
        lines.append(f"culture-neurons report runs/replication-{tag} --summary-json docs/replication/{tag}.json")
    lines += [PAGE_COMMAND, "```"]
    return lines


def _baselines(summaries: Sequence[Mapping[str, Any]]) -> list[str]:
    benches: dict[str, dict[str, Any]] = {}
    for s in summaries:
        for b in s.get("baselines") or []:
            benches.setdefault(b["benchmark"], {"kind": b["kind"], "chance": b.get("chance")})
    rows = []
    for bench, info in benches.items():
        row = [bench, info["kind"], _show(info["chance"])]
        for s in summaries:
            b = next((x for x in s.get("baselines") or [] if x["benchmark"] == bench), None)
            if b is None:
                row.append("-")
                continue
            mark = {True: "above chance", False: "at chance", None: "no chance level"}[b.get("above")]
            row.append(
                f"{format_ci(b.get('value'), b.get('ci_low'), b.get('ci_high'), signed=False)} (n={b['n']}, {mark})"
            )
        rows.append(row)
    header = ["benchmark", "kind", "chance %", *(f"{s['model']['name']} accuracy % [95% CI]" for s in summaries)]
    return md_table(header, rows)


def _claims(summary: Mapping[str, Any]) -> list[str]:
    rows = []
    for c in summary.get("claims") or []:
        effect = format_ci(c.get("value"), c.get("ci_low"), c.get("ci_high"))
        if c.get("unit") == "share" and c.get("value") is not None:
            effect = (
                f"{100 * c['value']:.0f} % [{100 * (c.get('ci_low') or 0):.0f}, {100 * (c.get('ci_high') or 0):.0f}]"
            )
        rank = format_rank(c.get("rank"), c.get("m_random"))
        mde = (
            "-"
            if c.get("mde") is None
            else (f"{100 * c['mde']:.0f} %" if c.get("unit") == "share" else f"{c['mde']:.1f}")
        )
        rows.append(
            [
                c.get("title"),
                c.get("scope") or "-",
                c.get("verdict"),
                effect,
                rank,
                mde,
                format_p(c.get("p")),
                format_p(c.get("p_holm")),
            ]
        )
    if not rows:
        return ["No claim could be tested in this run."]
    header = ["claim", "where", "verdict", "effect [95% CI]", "rank among random", "detectable (80%)", "p", "Holm p"]
    tail = f"p-values Holm-adjusted over the {summary.get('holm_rows', 0)} rows that have one; effects in points."
    return [*md_table(header, rows), "", tail]


POWER_TARGET = 5.0  # points: the smallest detectable excess drop each pooled side must reach (issue's target)


def _power(summaries: Sequence[Mapping[str, Any]]) -> list[str]:
    """The pooled culture and NLU sides at the run's own set size (the validity stage's dose-response point):
    the excess drop vs random with its two-level CI, its rank and the detectable excess at 80 % power."""
    rows = []
    for s in summaries:
        for point in (s.get("validity") or {}).get("dose_response") or []:
            if not point.get("default"):
                continue
            ci, mde = point.get("excess_ci_two_level") or {}, point.get("mde")
            rank = (
                f"{point['rank']} of {point['m_random'] + 1} (p {format_p(point.get('p_mc'))})"
                if point.get("rank")
                else "-"
            )
            met = "-" if mde is None else ("yes" if mde <= POWER_TARGET else "no")
            rows.append(
                [
                    s["model"]["name"],
                    point["side"],
                    _show(point.get("n")),
                    format_ci(ci.get("value"), ci.get("ci_low"), ci.get("ci_high"), signed=True),
                    rank,
                    "-" if mde is None else f"{mde:.1f}",
                    met,
                ]
            )
    if not rows:
        return ["The runs' validity summaries hold no dose-response point at the run's own set size."]
    header = ["model", "side", "items", "excess change vs random, points [two-level 95% CI]", "rank among random"]
    header += ["detectable excess (80 %)", f"≤ {POWER_TARGET:g} points"]
    note = (
        "Each side pools the benchmarks of that side on which the model is above chance (docs/validity.md); the "
        "excess is the set's change minus the mean random set's, so a drop is negative."
    )
    return [note, "", *md_table(header, rows)]


def _finetune(summaries: Sequence[Mapping[str, Any]]) -> list[str]:
    rows = []
    for s in summaries:
        for side, entry in ((s.get("finetune") or {}).get("sides") or {}).items():
            cells = [s["model"]["name"], side, ", ".join(entry.get("benchmarks") or []), entry.get("n")]
            base = entry.get("base") or {}
            cells.append(format_ci(base.get("value"), base.get("ci_low"), base.get("ci_high"), signed=False))
            for name in ("top", "bottom", "random"):
                ch = ((entry.get("sets") or {}).get(name) or {}).get("change") or {}
                cells.append(format_ci(ch.get("value"), ch.get("ci_low"), ch.get("ci_high")))
            tr = (entry.get("contrasts") or {}).get("top-random") or {}
            cells.append(format_ci(tr.get("value"), tr.get("ci_low"), tr.get("ci_high")))
            cells.append(format_p(tr.get("p_one_sided")))
            rows.append(cells)
    if not rows:
        return ["No fine-tuning in these runs."]
    header = [
        "model",
        "side",
        "benchmarks",
        "n",
        "base %",
        "top Δ",
        "bottom Δ",
        "random Δ",
        "top − random",
        "p (one-sided)",
    ]
    return md_table(header, rows)


def _readings(summaries: Sequence[Mapping[str, Any]]) -> list[str]:
    out = []
    for s in summaries:
        v = s.get("validity")
        if not v:
            continue
        checked = (v.get("default_set") or {}).get("source")
        which = "the run's own general set" if checked == "given" else "a general set validity selected again"
        out.append(f"- *{s['model']['name']}* (checks {which}, {(v.get('default_set') or {}).get('size')} neurons):")
        out += [f"  - {name}: {text}" for name, text in sorted((v.get("readings") or {}).items())]
        if not v.get("per_template"):
            out.append("  - per template: not run (the identification examples have one template)")
    return out or ["No validity analyses in these runs."]


def _costs(summaries: Sequence[Mapping[str, Any]]) -> list[str]:
    if not summaries:
        preset = _preset_caps()
        return [
            "The preset's caps (`culture-neurons run replication --model M --dry-run` prints the work they plan):",
            "",
            *md_table(["cap", "replication preset"], [[k, _show(v)] for k, v in preset.items()]),
        ]
    names = [s["model"]["name"] for s in summaries]
    keys = list(dict.fromkeys(k for s in summaries for k in s.get("caps") or {}))
    out = [
        "Caps:",
        "",
        *md_table(["cap", *names], [[k, *(_show((s.get("caps") or {}).get(k)) for s in summaries)] for k in keys]),
    ]
    stages = [st for st in STAGES if any(st in (s.get("stages") or {}) for s in summaries)]
    rows = [[st, *(_minutes((s.get("stages") or {}).get(st)) for s in summaries)] for st in stages]
    rows.append(["all", *(_minutes(sum((s.get("stages") or {}).values())) for s in summaries)])
    out += ["", "Wall time of each stage (the steps' recorded times):", "", *md_table(["stage", *names], rows)]
    libs = list(dict.fromkeys(k for s in summaries for k in s.get("versions") or {}))
    out += [
        "",
        "Versions:",
        "",
        *md_table(
            ["library", *names], [[k, *((s.get("versions") or {}).get(k, "-") for s in summaries)] for k in libs]
        ),
    ]
    return out


def _figure_lines(summaries: Sequence[Mapping[str, Any]], folder: str, made: Mapping[str, Any]) -> list[str]:
    out = []
    for title, kind in (("Dose-response", "dose-response"), ("Faithfulness", "faithfulness"), ("Layers", "layers")):
        shown = [(s, f"{s['model']['tag']}-{kind}") for s in summaries if f"{s['model']['tag']}-{kind}" in made]
        if not shown:
            continue
        out += [f"### {title}", ""]
        out += [f"![{title}, {s['model']['name']}]({folder}/{name}.png)" for s, name in shown]
        out.append("")
    return out or ["No figures: the runs have no validity analyses or general set."]


def replication_figures(summaries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``{file stem: Figure}`` of every figure the summaries support."""
    from ..validity.plots import dose_response_figure, faithfulness_figure

    out: dict[str, Any] = {}
    for s in summaries:
        tag, v = s["model"]["tag"], s.get("validity") or {}
        if v.get("dose_response"):
            out[f"{tag}-dose-response"] = dose_response_figure({"dose_response": v["dose_response"]})
        if v.get("faithfulness_points"):
            out[f"{tag}-faithfulness"] = faithfulness_figure(
                v["faithfulness_points"], (v.get("headlines") or {}).get("faithfulness")
            )
        pools = (((s.get("sets") or {}).get("general") or {}).get("pools")) or {}
        if pools:
            out[f"{tag}-layers"] = layer_share_figure(pools, s["model"]["name"])
    return out


def layer_share_figure(pools: Mapping[str, Any], title: str) -> Any:
    """Per pool, the general set's share of its neurons in each layer next to the pool's own share of that layer."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 3.2), dpi=plots.DPI, layout="constrained")
    axes = fig.subplots(1, len(pools), squeeze=False)[0]
    for ax, (name, pool) in zip(axes, pools.items()):
        counts, widths = pool["per_layer"], pool["pool_per_layer"]
        total, width = max(1, sum(counts)), max(1, sum(widths))
        layers = range(len(counts))
        ax.bar(layers, [100 * c / total for c in counts], color="#1b6ca8", label="general set")
        ax.step(layers, [100 * w / width for w in widths], where="mid", color="black", lw=1, label="pool")
        ax.set_xlabel("layer")
        ax.set_ylabel("share of neurons (%)")
        ax.set_title(f"{name} ({pool['count']} neurons)", fontsize=9)
        ax.legend(fontsize=7, frameon=False)
    fig.suptitle(f"Where the general set sits: {title}", fontsize=10)
    return fig


def render_replication(summaries: Sequence[Mapping[str, Any]], folder: str, figures: Mapping[str, Any]) -> str:
    """The page's markdown; ``folder`` is where its figures are, relative to the page; ``figures`` the ones made."""
    names = ", ".join(f"{s['model']['name']} ({_show(s['model'].get('parameters'))} parameters)" for s in summaries)
    status = (
        f"Runs published: {names}."
        if summaries
        else "No full-power run is published yet: this is the skeleton the tool writes without summaries. Run the "
        "commands below, commit the two summaries under `docs/replication/`, and regenerate the page."
    )
    lines = [
        "# The replication study: every claim of the paper, tested",
        "",
        f"<!-- Written by `{PAGE_COMMAND}` from the summaries in docs/replication/. Do not edit by hand: "
        "tests/test_replication.py regenerates this page from them and fails when it differs. -->",
        "",
        status,
        "",
        "## Reproduce",
        "",
        *_commands(summaries),
        "",
        'The `replication` preset and why each cap is what it is: docs/pipeline.md, "The replication preset".',
    ]
    if not summaries:
        lines += [
            "",
            "## The paper's claims",
            "",
            "Each will stand next to what each model shows, computed from its summary:",
        ]
        lines += ["", *(f"{i}. {said}" for i, (_, said) in enumerate(PAPER_CLAIMS, 1))]
    if summaries:
        lines += ["", "## Baselines against chance", "", *_baselines(summaries), "", "## The claims", ""]
        for s in summaries:
            lines += [f"### {s['model']['name']}", "", *_claims(s), ""]
        lines += ["## Power on the pooled sides", "", *_power(summaries), ""]
        lines += ["## The paper's claims next to what we found", "", *found_lines(summaries), ""]
        lines += ["## Figures", "", *_figure_lines(summaries, folder, figures)]
        lines += ["## Validity readings", "", *_readings(summaries), ""]
        lines += ["## Selective fine-tuning on NLU data", "", *_finetune(summaries), ""]
    lines += ["", "## Caps, cost and versions", "", *_costs(summaries), "", *_about()]
    return "\n".join(lines).replace("\n\n\n", "\n\n").rstrip() + "\n"


def _about() -> list[str]:
    return [
        "## About this page",
        "",
        "Every number comes from a summary JSON (`culture-neurons report RUN_DIR --summary-json FILE`): small, "
        "no table of scores, paths of the machine shown by their last part. A claim's verdict is `holds` when its "
        "95 % CI lies on the predicted side and its Holm-adjusted p is below 0.05, `does not hold` when the CI lies on "
        'the other side, and `not significant` otherwise; "detectable" is the smallest effect its test finds at 80 % '
        'power (docs/evaluation.md, "Power"). Against random sets, p is the rank p (b + 1)/(m + 1) among m random '
        "sets of the same size.",
    ]


def write_replication_page(summary_paths: Sequence[str | Path], out: str | Path) -> Path:
    """Write the page to ``out`` and its figures as PNGs into the folder named after it (``docs/replication/``)."""
    out = Path(out)
    if out.suffix != ".md":
        raise CultureNeuronsError(f"--out {out}: the replication page is markdown; give a .md file")
    summaries = load_summaries(summary_paths)
    figures = replication_figures(summaries)
    folder = out.parent / out.stem
    for name, fig in figures.items():
        with atomic_path(folder / f"{name}.png", suffix=".png") as tmp:
            tmp.write_bytes(plots.to_png(fig))
    write_text_atomic(out, render_replication(summaries, out.stem, figures))
    return out
