"""The settings and the result of one fine-tuning run, and the file names of its output folder."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import InputError

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
        weight_decay, max_grad_norm: AdamW weight decay (0) and gradient clipping (1.0, the Trainer's default;
            0 disables).
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
                f"batch_size {self.batch_size} is not a multiple of micro_batch_size {self.micro_batch_size} "
                f"x {world_size} processes"
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
