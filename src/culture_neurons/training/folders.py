"""What a fine-tuning output folder holds and how a run in it is recognised, resumed or reused.

The trained parameters alone (``trainable.safetensors``) in checkpoints, complete checkpoints only
(the Trainer writes ``trainer_state.json`` last), the settings a resumed run must match
(``train_config.json``), and the model folder written through a temporary folder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError
from ..fileio import make_temp_dir
from .config import CONFIG_FILE, DONE_FILE, TRAINABLE_FILE, TrainConfig, TrainResult
from .data import data_hash
from .modules import ModuleSet

log = logging.getLogger("culture_neurons.training.train")


def save_trainable(model: torch.nn.Module, names: Sequence[str], path: str | os.PathLike) -> None:
    from safetensors.torch import save_file

    params = dict(model.named_parameters())
    save_file({n: params[n].detach().contiguous().cpu() for n in names}, str(path), metadata={"format": "pt"})


def load_trainable(model: torch.nn.Module, names: Sequence[str], tensors: dict[str, torch.Tensor], where: str) -> None:
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


def read_weights(folder: Path, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """The tensors ``names`` from a saved model folder (single or sharded safetensors)."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    files = [f for f in files if f.name != TRAINABLE_FILE]
    wanted, out = set(names), {}
    for f in files:
        with safe_open(str(f), framework="pt") as fh:
            for key in fh.keys():  # noqa: SIM118 - a safetensors handle, not a dict
                if key in wanted:
                    out[key] = fh.get_tensor(key)
    return out


TRAINER_STATE = "trainer_state.json"  # the Trainer writes it last into a checkpoint


def complete(checkpoint: Path) -> bool:
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


def last_checkpoint(folder: Path, clean: bool = True) -> str | None:
    """The newest complete checkpoint in ``folder``; newer, incomplete ones are removed when ``clean``."""
    if not folder.is_dir():
        return None
    found = []
    for path in folder.iterdir():
        name, _, step = path.name.partition("-")
        if path.is_dir() and name == "checkpoint" and step.isdigit():
            found.append((int(step), path))
    for _, path in sorted(found, reverse=True):
        if complete(path):
            return str(path)
        log.warning("ignoring %s: it was not completely written (the run was killed while saving it)", path)
        if clean:
            # Resuming from an older checkpoint writes this step again; a half-written folder in the
            # way would otherwise be taken as the newest checkpoint after the next interruption.
            shutil.rmtree(path, ignore_errors=True)
    return None


def remove_leftovers(out: Path) -> None:
    """Temporary folders of a save that a killed process left behind (see :func:`save_model_folder`)."""
    for pattern in (".model-*", ".adapter-*"):
        for path in out.glob(pattern):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)


def diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
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
    if (out / DONE_FILE).is_file() and not diff_keys(previous, json.loads(json.dumps(key))):
        return TrainResult.load(out)
    return None


def check_folder(out: Path, key: dict[str, Any], resume: bool) -> str:
    """``done``, ``resume`` or ``fresh``; refuses a folder holding another run or another model."""
    done, cfg = out / DONE_FILE, out / CONFIG_FILE
    if cfg.is_file():
        try:
            previous = json.loads(cfg.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InputError(f"{cfg} is not valid JSON ({exc}); remove {out} to start again") from exc
        differ = diff_keys(previous, json.loads(json.dumps(key)))
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


def save_model_folder(model: Any, tokenizer: Any, out: Path) -> None:
    """Write the model and tokenizer into ``out`` via a temporary folder, so no file is ever half-written."""
    tmp = make_temp_dir(".model-", out)  # the umask's mode, not mkdtemp's 0700
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
