"""Selective fine-tuning with the transformers Trainer: only the chosen modules' weights change.

Full-parameter mode makes exactly the chosen modules' parameters require grad, so the AdamW state
covers only them, and every other tensor stays bit-identical. LoRA mode (``lora=True``, needs the
``lora`` extra: ``pip install 'culture-neurons[lora]'``) puts peft adapters on the same modules
only, and merges them into the weights at the end.

An output folder ``out`` holds, when training is done:

- a normal Hugging Face model folder (``config.json``, ``model.safetensors``, tokenizer files)
  that ``culture-neurons evaluate`` and ``score`` load like any model; in LoRA mode it holds the
  merged weights, and ``out/adapter/`` the peft adapter;
- ``training.json``: the module set, the settings, the loss log and timings. It is written last,
  so its presence means the run finished.

While training it holds ``train_config.json`` (what a resumed run must match) and
``checkpoints/checkpoint-<step>/``. A full-parameter checkpoint stores only the trained
parameters (``trainable.safetensors``) plus the optimizer, scheduler, RNG and Trainer state, so it
is about 3x the trained parameters' size instead of a copy of the whole model. Checkpoints are
deleted at the end unless ``keep_checkpoints=True``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..data.example import Example
from ..distributed import is_main, world
from ..errors import InputError
from ..fileio import ensure_writable_parent, make_temp_dir, write_json_atomic
from ..models.loading import hf_progress_bars, model_identity
from ..version import __version__
from .config import CHECKPOINTS, CONFIG_FILE, DONE_FILE, SCHEDULERS, TRAINABLE_FILE, TrainConfig, TrainResult
from .data import AnswerCollator, EncodedDataset, encode_examples, pad_id
from .folders import (
    check_folder,
    diff_keys,
    finished_run,
    last_checkpoint,
    load_trainable,
    read_weights,
    remove_leftovers,
    run_key,
    save_model_folder,
    save_trainable,
)
from .modules import ModuleSet, is_conv1d, only_trainable, trainable_names

__all__ = [
    "CHECKPOINTS",
    "CONFIG_FILE",
    "DONE_FILE",
    "SCHEDULERS",
    "TRAINABLE_FILE",
    "TrainConfig",
    "TrainResult",
    "diff_keys",
    "finetune",
    "finished_run",
    "lora_available",
    "run_key",
]

log = logging.getLogger(__name__)


def lora_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("peft") is not None


def _require_peft() -> None:
    if not lora_available():
        raise InputError("LoRA needs the 'peft' package: pip install 'culture-neurons[lora]' (or pip install peft)")


def _trainer_class(trainable: Sequence[str]):
    """A Trainer whose checkpoints hold only the trained parameters (full-parameter mode)."""
    from transformers import Trainer

    class SelectiveTrainer(Trainer):
        def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
            output_dir = output_dir if output_dir is not None else self.args.output_dir
            if not self.args.should_save:
                return
            os.makedirs(output_dir, exist_ok=True)
            save_trainable(self.accelerator.unwrap_model(self.model), trainable, Path(output_dir) / TRAINABLE_FILE)

        def _load_from_checkpoint(self, resume_from_checkpoint: str, model: torch.nn.Module | None = None) -> None:
            from safetensors.torch import load_file

            path = Path(resume_from_checkpoint) / TRAINABLE_FILE
            if not path.is_file():
                raise InputError(
                    f"checkpoint {resume_from_checkpoint} has no {TRAINABLE_FILE}; "
                    "it was not written by culture-neurons train"
                )
            target = self.accelerator.unwrap_model(model if model is not None else self.model)
            load_trainable(target, trainable, load_file(str(path)), str(path))

    return SelectiveTrainer


def _disable_checkpointing(model: Any) -> None:
    """Turn activation checkpointing off again (transformers 5 renamed it; 4.x has only the old names)."""
    if hasattr(model, "is_activation_checkpointing"):
        if model.is_activation_checkpointing:
            model.activation_checkpointing_disable()
    elif getattr(model, "is_gradient_checkpointing", False):
        model.gradient_checkpointing_disable()


def _checkpointing_arg(enabled: bool) -> dict[str, bool]:
    """Activation checkpointing under the name this transformers version uses (renamed in 5.x)."""
    if not enabled:
        return {}
    import inspect

    from transformers import TrainingArguments

    names = inspect.signature(TrainingArguments.__init__).parameters
    return {"activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing": True}


def _bf16(config: TrainConfig, device: torch.device) -> bool:
    if config.bf16 is not None:
        return bool(config.bf16)
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def _training_args(config: TrainConfig, out: Path, device: torch.device, progress: bool) -> Any:
    from transformers import TrainingArguments

    from .step_progress import trainer_bar_wanted

    _, world_size = world()
    return TrainingArguments(
        output_dir=str(out / CHECKPOINTS),
        per_device_train_batch_size=config.micro_batch_size,
        gradient_accumulation_steps=config.accumulation(world_size),
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        lr_scheduler_type=config.scheduler,
        warmup_steps=config.warmup_steps,
        optim=config.optimizer,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        seed=config.seed,
        data_seed=config.seed,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        logging_steps=config.logging_steps,
        logging_first_step=True,
        report_to=list(config.report_to) if isinstance(config.report_to, (tuple, list)) else config.report_to,
        disable_tqdm=not trainer_bar_wanted(progress),  # in a log file StepProgress reports instead
        use_cpu=device.type == "cpu",
        bf16=_bf16(config, device),
        remove_unused_columns=False,
        dataloader_num_workers=0,
        **_checkpointing_arg(config.gradient_checkpointing),
    )


def _lora_model(model: Any, module_set: ModuleSet, config: TrainConfig) -> Any:
    from peft import LoraConfig, get_peft_model

    targets = set(module_set.paths)
    conv1d = any(is_conv1d(m) for n, m in model.named_modules() if n in targets)  # peft must be told, not guess
    lora_cfg = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(module_set.paths),
        bias="none",
        task_type="CAUSAL_LM",
        fan_in_fan_out=conv1d,
    )
    return get_peft_model(model, lora_cfg)


def _save_adapter(train_model: Any, out: Path) -> Path:
    adapter_dir = out / "adapter"
    tmp = make_temp_dir(".adapter-", out)
    try:
        train_model.save_pretrained(tmp)
        shutil.rmtree(adapter_dir, ignore_errors=True)
        os.replace(tmp, adapter_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return adapter_dir


def _train(
    model: Any,
    tokenizer: Any,
    encoded: Sequence[Any],
    module_set: ModuleSet,
    names: list[str],
    out: Path,
    config: TrainConfig,
    last: str | None,
    callbacks: Sequence[Any],
    progress: bool,
) -> tuple[Any, dict[str, Any]]:
    """Run the Trainer on the chosen modules; returns the (merged) model and what the run measured."""
    from transformers import Trainer
    from transformers.trainer_callback import PrinterCallback

    from .step_progress import StepProgress, trainer_bar_wanted

    device = model.get_input_embeddings().weight.device
    args = _training_args(config, out, device, progress)
    use_cache = getattr(model.config, "use_cache", None)
    adapter_dir = None
    with only_trainable(model, names), contextlib.ExitStack() as stack:
        if config.gradient_checkpointing:
            model.enable_input_require_grads()  # frozen embeddings would otherwise cut the gradient
            stack.callback(model.disable_input_require_grads)
            stack.callback(_disable_checkpointing, model)
        train_model = _lora_model(model, module_set, config) if config.lora else model
        trainer_cls = Trainer if config.lora else _trainer_class(names)
        trainable = sum(p.numel() for p in train_model.parameters() if p.requires_grad)
        trainer = trainer_cls(
            model=train_model,
            args=args,
            train_dataset=EncodedDataset(encoded),
            data_collator=AnswerCollator(pad_id(tokenizer)),
            callbacks=list(callbacks) + ([StepProgress()] if progress and not trainer_bar_wanted(progress) else []),
        )
        if not progress:
            trainer.remove_callback(PrinterCallback)  # quiet means quiet; the losses go into training.json
        try:
            output = trainer.train(resume_from_checkpoint=last)
        finally:
            if use_cache is not None:
                model.config.use_cache = use_cache
        measured = {
            "steps": int(trainer.state.global_step),
            "train_loss": float(output.training_loss),
            "trainable_params": int(trainable),
            "losses": [{"step": h["step"], "loss": h["loss"]} for h in trainer.state.log_history if "loss" in h],
        }
        if config.lora:
            if is_main():
                adapter_dir = _save_adapter(train_model, out)
            model = train_model.merge_and_unload()
        del trainer
    measured["adapter"] = str(adapter_dir) if adapter_dir else None
    return model, measured


def _reuse_finished(model: Any, names: list[str], out: Path, config: TrainConfig) -> TrainResult:
    log.info("%s already holds this finished run; loading its weights", out)
    if is_main():
        # A kill after training.json was written can leave the final clean-up undone.
        remove_leftovers(out)
        if not config.keep_checkpoints:
            shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    load_trainable(model, names, read_weights(out, names), str(out))
    model.eval()
    return TrainResult.load(out)


def finetune(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    module_set: ModuleSet,
    out: str | os.PathLike,
    config: TrainConfig | None = None,
    *,
    chat_template: bool = True,
    resume: bool = True,
    callbacks: Sequence[Any] = (),
    progress: bool = True,
    meta: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``module_set``'s modules of ``model`` on ``examples`` (answer-token loss) and save to ``out``.

    Everything not in the set keeps its exact values. The model is modified in place and left in
    eval mode, its ``requires_grad`` flags as they were. A folder that holds this same finished run
    is not trained again: its weights are loaded into ``model`` and its result returned. An
    unfinished one resumes from its last checkpoint.

    Args:
        model, tokenizer: e.g. from :func:`culture_neurons.models.loading.load_model`.
        examples: training examples (see :func:`culture_neurons.training.data.training_examples`).
        module_set: from :func:`culture_neurons.training.choose.choose_modules`.
        out: the output folder (a Hugging Face model folder when done).
        config: :class:`TrainConfig` (default: the paper's settings).
        chat_template: wrap prompts in the tokenizer's chat template, as scoring and evaluation do.
        resume: resume or reuse a matching run in ``out``; False refuses a folder that holds one.
        callbacks: extra ``transformers.TrainerCallback`` objects.
        meta: extra provenance to record in ``training.json`` (e.g. the base model's name).
    """
    config = config or TrainConfig()
    config.validate()
    if config.lora:
        _require_peft()
    out = Path(out)
    ensure_writable_parent(out / DONE_FILE)
    encoded = encode_examples(tokenizer, examples, chat_template, config.max_length)
    names = trainable_names(model, module_set)
    identity = model_identity(model)
    key = run_key(identity, encoded, module_set, config, chat_template)
    state = check_folder(out, key, resume)
    if state == "done":
        return _reuse_finished(model, names, out, config)
    if is_main():
        remove_leftovers(out)
        write_json_atomic(out / CONFIG_FILE, key)
    last = last_checkpoint(out / CHECKPOINTS, clean=is_main()) if state == "resume" else None
    if last:
        log.info("resuming from %s", last)
    start = time.perf_counter()
    model, measured = _train(model, tokenizer, encoded, module_set, names, out, config, last, callbacks, progress)
    model.eval()
    seconds = time.perf_counter() - start
    result = TrainResult(
        out=out,
        module_set=module_set.to_dict(),
        trainable_params=measured["trainable_params"],
        examples=len(encoded),
        answer_tokens=sum(e.answer_tokens for e in encoded),
        steps=measured["steps"],
        seconds=seconds,
        losses=measured["losses"],
        train_loss=measured["train_loss"],
        resumed_from=last,
        adapter=measured["adapter"],
        config=config.to_dict(),
    )
    if is_main():
        with hf_progress_bars(progress):
            save_model_folder(model, tokenizer, out)
        record = {**result.to_dict(), "base_model": identity, "package_version": __version__, **(meta or {})}
        write_json_atomic(out / DONE_FILE, record)
        if not config.keep_checkpoints:
            shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    log.info("trained %s: %d steps on %d examples in %.1f s", module_set.name, result.steps, len(encoded), seconds)
    return result
