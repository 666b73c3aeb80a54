"""Checks before a model loads, and what to say once it has: device strings, model access, provenance.

Everything here is cheap and downloads nothing, so ``--dry-run`` and the CLI can call it before any
file is written. Errors are one line and say what to do in the user's situation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelLoadError
from .adapters import text_config
from .aliases import ALIASES, alias_gguf, alias_package_dirs, alias_version, near_alias

_ACCELERATORS = ("cuda", "mps", "xpu", "npu", "hpu", "mlu")
_TRUE = {"1", "true", "yes", "on"}


def _available(kind: str) -> tuple[bool, int]:
    """Whether a torch backend is usable here, and how many devices it has."""
    if kind == "mps":
        backend = getattr(torch.backends, "mps", None)
        ok = bool(backend and backend.is_available())
        return ok, int(ok)
    module = getattr(torch, kind, None)
    if module is None or not callable(getattr(module, "is_available", None)):
        return False, 0
    ok = bool(module.is_available())
    count = getattr(module, "device_count", None)
    return ok, int(count()) if ok and callable(count) else int(ok)


def validate_device(device: str | torch.device | None) -> None:
    """Refuse, in one line, a device string torch does not know or a device this machine lacks.

    ``None`` (pick one), ``cpu``, ``cuda``, ``cuda:N`` (N < the GPU count), ``mps`` and the other
    torch accelerators are accepted when present. A job submitted without a GPU gets an error naming
    the fix instead of torch's "Torch not compiled with CUDA enabled" traceback.
    """
    if device is None or (isinstance(device, torch.device) and device.type == "cpu"):
        return
    text = str(device).strip()
    try:
        parsed = torch.device(text)
    except (RuntimeError, ValueError):
        raise ModelLoadError(f"unknown device {text!r}; use cpu, cuda, cuda:N (N = GPU number) or mps") from None
    if parsed.type in ("cpu", "meta"):
        if parsed.type == "meta":
            raise ModelLoadError("device 'meta' holds no weights; use cpu, cuda or cuda:N")
        return
    if parsed.type not in _ACCELERATORS:
        raise ModelLoadError(f"device {text!r} is not supported; use cpu, cuda, cuda:N or mps")
    ok, count = _available(parsed.type)
    if not ok:
        why = (
            "this torch build has no CUDA support"
            if parsed.type == "cuda" and torch.version.cuda is None
            else f"no {parsed.type} device is visible"
        )
        raise ModelLoadError(
            f"device {text!r} was asked for, but {why} (torch {torch.__version__}); "
            "use --device cpu, or run on a machine (or job) with a GPU"
        )
    if parsed.index is not None and parsed.index >= count:
        raise ModelLoadError(
            f"device {text!r} does not exist: this machine has {count} {parsed.type} device(s), "
            f"numbered 0 to {count - 1}"
        )


def _offline() -> bool:
    return any(os.environ.get(k, "").strip().lower() in _TRUE for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _alias_hint(name: str) -> str:
    near = near_alias(name)
    if near:
        return f" Did you mean the built-in alias {near!r}?"
    return f" Built-in aliases: {', '.join(sorted(ALIASES))}."


def _check_local(path: Path) -> None:
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"model folder {path} has no config.json; "
                "give a Hugging Face model folder (save_pretrained), a .gguf file or an alias"
            )
        return
    raise ModelLoadError(
        f"{path} is a file; give a model folder, a .gguf file, a hub id or one of the aliases {sorted(ALIASES)}"
    )


def _looks_like_path(name: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else is meant as a path on this machine."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def _check_hub(name: str, revision: str | None) -> None:
    """A hub id: fine when its config is in the local cache; otherwise say what to do, offline or not."""
    from huggingface_hub import try_to_load_from_cache

    at = f" at revision {revision!r}" if revision else ""
    cached = try_to_load_from_cache(name, "config.json", revision=revision)
    if isinstance(cached, str) and Path(cached).is_file():
        return
    if _offline():
        raise ModelLoadError(
            f"model {name!r}{at} is not in the local Hugging Face cache, "
            "and offline mode is already on (HF_HUB_OFFLINE=1), "
            f"so it cannot be downloaded: download it first where there is network (hf download {name}), "
            f"or choose another model (--model NAME, or --set model.name=NAME in a run).{_alias_hint(name)}"
        )
    _check_hub_online(name, at)


def _check_hub_online(name: str, at: str) -> None:
    from huggingface_hub import auth_check
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        auth_check(name)
    except GatedRepoError:
        raise ModelLoadError(
            f"model {name!r} is gated on the Hugging Face hub: accept its licence on its hub page, then log in "
            "(hf auth login, or set HF_TOKEN) and run again"
        ) from None
    except RepositoryNotFoundError:
        raise ModelLoadError(
            f"model {name!r} was not found on the Hugging Face hub "
            f"(a typo, or private and you are not logged in).{_alias_hint(name)}"
        ) from None
    except Exception as exc:  # network errors come in many types; all mean the same to the user
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelLoadError(
            f"model {name!r}{at} is not in the local Hugging Face cache and the hub could not be reached ({first}): "
            f"download it where there is network (hf download {name}), then set HF_HUB_OFFLINE=1; "
            f"or choose another model (--model NAME, or --set model.name=NAME in a run).{_alias_hint(name)}"
        ) from None


def check_model_access(name: str | os.PathLike, revision: str | None = None) -> None:
    """Fail early, in one line, when ``name`` cannot be loaded here. Downloads nothing.

    Checks in order: a built-in alias (its wheel installed), a ``.gguf`` file, a local folder (with a
    ``config.json``), then a hub id (in the local cache; when not and not offline, a metadata-only
    query tells a gated or misspelt repository from a missing network).
    """
    text = str(name)
    if text.lower() in ALIASES:
        if revision:
            raise ModelLoadError(f"revision {revision!r} applies to hub ids only, not to the alias {text!r}")
        alias_package_dirs(text.lower())
        alias_gguf(text.lower(), build=False)  # locates the file; a chunked alias is rebuilt at load time
        return
    path = Path(text).expanduser()
    if text.lower().endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"GGUF file {path} does not exist")
        return
    if path.exists():
        _check_local(path)
        return
    if _looks_like_path(text):
        raise ModelLoadError(f"model folder {path} does not exist.{_alias_hint(path.name)}")
    _check_hub(text, revision)


def _format_count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def _where(model: Any) -> str:
    device_map = getattr(model, "hf_device_map", None)
    if isinstance(device_map, dict) and len(set(map(str, device_map.values()))) > 1:
        devices = sorted({str(d) for d in device_map.values()})
        return f"device_map over {', '.join(devices)}"
    try:
        return str(next(model.parameters()).device)
    except StopIteration:
        return "no parameters"


def describe_loaded(model: Any) -> str:
    """The one line printed after a model loads: ``loaded NAME: family F, 134.5M params, float32, cpu``."""
    from ..errors import ArchitectureError
    from .adapters import (
        get_adapter,  # adapters import torch modules only; kept lazy for symmetry
    )

    config = getattr(model, "config", None)
    name = (
        getattr(config, "culture_neurons_name", None) or getattr(config, "_name_or_path", None) or type(model).__name__
    )
    try:
        family = get_adapter(model).family
    except ArchitectureError:
        family = f"{getattr(config, 'model_type', None)} (no adapter)"
    params = sum(p.numel() for p in model.parameters())
    try:
        dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    except StopIteration:
        dtype = "-"
    layers = getattr(text_config(config), "num_hidden_layers", None)
    shape = f", {layers} layers" if layers else ""
    where = _where(model)
    return f"loaded {name}: {family} ({type(model).__name__}{shape}), {_format_count(params)} params, {dtype}, {where}"


def _commit_from_path(path: str) -> str | None:
    """The commit hash of a hub-cache snapshot folder (``.../snapshots/<40 hex>``), if it is one."""
    parts = Path(path).parts
    if "snapshots" in parts:
        i = parts.index("snapshots")
        if i + 1 < len(parts) and len(parts[i + 1]) == 40:
            return parts[i + 1]
    return None


def model_provenance(model: Any) -> dict[str, Any]:
    """Where a loaded model came from, for a run manifest.

    Keys: ``name`` (the user's name or alias), ``source`` (``alias``, ``gguf``, ``local`` or ``hub``),
    ``revision`` (as asked, or None), ``commit`` (the hub commit hash when known, from
    ``config._commit_hash`` or the hub-cache snapshot folder), ``gguf`` (file name and size) and
    ``package``/``package_version`` for aliases. Values are JSON-serialisable.
    """
    config = getattr(model, "config", None)
    recorded = dict(getattr(model, "culture_neurons_provenance", None) or {})
    name = (
        recorded.get("name") or getattr(config, "culture_neurons_name", None) or getattr(config, "_name_or_path", None)
    )
    source_path = str(getattr(config, "_name_or_path", "") or "")
    commit = getattr(config, "_commit_hash", None) or _commit_from_path(source_path)
    out: dict[str, Any] = {
        "name": None if name is None else str(name),
        "source": recorded.get("source"),
        "revision": recorded.get("revision"),
        "commit": commit,
    }
    if out["source"] is None:
        out["source"] = "local" if source_path and Path(source_path).exists() and commit is None else "hub"
    for key in ("gguf", "package", "package_version"):
        if key in recorded:
            out[key] = recorded[key]
    if out["source"] == "alias" and "package_version" not in out and name:
        out["package_version"] = alias_version(str(name).lower())
    return out
