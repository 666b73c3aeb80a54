"""Selective fine-tuning: train only the modules that hold (or lack) culture-general neurons.

- :mod:`.modules`: module groups per family, the neuron-count ranking, the top/bottom/random sets
  under a parameter budget, and freezing;
- :mod:`.data`: training examples and answer-only labels;
- :mod:`.train`: :func:`finetune` (transformers Trainer, full-parameter or LoRA), checkpoints and resume;
- :mod:`.api`: :func:`run_selective_finetuning`, what ``culture-neurons train`` and the pipeline call;
- :mod:`.stage`: :func:`run_pipeline_stage`, the pipeline's ``train`` stage (the ``[train]`` table).
"""

from .api import FinetuneRun, compare_conditions, format_comparison, run_selective_finetuning
from .data import answer_loss, encode_examples, training_examples
from .modules import (
    MODULE_GROUPS,
    Module,
    ModuleGroups,
    ModuleRanking,
    ModuleSet,
    choose_modules,
    list_modules,
    only_trainable,
    rank_modules,
    trainable_names,
)
from .stage import TrainSection, run_pipeline_stage
from .train import TrainConfig, TrainResult, finetune, lora_available

__all__ = [
    "FinetuneRun",
    "MODULE_GROUPS",
    "Module",
    "ModuleGroups",
    "ModuleRanking",
    "ModuleSet",
    "TrainConfig",
    "TrainResult",
    "TrainSection",
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
    "run_pipeline_stage",
    "run_selective_finetuning",
    "trainable_names",
    "training_examples",
]
