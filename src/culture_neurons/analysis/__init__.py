"""Analysis of a run: statistics (where the neurons are, overlaps), matplotlib figures, and the HTML report."""

from .report import build_report, write_report
from .stats import experiment_bars, jaccard, layer_counts, load_sets, top_neurons

__all__ = ["build_report", "experiment_bars", "jaccard", "layer_counts", "load_sets", "top_neurons", "write_report"]
