"""The offline demo: the built-in ``demo`` config on SmolLM2-135M-Instruct (``culture-neurons demo``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .config import PipelineConfig, builtin_config, load_config, tomllib
from .result import RunResult
from .run import run_pipeline

#: What ``--data-dir`` swaps in: the built-in demo sets -> the real files' benchmarks.
REAL_DATA = {"demo-culture": "blend", "demo-control": "blend-control", "demo-nlu": "commonsenseqa"}


def demo_config(
    data_dir: str | os.PathLike | None = None, out: str | os.PathLike | None = None, **overrides: Any
) -> PipelineConfig:
    """The demo's config; with ``data_dir``, BLEnD and CommonsenseQA from that folder replace the demo sets.

    ``overrides`` are dotted config keys (``{"score.max_per_group": 8}``).
    """
    data = tomllib.loads(builtin_config("demo").read_text(encoding="utf-8"))
    if data_dir is not None:
        data["data"]["data_dir"] = str(data_dir)
        swap = lambda names: [REAL_DATA.get(n, n) for n in names]
        data["score"]["datasets"] = swap(data["score"]["datasets"])
        data["score"]["controls"] = swap(data["score"]["controls"])
        data["evaluate"]["benchmarks"] = swap(data["evaluate"]["benchmarks"])
        data["run"]["out"] = "runs/demo-real-data"
        data["run"]["title"] = "culture-neurons demo: SmolLM2-135M-Instruct on BLEnD and CommonsenseQA"
    if out is not None:
        data["run"]["out"] = str(out)
    return load_config(data, {k.replace("__", "."): v for k, v in overrides.items()})


def run_demo(
    data_dir: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    *,
    dry_run: bool = False,
    progress: bool = True,
    **overrides: Any,
) -> RunResult:
    """Run the demo pipeline (see :func:`demo_config`) and return its :class:`RunResult`."""
    config = demo_config(data_dir, out, **overrides)
    return run_pipeline(config, Path(config.run.out), dry_run=dry_run, progress=progress)
