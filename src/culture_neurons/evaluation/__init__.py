"""Evaluation: scorers, metrics with bootstrap CIs, the ablation and cross-culture experiments, and their variants."""

from .api import EvalResult, evaluate, evaluate_rows, load_benchmarks, read_rows, summarise, write_rows
from .cross_options import CrossCultureOptions
from .experiments import ExperimentResult, run_ablation, run_cross_culture
from .metrics import compare_to_random, format_p, mean_ci, paired_change, specificity_gap
from .scorers import SCORERS, EvalOptions, alignment, evaluate_examples, example_kind, parse_scale
from .summary import read_summary, summary_document
from .sweep import VariantOptions, run_variants

__all__ = [
    "SCORERS",
    "CrossCultureOptions",
    "EvalOptions",
    "EvalResult",
    "ExperimentResult",
    "VariantOptions",
    "alignment",
    "compare_to_random",
    "evaluate",
    "evaluate_examples",
    "evaluate_rows",
    "example_kind",
    "format_p",
    "load_benchmarks",
    "mean_ci",
    "paired_change",
    "parse_scale",
    "read_rows",
    "read_summary",
    "run_ablation",
    "run_cross_culture",
    "run_variants",
    "specificity_gap",
    "summarise",
    "summary_document",
    "write_rows",
]
