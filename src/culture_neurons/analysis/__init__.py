"""Analysis of a run: statistics (where the neurons are, overlaps), claims checked against the numbers,
matplotlib figures, and the HTML report."""

from .claims import Claim, claims_lines, evaluate_claims
from .report import build_report, write_report
from .stats import experiment_bars, format_ci, format_p, headline_rows, jaccard, layer_counts, load_sets, top_neurons

__all__ = [
    "Claim",
    "build_report",
    "claims_lines",
    "evaluate_claims",
    "experiment_bars",
    "format_ci",
    "format_p",
    "headline_rows",
    "jaccard",
    "layer_counts",
    "load_sets",
    "top_neurons",
    "write_report",
]
