"""Can these neurons be trusted? Sensitivity, stability, specificity, faithfulness and intervention variants.

Public API::

    from culture_neurons.validity import Study, ValidityData, ValidityOptions, run_validity
    study = Study(model, tokenizer, ValidityData(identification=..., control=..., culture=..., nlu=...), "run/validity")
    summary = run_validity(study)          # writes run/validity/summary.json

See docs/validity.md for what each analysis measures, when to trust it and what it costs.
"""

from .effects import TargetRows, ablation_effects, single_neurons
from .folds import assign_folds, cells, item_key
from .options import ANALYSES, SelectionSettings, ValidityData, ValidityOptions
from .overlap import jaccard_index, layer_distribution, overlap, random_jaccard, selection_frequency
from .readings import (
    READERS,
    reading_faithfulness,
    reading_sensitivity,
    reading_specificity,
    reading_stability,
    reading_variants,
)
from .run import SCHEMA, run_validity
from .study import Study

__all__ = [
    "ANALYSES",
    "READERS",
    "SCHEMA",
    "SelectionSettings",
    "Study",
    "TargetRows",
    "ValidityData",
    "ValidityOptions",
    "ablation_effects",
    "assign_folds",
    "cells",
    "item_key",
    "jaccard_index",
    "layer_distribution",
    "overlap",
    "random_jaccard",
    "reading_faithfulness",
    "reading_sensitivity",
    "reading_specificity",
    "reading_stability",
    "reading_variants",
    "run_validity",
    "selection_frequency",
    "single_neurons",
]
