"""Pluggable stages. Today: the optional ``train`` stage (selective fine-tuning, ``[train]``).

The pipeline hands the stage its runner (config, run directory, manifest, lazily loaded model and
the paths of the neuron sets and evaluation examples). A stage declares its inputs and outputs
through ``runner.step(...)`` like the built-in stages, so it resumes the same way.

The training stage is wired to ``culture_neurons.training`` when that package provides
``run_pipeline_stage(runner)`` (:mod:`culture_neurons.training.stage`); without it, a configured
``[train]`` section is refused before any work starts, with a message that says so. The entry
point's optional ``check_config(table, config)`` checks the ``[train]`` table against the whole
config (e.g. ``train.benchmarks`` against ``evaluate.benchmarks``) before any work starts.
"""

from __future__ import annotations

from typing import Any

from .config import ConfigError, PipelineConfig


def training_entry() -> Any:
    """The training package's pipeline entry point, or None when it is not available."""
    try:
        from .. import training
    except ImportError:
        return None
    return getattr(training, "run_pipeline_stage", None)


def check_train_config(config: PipelineConfig) -> None:
    """Refuse a ``[train]`` section that cannot run (before any work starts)."""
    entry = training_entry()
    if entry is None:
        raise ConfigError(
            "config section [train]: the fine-tuning stage is not available in this version of culture-neurons "
            "(culture_neurons.training has no pipeline entry point); remove [train] or run `culture-neurons train` on the run's neuron sets"
        )
    check = getattr(entry, "check_config", None)
    if check is not None:
        try:
            check(dict(config.train or {}), config)
        except ConfigError:
            raise
        except Exception as exc:  # the training package's own validation error
            raise ConfigError(f"config section [train]: {exc}") from None


def run_train_stage(runner: Any) -> None:
    entry = training_entry()
    if entry is None:  # validated earlier; kept for direct callers
        raise ConfigError("config section [train]: the fine-tuning stage is not available")
    entry(runner)
