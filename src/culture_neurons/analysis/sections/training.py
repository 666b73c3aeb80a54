"""The selective fine-tuning section (only for runs with a train stage)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from .. import plots
from ..page import ReportContext, esc, note, num, table

ORDER = ("top", "bottom", "random", "full")  # the JSON keeps its keys sorted; show the sets in the paper's order


def _cell(m: Mapping[str, Any] | None) -> str:
    if not m or m.get("value") is None:
        return "-"
    return f"{m['value']:+.1f} [{m['ci_low']:+.1f}, {m['ci_high']:+.1f}]"


def training_changes(results: Mapping[str, Any], sets: Sequence[str]) -> tuple[pd.DataFrame, list[list[Any]]]:
    """From ``train/eval/summary.json`` results: the chart's rows (benchmark, set, change, CI, n) and the table's
    rows."""
    points, rows = [], []
    for bench, entry in results.items():
        part = entry.get("all") or {}
        base = part.get("base") or {}
        row = [esc(bench), base.get("n", "-"), num(base.get("value"))]
        for name in sets:
            change = (part.get(name) or {}).get("change") or {}
            row.append(_cell(change))
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
            row.append(_cell((part.get("contrasts") or {}).get("top-random")))
        rows.append(row)
    return pd.DataFrame(points, columns=["benchmark", "set", "value", "ci_low", "ci_high", "n"]), rows


def _sets_table(done: Mapping[str, Any], sets: Sequence[str]) -> str:
    training = done.get("training", {})
    rows = [
        [
            esc(name),
            esc(", ".join(s.get("modules", [])) if not s.get("full") else "all"),
            f"{s.get('params', 0):,}",
            num(100 * s.get("fraction", 0), "{:.2f}"),
            s.get("neurons", "-"),
            training.get(name, {}).get("steps", "-"),
            num(training.get(name, {}).get("train_loss"), "{:.4f}"),
        ]
        for name, s in ((n, done["sets"][n]) for n in sets)
    ]
    return table(
        ["set", "modules", "parameters", "% of model", "general neurons held", "steps", "mean loss"],
        rows,
        "The fine-tuned sets of modules: their trainable parameters, how many culture-general neurons they hold, "
        "and the training run of each.",
    )


def render(ctx: ReportContext) -> str:
    """Change from base per benchmark and set, with paired-bootstrap CIs; empty when the run has no train stage."""
    folder = ctx.run_dir / "train"
    try:
        done = json.loads((folder / "finetune.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""  # no train stage, or it has not finished
    sets = sorted(done.get("sets", {}), key=lambda s: (ORDER.index(s) if s in ORDER else len(ORDER), s))
    cfg = done.get("config", {})
    out = ['<h2 id="train">Selective fine-tuning</h2>']
    out.append(
        f"<p>Each set of modules was fine-tuned from the same base on <code>{esc(done.get('data', '?'))}</code> "
        f"(lr {num(cfg.get('learning_rate'), '{:g}')}, effective batch {esc(cfg.get('batch_size', '?'))}, "
        f"{num(cfg.get('epochs'), '{:g}')} epoch(s){', LoRA' if cfg.get('lora') else ''}); the parameter budget is "
        f"{num(100 * done['budget'] if done.get('budget') is not None else None, '{:g}')}% of the model.</p>"
    )
    out.append(_sets_table(done, sets))
    results = done.get("results")
    if not results:
        return "\n".join(out + [note("No evaluation benchmarks: nothing to compare.")])
    points, rows = training_changes(results, sets)
    if not points.empty:
        out.append(
            ctx.figures.embed(
                "finetune",
                plots.finetune_figure(points),
                "fine-tuning change from base per benchmark",
                "Change in accuracy (points) of each fine-tuned set from the base model, on the same examples, "
                "with 95% paired-bootstrap CIs. top: the modules holding the most culture-general neurons; "
                "bottom: modules holding none; random: modules drawn at random; all within the same budget.",
            )
        )
    contrast = ["top − random [95% CI]"] if {"top", "random"} <= set(sets) else []
    out.append(
        table(
            ["benchmark", "n", "base %"] + [f"{s} Δ [95% CI]" for s in sets] + contrast,
            rows,
            "Change in accuracy from the base model (points) per benchmark and fine-tuned set, with 95% "
            "paired-bootstrap CIs.",
        )
    )
    return "\n".join(out)
