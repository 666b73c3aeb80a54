"""Evaluation: scorers, metrics with bootstrap CIs, and the ablation and cross-culture experiments."""

from .api import EvalResult, evaluate, evaluate_files, evaluate_rows, load_benchmarks, read_rows, summarise, write_rows
from .experiments import ExperimentResult, run_ablation, run_cross_culture
from .metrics import compare_to_random, mean_ci, paired_change
from .scorers import SCORERS, EvalOptions, alignment, evaluate_examples, example_kind, parse_scale

__all__ = [
    "SCORERS",
    "EvalOptions",
    "EvalResult",
    "ExperimentResult",
    "alignment",
    "compare_to_random",
    "evaluate",
    "evaluate_examples",
    "evaluate_files",
    "evaluate_rows",
    "example_kind",
    "load_benchmarks",
    "mean_ci",
    "paired_change",
    "parse_scale",
    "read_rows",
    "run_ablation",
    "run_cross_culture",
    "summarise",
    "write_rows",
]
