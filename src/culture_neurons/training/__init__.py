"""Selective fine-tuning: train only the modules that hold (or lack) culture-general neurons.

- :mod:`.modules`: module groups per family, the neuron-count ranking, and freezing;
- :mod:`.choose`: the top/bottom/random/full/named module sets under a parameter budget;
- :mod:`.data`: training examples and answer-only labels;
- :mod:`.train`: :func:`finetune` (transformers Trainer, full-parameter or LoRA), checkpoints and resume;
- :mod:`.api`: :func:`run_selective_finetuning`, what ``culture-neurons train`` and the pipeline call;

The pipeline's ``train`` stage (the ``[train]`` table) lives in :mod:`culture_neurons.pipeline.stages.train`;
this package never imports the pipeline.
"""

from .api import FinetuneOptions, FinetuneRun, run_selective_finetuning
from .choose import choose_modules
from .compare import compare_conditions, format_comparison
from .data import answer_loss, encode_examples, training_examples
from .modules import (
    MODULE_GROUPS,
    Module,
    ModuleGroups,
    ModuleRanking,
    ModuleSet,
    list_modules,
    only_trainable,
    rank_modules,
    trainable_names,
)
from .train import TrainConfig, TrainResult, finetune, lora_available

__all__ = [
    "MODULE_GROUPS",
    "FinetuneOptions",
    "FinetuneRun",
    "Module",
    "ModuleGroups",
    "ModuleRanking",
    "ModuleSet",
    "TrainConfig",
    "TrainResult",
    "answer_loss",
    "choose_modules",
    "compare_conditions",
    "encode_examples",
    "finetune",
    "format_comparison",
    "list_modules",
    "lora_available",
    "only_trainable",
    "rank_modules",
    "run_selective_finetuning",
    "trainable_names",
    "training_examples",
]
