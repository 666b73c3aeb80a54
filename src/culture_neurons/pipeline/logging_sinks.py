"""``[run] report_to``: the headline tables of a finished run, logged to TensorBoard or Weights & Biases.

TensorBoard event files go to ``RUN/logs/tensorboard`` and need no account or network. wandb runs
offline (``WANDB_MODE=offline``) unless the environment already says otherwise, and writes under
``RUN/logs``. Both are optional extras; the config check refuses ``report_to`` when the package is
missing, before any work starts.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

#: report_to value -> the package it needs
SINKS = {"tensorboard": "tensorboard", "wandb": "wandb"}


def sink_missing(name: str) -> str | None:
    """The pip install hint when the package a sink needs is not installed, else None."""
    package = SINKS[name]
    return None if importlib.util.find_spec(package) is not None else f"pip install {package}"


def headline_scalars(headline: Sequence[dict[str, Any]], baseline: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Flat ``{tag: value}`` of the headline rows (per experiment, benchmark and split) and the baselines."""
    out: dict[str, float] = {}
    for h in headline:
        tag = f"{h['experiment']}/{h['benchmark']}/{h['split']}"
        for field in ("original", "target", "random", "difference"):
            if h.get(field) is not None:
                out[f"{tag}/{field}"] = float(h[field])
    for b in baseline:
        if b.get("accuracy") is not None:
            out[f"baseline/{b['benchmark']}"] = float(b["accuracy"])
    return out


def _tensorboard(folder: Path, scalars: dict[str, float], text: str) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(folder / "tensorboard"))
    try:
        for tag, value in scalars.items():
            writer.add_scalar(tag, value, 0)
        writer.add_text("headline", text, 0)
    finally:
        writer.close()


def _wandb(folder: Path, scalars: dict[str, float], rows: Sequence[dict[str, Any]], name: str) -> None:
    import wandb

    os.environ.setdefault("WANDB_MODE", "offline")
    run = wandb.init(project="culture-neurons", name=name, dir=str(folder), reinit=True)
    try:
        columns = sorted({k for r in rows for k in r})
        run.log({**scalars, "headline": wandb.Table(columns=columns, data=[[r.get(c) for c in columns] for r in rows])})
    finally:
        run.finish()


def log_headline(
    sink: str,
    run_dir: Path,
    headline: Sequence[dict[str, Any]],
    baseline: Sequence[dict[str, Any]],
    echo: Callable[[str], None],
) -> None:
    """Log the run's headline numbers to ``sink`` (``tensorboard`` or ``wandb``) under ``run_dir/logs``."""
    folder = Path(run_dir) / "logs"
    scalars = headline_scalars(headline, baseline)
    text = "\n".join(f"{tag}: {value:.2f}" for tag, value in scalars.items())
    if sink == "tensorboard":
        _tensorboard(folder, scalars, text)
    else:
        _wandb(folder, scalars, headline, Path(run_dir).name)
    echo(f"[report] headline numbers logged to {sink} in {folder}")
