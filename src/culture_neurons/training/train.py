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
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..data.example import Example
from ..errors import InputError
from ..fileio import ensure_writable_parent, write_json_atomic
from ..models.loading import hf_progress_bars
from .data import AnswerCollator, EncodedDataset, data_hash, encode_examples, pad_id
from .modules import ModuleSet, is_conv1d, only_trainable, trainable_names

log = logging.getLogger(__name__)

TRAINABLE_FILE = "trainable.safetensors"
DONE_FILE = "training.json"
CONFIG_FILE = "train_config.json"
CHECKPOINTS = "checkpoints"
SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """Fine-tuning settings; the defaults are the paper's.

    Attributes:
        epochs: passes over the training data (1).
        learning_rate: AdamW learning rate (3e-5).
        batch_size: the effective batch: ``micro_batch_size`` x gradient accumulation x processes (16).
        micro_batch_size: examples per forward/backward pass (4); must divide ``batch_size``.
        max_steps: stop after this many optimizer steps (None: run the epochs).
        scheduler: learning-rate schedule (``constant``).
        warmup_steps: steps of linear warm-up for the ``*_warmup``/``linear``/``cosine`` schedules (0).
        optimizer: a Trainer ``optim`` name (``adamw_torch``).
        weight_decay, max_grad_norm: AdamW weight decay (0) and gradient clipping (1.0, the Trainer's default; 0 disables).
        seed: initialisation, dropout and data order (42).
        save_steps: checkpoint every this many optimizer steps (50); save_total_limit: checkpoints kept (2).
        logging_steps: log the loss every this many steps (10).
        report_to: Trainer integrations (``none``; e.g. ``tensorboard``, ``wandb``); no account is needed by default.
        lora: train LoRA adapters on the chosen modules instead of their full weights.
        lora_r, lora_alpha, lora_dropout: LoRA rank (8), scale (16) and dropout (0).
        bf16: autocast to bfloat16 (None: on when CUDA supports it).
        gradient_checkpointing: trade compute for activation memory.
        max_length: drop training sequences longer than this many tokens (None: keep all).
        keep_checkpoints: keep ``checkpoints/`` after a finished run.
    """

    epochs: float = 1.0
    learning_rate: float = 3e-5
    batch_size: int = 16
    micro_batch_size: int = 4
    max_steps: int | None = None
    scheduler: str = "constant"
    warmup_steps: int = 0
    optimizer: str = "adamw_torch"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 42
    save_steps: int = 50
    save_total_limit: int = 2
    logging_steps: int = 10
    report_to: str | tuple[str, ...] = "none"
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    bf16: bool | None = None
    gradient_checkpointing: bool = False
    max_length: int | None = None
    keep_checkpoints: bool = False

    # Settings that change what is trained; a resumed run must match them.
    _LOGISTICS = ("save_steps", "save_total_limit", "logging_steps", "report_to", "keep_checkpoints")

    def validate(self) -> None:
        for name in ("batch_size", "micro_batch_size", "save_steps", "logging_steps", "save_total_limit", "lora_r"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.batch_size % self.micro_batch_size:
            raise InputError(
                f"batch_size {self.batch_size} is not a multiple of micro_batch_size {self.micro_batch_size}"
            )
        if not self.learning_rate > 0:
            raise InputError(f"learning_rate must be positive, got {self.learning_rate}")
        if not self.epochs > 0:
            raise InputError(f"epochs must be positive, got {self.epochs}")
        if self.max_steps is not None and self.max_steps < 1:
            raise InputError(f"max_steps must be at least 1, got {self.max_steps}")
        if self.scheduler not in SCHEDULERS:
            raise InputError(f"unknown scheduler {self.scheduler!r}; choose one of {', '.join(SCHEDULERS)}")
        if self.warmup_steps < 0 or self.weight_decay < 0 or self.max_grad_norm < 0 or not 0 <= self.lora_dropout < 1:
            raise InputError("warmup_steps, weight_decay and max_grad_norm must be >= 0, lora_dropout in [0, 1)")
        if self.max_length is not None and self.max_length < 2:
            raise InputError(f"max_length must be at least 2 tokens, got {self.max_length}")

    def accumulation(self, world_size: int = 1) -> int:
        """Gradient accumulation steps that make the effective batch ``batch_size``."""
        per_step = self.micro_batch_size * world_size
        if self.batch_size % per_step:
            raise InputError(
                f"batch_size {self.batch_size} is not a multiple of micro_batch_size {self.micro_batch_size} x {world_size} processes"
            )
        return self.batch_size // per_step

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["report_to"] = list(self.report_to) if isinstance(self.report_to, (tuple, list)) else self.report_to
        return out

    def run_key(self) -> dict[str, Any]:
        """The settings a resumed run must share."""
        return {k: v for k, v in self.to_dict().items() if k not in self._LOGISTICS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"unknown training setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        data = dict(data)
        if isinstance(data.get("report_to"), list):
            data["report_to"] = tuple(data["report_to"])
        return cls(**data)


@dataclass
class TrainResult:
    """What one fine-tuning run produced."""

    out: Path
    module_set: dict[str, Any]
    trainable_params: int
    examples: int
    answer_tokens: int
    steps: int
    seconds: float
    losses: list[dict[str, float]] = field(default_factory=list)
    train_loss: float | None = None  # the Trainer's mean loss over the steps this process ran
    resumed_from: str | None = None
    adapter: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    skipped: bool = False  # the folder already held this finished run

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["out"] = str(self.out)
        out.pop("skipped")
        return out

    @classmethod
    def load(cls, out: str | os.PathLike) -> TrainResult:
        data = json.loads((Path(out) / DONE_FILE).read_text(encoding="utf-8"))
        keep = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in keep}
        data["out"] = Path(out)
        return cls(**data, skipped=True)


def lora_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("peft") is not None


def _require_peft() -> None:
    if not lora_available():
        raise InputError("LoRA needs the 'peft' package: pip install 'culture-neurons[lora]' (or pip install peft)")


def _save_trainable(model: torch.nn.Module, names: Sequence[str], path: str | os.PathLike) -> None:
    from safetensors.torch import save_file

    params = dict(model.named_parameters())
    save_file({n: params[n].detach().contiguous().cpu() for n in names}, str(path), metadata={"format": "pt"})


def _load_trainable(model: torch.nn.Module, names: Sequence[str], tensors: dict[str, torch.Tensor], where: str) -> None:
    params = dict(model.named_parameters())
    missing = [n for n in names if n not in tensors]
    if missing:
        raise InputError(
            f"{where} lacks trained parameter(s) {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}; "
            "it was written by another run"
        )
    with torch.no_grad():
        for n in names:
            if tuple(tensors[n].shape) != tuple(params[n].shape):
                raise InputError(
                    f"{where}: {n} has shape {tuple(tensors[n].shape)}, the model {tuple(params[n].shape)}"
                )
            params[n].copy_(tensors[n].to(params[n].device, params[n].dtype))


def _read_weights(folder: Path, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """The tensors ``names`` from a saved model folder (single or sharded safetensors)."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    files = [f for f in files if f.name != TRAINABLE_FILE]
    wanted, out = set(names), {}
    for f in files:
        with safe_open(str(f), framework="pt") as fh:
            for key in fh.keys():
                if key in wanted:
                    out[key] = fh.get_tensor(key)
    return out


def _trainer_class(trainable: Sequence[str]):
    """A Trainer whose checkpoints hold only the trained parameters (full-parameter mode)."""
    from transformers import Trainer

    class SelectiveTrainer(Trainer):
        def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
            output_dir = output_dir if output_dir is not None else self.args.output_dir
            if not self.args.should_save:
                return
            os.makedirs(output_dir, exist_ok=True)
            _save_trainable(self.accelerator.unwrap_model(self.model), trainable, Path(output_dir) / TRAINABLE_FILE)

        def _load_from_checkpoint(self, resume_from_checkpoint: str, model: torch.nn.Module | None = None) -> None:
            from safetensors.torch import load_file

            path = Path(resume_from_checkpoint) / TRAINABLE_FILE
            if not path.is_file():
                raise InputError(
                    f"checkpoint {resume_from_checkpoint} has no {TRAINABLE_FILE}; it was not written by culture-neurons train"
                )
            target = self.accelerator.unwrap_model(model if model is not None else self.model)
            _load_trainable(target, trainable, load_file(str(path)), str(path))

    return SelectiveTrainer


TRAINER_STATE = "trainer_state.json"  # the Trainer writes it last into a checkpoint


def _complete(checkpoint: Path) -> bool:
    """True when the Trainer finished writing ``checkpoint``.

    The Trainer writes a checkpoint's files one after another, with ``trainer_state.json`` last, and
    not atomically: a process killed while saving leaves a folder that looks like a checkpoint but
    lacks the optimizer or RNG state. A checkpoint counts once its trainer state parses.
    """
    try:
        json.loads((checkpoint / TRAINER_STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def _last_checkpoint(folder: Path, clean: bool = True) -> str | None:
    """The newest complete checkpoint in ``folder``; newer, incomplete ones are removed when ``clean``."""
    if not folder.is_dir():
        return None
    found = []
    for path in folder.iterdir():
        name, _, step = path.name.partition("-")
        if path.is_dir() and name == "checkpoint" and step.isdigit():
            found.append((int(step), path))
    for _, path in sorted(found, reverse=True):
        if _complete(path):
            return str(path)
        log.warning("ignoring %s: it was not completely written (the run was killed while saving it)", path)
        if clean:
            # Resuming from an older checkpoint writes this step again; a half-written folder in the
            # way would otherwise be taken as the newest checkpoint after the next interruption.
            shutil.rmtree(path, ignore_errors=True)
    return None


def _remove_leftovers(out: Path) -> None:
    """Temporary folders of a save that a killed process left behind (see :func:`_save_model_folder`)."""
    for pattern in (".model-*", ".adapter-*"):
        for path in out.glob(pattern):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)


def _diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def run_key(
    identity: dict[str, Any], encoded: Sequence[Any], module_set: ModuleSet, config: TrainConfig, chat_template: bool
) -> dict[str, Any]:
    """What a run in a folder must match to be resumed or reused: settings, modules, data and model architecture."""
    return {
        "config": config.run_key(),
        "modules": "full" if module_set.full else list(module_set.names),
        "data": data_hash(encoded),
        "chat_template": chat_template,
        "model_config_sha256": identity["config_sha256"],
    }


def finished_run(out: str | os.PathLike, key: dict[str, Any]) -> TrainResult | None:
    """The result of the finished run in ``out`` if it matches ``key``, else None."""
    out = Path(out)
    try:
        previous = json.loads((out / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (out / DONE_FILE).is_file() and not _diff_keys(previous, json.loads(json.dumps(key))):
        return TrainResult.load(out)
    return None


def _check_folder(out: Path, key: dict[str, Any], resume: bool) -> str:
    """``done``, ``resume`` or ``fresh``; refuses a folder holding another run or another model."""
    done, cfg = out / DONE_FILE, out / CONFIG_FILE
    if cfg.is_file():
        try:
            previous = json.loads(cfg.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InputError(f"{cfg} is not valid JSON ({exc}); remove {out} to start again") from exc
        differ = _diff_keys(previous, json.loads(json.dumps(key)))
        if differ:
            raise InputError(
                f"{out} holds a training run with other settings ({', '.join(differ[:5])} differ); "
                "use another output folder or remove this one"
            )
        if not resume:
            raise InputError(
                f"{out} already holds {'a finished' if done.is_file() else 'an unfinished'} training run; "
                "resume it (drop --no-resume) or remove the folder"
            )
        return "done" if done.is_file() else "resume"
    if (out / "config.json").is_file():
        raise InputError(
            f"{out} already holds a model that culture-neurons train did not write; choose another output folder"
        )
    return "fresh"


def _save_model_folder(model: Any, tokenizer: Any, out: Path) -> None:
    """Write the model and tokenizer into ``out`` via a temporary folder, so no file is ever half-written."""
    tmp = Path(tempfile.mkdtemp(prefix=".model-", dir=out))
    config = model.config
    name = config.__dict__.pop("culture_neurons_name", None)  # a display name, not part of the saved model
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for item in sorted(tmp.iterdir()):
            target = out / item.name
            if target.is_dir() and not item.is_dir():
                raise InputError(f"cannot write {target}: a folder of that name is in the way")
            if item.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            os.replace(item, target)
    finally:
        if name is not None:
            config.culture_neurons_name = name
        shutil.rmtree(tmp, ignore_errors=True)


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
        module_set: from :func:`culture_neurons.training.modules.choose_modules`.
        out: the output folder (a Hugging Face model folder when done).
        config: :class:`TrainConfig` (default: the paper's settings).
        chat_template: wrap prompts in the tokenizer's chat template, as scoring and evaluation do.
        resume: resume or reuse a matching run in ``out``; False refuses a folder that holds one.
        callbacks: extra ``transformers.TrainerCallback`` objects.
        meta: extra provenance to record in ``training.json`` (e.g. the base model's name).
    """
    from transformers import TrainingArguments

    from ..distributed import is_main, world
    from ..models.loading import model_identity

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
    state = _check_folder(out, key, resume)
    if state == "done":
        log.info("%s already holds this finished run; loading its weights", out)
        if is_main():
            # A kill after training.json was written can leave the final clean-up undone.
            _remove_leftovers(out)
            if not config.keep_checkpoints:
                shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
        _load_trainable(model, names, _read_weights(out, names), str(out))
        model.eval()
        return TrainResult.load(out)
    if is_main():
        _remove_leftovers(out)
        write_json_atomic(out / CONFIG_FILE, key)
    last = _last_checkpoint(out / CHECKPOINTS, clean=is_main()) if state == "resume" else None
    if last:
        log.info("resuming from %s", last)

    _, world_size = world()
    device = model.get_input_embeddings().weight.device
    use_cache = getattr(model.config, "use_cache", None)
    args = TrainingArguments(
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
        disable_tqdm=not progress,
        use_cpu=device.type == "cpu",
        bf16=_bf16(config, device),
        remove_unused_columns=False,
        dataloader_num_workers=0,
        **_checkpointing_arg(config.gradient_checkpointing),
    )
    start = time.perf_counter()
    adapter_dir = None
    with only_trainable(model, names), contextlib.ExitStack() as stack:
        if config.gradient_checkpointing:
            model.enable_input_require_grads()  # frozen embeddings would otherwise cut the gradient
            stack.callback(model.disable_input_require_grads)
            stack.callback(_disable_checkpointing, model)
        if config.lora:
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
            train_model = get_peft_model(model, lora_cfg)
            from transformers import Trainer as trainer_cls
        else:
            train_model = model
            trainer_cls = _trainer_class(names)
        trainable = sum(p.numel() for p in train_model.parameters() if p.requires_grad)
        trainer = trainer_cls(
            model=train_model,
            args=args,
            train_dataset=EncodedDataset(encoded),
            data_collator=AnswerCollator(pad_id(tokenizer)),
            callbacks=list(callbacks),
        )
        if not progress:
            from transformers.trainer_callback import PrinterCallback

            trainer.remove_callback(PrinterCallback)  # quiet means quiet; the losses go into training.json
        try:
            output = trainer.train(resume_from_checkpoint=last)
        finally:
            if use_cache is not None:
                model.config.use_cache = use_cache
        steps = trainer.state.global_step
        losses = [{"step": h["step"], "loss": h["loss"]} for h in trainer.state.log_history if "loss" in h]
        train_loss = float(output.training_loss)
        if config.lora:
            if is_main():
                adapter_dir = out / "adapter"
                tmp = Path(tempfile.mkdtemp(prefix=".adapter-", dir=out))
                try:
                    train_model.save_pretrained(tmp)
                    shutil.rmtree(adapter_dir, ignore_errors=True)
                    os.replace(tmp, adapter_dir)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
            model = train_model.merge_and_unload()
        del trainer
    model.eval()
    seconds = time.perf_counter() - start
    result = TrainResult(
        out=out,
        module_set=module_set.to_dict(),
        trainable_params=int(trainable),
        examples=len(encoded),
        answer_tokens=sum(e.answer_tokens for e in encoded),
        steps=int(steps),
        seconds=seconds,
        losses=losses,
        train_loss=train_loss,
        resumed_from=last,
        adapter=str(adapter_dir) if adapter_dir else None,
        config=config.to_dict(),
    )
    if is_main():
        with hf_progress_bars(progress):
            _save_model_folder(model, tokenizer, out)
        record = {**result.to_dict(), "base_model": identity, "package_version": __version__, **(meta or {})}
        write_json_atomic(out / DONE_FILE, record)
        if not config.keep_checkpoints:
            shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    log.info("trained %s: %d steps on %d examples in %.1f s", module_set.name, steps, len(encoded), seconds)
    return result
