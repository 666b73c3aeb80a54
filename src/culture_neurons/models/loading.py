"""Loading a causal LM and its tokenizer: hub ids, local folders, GGUF files and built-in aliases.

``load_model`` follows the Hugging Face conventions (``dtype``, ``device_map``). GGUF files are
dequantised by transformers (needs the ``gguf`` package), which is slow, so the dequantised weights
are cached as safetensors in the user cache folder and later loads read that copy.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelLoadError
from ..fileio import make_temp_dir, sha256_json
from .access import (
    check_model_access,
    describe_loaded,
    model_provenance,
    validate_device,
)
from .aliases import ALIASES, WheelGGUF, alias_gguf, alias_version, cache_dir

__all__ = [
    "ALIASES",
    "WheelGGUF",
    "cache_dir",
    "check_model_access",
    "default_device",
    "describe_loaded",
    "load_model",
    "load_tokenizer",
    "model_identity",
    "model_provenance",
    "parse_max_memory",
    "release_memory",
    "resolve_dtype",
    "resolve_source",
    "validate_device",
]

log = logging.getLogger(__name__)

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
_CACHE_FORMAT = 1


def resolve_dtype(dtype: str | torch.dtype | None, device: str | torch.device | None) -> torch.dtype:
    """``None`` means bfloat16 on CUDA and float32 elsewhere; ``auto`` also picks bfloat16 on a CPU with
    bfloat16 matrix instructions (:func:`cpu_has_fast_bfloat16`), the fast path that docs/performance.md's
    agreement table measures."""
    if isinstance(dtype, torch.dtype):
        return dtype
    on_cuda = str(device or "").startswith("cuda")
    if dtype is None:
        return torch.bfloat16 if on_cuda else torch.float32
    if dtype == "auto":
        return (
            torch.bfloat16 if on_cuda or (str(device or "cpu") == "cpu" and cpu_has_fast_bfloat16()) else torch.float32
        )
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise ModelLoadError(f"unknown dtype {dtype!r}; use one of float32, bfloat16, float16") from None


def cpu_has_fast_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (AMX tiles or AVX-512 BF16), read from
    ``/proc/cpuinfo`` (False where there is none, e.g. macOS)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "amx_bf16" in flags or "avx512_bf16" in flags


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _alias_gguf(alias: str) -> Path:
    return alias_gguf(alias)


def _gguf_cache_path(gguf: Path) -> Path:
    stat = gguf.stat()
    key = sha256_json({"name": gguf.name, "size": stat.st_size, "mtime": int(stat.st_mtime), "v": _CACHE_FORMAT})[:16]
    return cache_dir() / "gguf" / f"{gguf.stem}-{key}"


@contextlib.contextmanager
def _gguf_bar_off_without_terminal() -> Iterator[None]:
    """transformers' GGUF reader draws a plain tqdm bar that no setting turns off; without a terminal it
    would write carriage-return fragments into the log (our "dequantising ..." lines say the same)."""
    if sys.stderr.isatty():
        yield
        return
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    original = getattr(gguf_utils, "tqdm", None)
    if original is None:
        yield
        return
    gguf_utils.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = original


def _dequantise_to_cache(gguf: Path, target: Path) -> None:
    """Load a GGUF through transformers and write config, tokenizer and safetensors to ``target``."""
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        import gguf as _gguf  # noqa: F401
    except ImportError:
        raise ModelLoadError(
            "loading GGUF files needs the 'gguf' package: pip install 'culture-neurons[demo]' (or pip install gguf)"
        ) from None
    log.info("dequantising %s once (about half a minute for 135M parameters); cached at %s", gguf.name, target)
    start = time.perf_counter()
    try:
        with _gguf_bar_off_without_terminal():
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except Exception as exc:
        raise ModelLoadError(f"could not load GGUF file {gguf}: {exc}") from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(f".{target.name}.", target.parent)  # the umask's mode, not mkdtemp's 0700
    try:
        config = model.config
        # The copy holds plain float weights, so the GGUF quantisation entry must not follow it.
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"))  # drops tied duplicates (lm_head = embeddings)
        tokenizer.save_pretrained(tmp)
        (tmp / "culture_neurons_source.json").write_text(json.dumps({"gguf": gguf.name, "size": gguf.stat().st_size}))
        try:
            os.replace(tmp, target)
        except OSError:  # another process won the race; its copy is as good as ours
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("dequantised in %.1f s", time.perf_counter() - start)


def resolve_source(name_or_path: str | os.PathLike) -> tuple[str, str]:
    """Map an alias, GGUF file, local folder or hub id to ``(loadable path or id, display name)``.

    GGUF inputs are replaced by their cached safetensors copy (created on first use).
    """
    name = str(name_or_path)
    gguf: Path | None = None
    if name.lower() in ALIASES:
        gguf = _alias_gguf(name.lower())
        name = name.lower()
    elif name.lower().endswith(".gguf"):
        gguf = Path(name)
        if not gguf.is_file():
            raise ModelLoadError(f"GGUF file {gguf} does not exist")
    if gguf is not None:
        cached = _gguf_cache_path(gguf)
        if not (cached / "model.safetensors").is_file():
            _dequantise_to_cache(gguf, cached)
        return str(cached), name
    path = Path(name)
    if path.exists() and not path.is_dir():
        raise ModelLoadError(
            f"{path} is a file; give a model folder, a .gguf file, a hub id or one of the aliases {sorted(ALIASES)}"
        )
    return name, name


def _wrap_load_error(name: str, exc: Exception) -> ModelLoadError:
    hint = ""
    if not Path(name).exists():
        offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
        how = (
            "offline mode is on (HF_HUB_OFFLINE=1), so only the local cache was searched: "
            "download it first (hf download NAME)"
            if offline
            else "if this machine has no network, download it elsewhere first, then set HF_HUB_OFFLINE=1"
        ).replace("NAME", name)
        aliases = ", ".join(sorted(ALIASES))
        hint = (
            f" It is not a local folder, so it was looked up on the Hugging Face hub; {how}. "
            f"Built-in aliases: {aliases}."
        )
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ModelLoadError(f"could not load model {name!r}: {first.rstrip('.')}.{hint}")


def source_kind(name_or_path: str | os.PathLike) -> str:
    """``alias``, ``gguf``, ``local`` or ``hub``: how ``name_or_path`` is loaded (recorded as provenance)."""
    name = str(name_or_path)
    if name.lower() in ALIASES:
        return "alias"
    if name.lower().endswith(".gguf"):
        return "gguf"
    return "local" if Path(name).exists() else "hub"


def _provenance(name_or_path: str | os.PathLike, display: str, revision: str | None) -> dict[str, Any]:
    kind = source_kind(name_or_path)
    out: dict[str, Any] = {"name": display, "source": kind, "revision": revision}
    if kind == "alias":
        spec = ALIASES[display]
        out.update(gguf={"file": spec.filename}, package=spec.pip_name, package_version=alias_version(display))
    elif kind == "gguf":
        path = Path(str(name_or_path))
        out["gguf"] = {"file": path.name, "size": path.stat().st_size}
    return out


def _check_revision(name_or_path: str | os.PathLike, revision: str | None) -> None:
    if revision is not None and source_kind(name_or_path) in ("alias", "gguf"):
        raise ModelLoadError(f"revision {revision!r} applies to hub ids only, not to {str(name_or_path)!r}")


def load_tokenizer(name_or_path: str | os.PathLike, revision: str | None = None) -> Any:
    """Load the tokenizer of a hub id, local folder, GGUF file or alias; a pad token is always set.

    ``revision`` (a branch, tag or commit hash) applies to hub ids, as in ``from_pretrained``.
    """
    _check_revision(name_or_path, revision)
    source, display = resolve_source(name_or_path)
    from transformers import AutoTokenizer

    extra = {} if revision is None else {"revision": revision}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **extra)
    except Exception as exc:
        raise _wrap_load_error(display, exc) from exc
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise ModelLoadError(f"tokenizer of {display!r} has neither a pad nor an eos token to pad with")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def parse_max_memory(text: str | dict | None) -> dict | None:
    """``"0=70GiB,1=70GiB,cpu=200GiB"`` -> ``{0: "70GiB", 1: "70GiB", "cpu": "200GiB"}`` (the ``max_memory`` format)."""
    if text is None or isinstance(text, dict):
        return text
    out: dict = {}
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        key, sep, value = part.partition("=")
        if not sep or not value.strip():
            raise ModelLoadError(f"max memory entry {part!r} must look like DEVICE=SIZE, e.g. 0=70GiB or cpu=200GiB")
        key = key.strip()
        out[int(key) if key.isdigit() else key] = value.strip()
    return out


def release_memory() -> None:
    """Hand the memory of models no longer referenced back: collect cycles, then empty CUDA's cache.

    Call it after dropping the last reference (``model = None``); a model still bound anywhere stays.
    """
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@contextlib.contextmanager
def hf_progress_bars(enabled: bool) -> Iterator[None]:
    """Silence transformers' own bars (loading weights, writing shards) while ours are off, so ``-q`` is quiet,
    and when stderr is not a terminal, where a bar writes carriage returns into the log file (our own
    "loaded ..." line says the same)."""
    from transformers.utils import logging as hf_logging

    silence = (not enabled or not sys.stderr.isatty()) and hf_logging.is_progress_bar_enabled()
    if silence:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if silence:
            hf_logging.enable_progress_bar()


def load_model(
    name_or_path: str | os.PathLike,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = None,
    device_map: str | dict | None = None,
    max_memory: str | dict | None = None,
    progress: bool = True,
    revision: str | None = None,
    **kwargs: Any,
) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` in eval mode.

    Args:
        name_or_path: a hub id, a local Hugging Face folder, a ``.gguf`` file, or a built-in alias
            such as ``smollm2-135m-instruct``.
        dtype: ``float32``, ``bfloat16``, ``float16`` or a torch dtype; default bfloat16 on CUDA,
            float32 otherwise.
        device: where to put the whole model (default: CUDA when available). Ignored with ``device_map``.
        device_map: passed to ``from_pretrained`` (e.g. ``"auto"`` to shard a large model over the
            GPUs, then CPU memory); scoring hooks and accumulators follow each layer's device.
        max_memory: per-device limits for ``device_map`` (``{0: "70GiB", "cpu": "200GiB"}`` or the
            string ``"0=70GiB,cpu=200GiB"``).
        progress: show transformers' own progress bar while the weights load.
        revision: a hub branch, tag or commit hash, for the model and its tokenizer alike (hub ids only).
        **kwargs: further ``from_pretrained`` arguments (``attn_implementation``, ...).

    The model carries ``culture_neurons_provenance`` (see :func:`model_provenance`).
    """
    from transformers import AutoModelForCausalLM

    if device_map is None:
        device = str(device or default_device())
        validate_device(device)
    _check_revision(name_or_path, revision)
    placed = device if device_map is None else ("cuda" if torch.cuda.is_available() else "cpu")
    torch_dtype = resolve_dtype(dtype, placed)
    source, display = resolve_source(name_or_path)
    tokenizer = load_tokenizer(source, revision=revision)
    if revision is not None:
        kwargs["revision"] = revision
    if max_memory is not None:
        if device_map is None:
            raise ModelLoadError("max_memory only applies with a device_map (e.g. device_map='auto')")
        kwargs["max_memory"] = parse_max_memory(max_memory)
    try:
        with hf_progress_bars(progress):
            model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, device_map=device_map, **kwargs)
    except Exception as exc:
        raise _wrap_load_error(display, exc) from exc
    if device_map is None:
        model.to(device)
    model.eval()
    model.config.culture_neurons_name = display  # the user's name for it, kept for score-table provenance
    # Kept on the module, not the config, so the architecture hash of model_identity does not change.
    model.culture_neurons_provenance = _provenance(name_or_path, display, revision)
    return model, tokenizer


def model_identity(model: Any) -> dict[str, Any]:
    """Name, class and a hash of the architecture config: enough to refuse mixing tables of two models."""
    config = model.config
    cfg = config.to_dict()
    volatile_keys = (
        "transformers_version",
        "_name_or_path",
        "dtype",
        "torch_dtype",
        "culture_neurons_name",
        "use_cache",
        "quantization_config",
    )
    for volatile in volatile_keys:
        cfg.pop(volatile, None)
    name = getattr(config, "culture_neurons_name", None) or getattr(config, "_name_or_path", "") or type(model).__name__
    return {
        "name_or_path": str(name),
        "class": type(model).__name__,
        "model_type": getattr(config, "model_type", None),
        "config_sha256": sha256_json(cfg),
        "num_parameters": int(sum(p.numel() for p in model.parameters())),
    }
